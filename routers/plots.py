"""The cost-quality plot of an evaluation result (the dict `routers.evaluate.evaluate` returns)."""

from __future__ import annotations

from pathlib import Path


def plot_cost_quality(result: dict, path: str | Path | None = None, ax=None):
    """Each router's lam-sweep curve, each single model as a labelled point, the oracle as a star.

    Writes a PNG to `path` when given (Agg backend unless pyplot is already in use, e.g. in a notebook);
    returns the axes."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # a script or the CLI: render off-screen
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, r in result["routers"].items():
        pts = sorted((p["cost"], p["accuracy"]) for p in r["curve"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"{name} (AIQ {_num(r['aiq'])})")
    for s in result["single_models"]:
        ax.scatter(s["cost"], s["accuracy"], color="grey", zorder=3)
        ax.annotate(s["model"], (s["cost"], s["accuracy"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    o = result["oracle"]
    ax.scatter(o["cost"], o["accuracy"], marker="*", s=150, color="gold", edgecolor="black", zorder=4,
               label="oracle (per-query best)")
    ax.set_xlabel("cost ($ per query)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Cost-quality on {result['dataset']} ({result['n_test']} test queries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        (fig or ax.figure).savefig(path, dpi=120, bbox_inches="tight")
        if fig is not None:
            plt.close(fig)
    return ax


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"
