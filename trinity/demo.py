"""`make demo` / `baton demo`: TRINITY end to end on the embedded default, on CPU, in minutes.

The calibrated simulated pool (configs/pools/simulated.yaml) answers packaged MMLU and GSM8K
questions; the SmolLM2 coordinator reads the transcripts (features cached); sep-CMA-ES trains the
head (configs/trinity/demo.yaml) on multi-turn episodes. The trained router is then evaluated with
argmax episodes on held-out questions and printed beside the foundation baselines (single-turn
routers fitted on the recorded embedded dataset, scored on the same held-out questions).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from routers.accounting import score_chosen


DEMO_BASELINES = "random,best-single,oracle,knn,mlp"


def demo_config(quick: bool, overrides=()):
    from routers.record import configs_dir
    from trinity.config import load_config
    base = []
    if quick:  # the tests' size: tiny random coordinator, a handful of episodes
        base = ["coordinator.model=tiny", "coordinator.max_tokens=32", "data.limit=24",
                "train.iterations=2", "train.popsize=4", "train.batch_size=12", "train.wandb=false"]
    return load_config(configs_dir() / "trinity" / "demo.yaml", [*base, *overrides])


def run_demo(out: str, quick: bool = False, overrides=()) -> dict[str, Any]:
    """Train and compare; `overrides` are dotted config settings applied after `quick`'s."""
    from routers.evaluate import build_routers, evaluate
    from routers.pool.config import load_pool
    from trinity.data import embedded_episode_split
    from trinity.train import train_episode

    t0 = time.perf_counter()
    cfg = demo_config(quick, overrides)
    seed = cfg.train.seed
    train_items, test_items, ds, te_idx = embedded_episode_split(cfg)
    train_ds, test_ds = ds.split("train"), ds.split("test")

    pool = load_pool(cfg.data.pool)
    pool.register(train_items + test_items)
    out_dir = Path(out) / "trinity"
    print(f"TRINITY demo: {len(train_items)} training / {len(test_items)} held-out questions, "
          f"{len(pool.names)} simulated workers, coordinator {cfg.coordinator.model}, K={cfg.protocol.max_turns}")
    m = train_episode(cfg, train_items, pool, test_items=test_items, out=out_dir)

    # foundation baselines on the same held-out questions (single-turn, recorded answers)
    held = test_ds.subset(te_idx)
    # quick (tests): a model-free hashed bag-of-words encoder instead of MiniLM for knn/mlp
    base = evaluate(build_routers(DEMO_BASELINES, encoder="hashing" if quick else None), train_ds, held,
                    n_boot=200, seed=seed)
    rows = {name: {"accuracy": r["accuracy"], "cost": r["cost"]} for name, r in base["routers"].items()}
    rows["trinity"] = {"accuracy": m["test"]["accuracy"], "cost": m["test"]["cost"],
                       "turns": m["test"]["turns"]}
    print(f"\n{'router':<14}{'accuracy':>10}{'cost $/q':>12}")
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["accuracy"]):
        print(f"{name:<14}{r['accuracy']:>10.3f}{r['cost']:>12.6f}")
    plot = Path(out) / "demo_cost_quality.png"
    _plot(base, m["test"], plot)
    # what routing uniformly at random scores in expectation on these questions (missing = wrong)
    uniform = float(np.mean(score_chosen(held.scores)[0])) if len(held) else None
    result = {"trinity": m, "baselines": rows, "uniform_random_expected_accuracy": uniform,
              "checkpoint": str(out_dir), "n_train": len(train_items), "n_test": len(test_items), "plot": str(plot), "seconds": time.perf_counter() - t0}
    print(f"demo took {result['seconds']:.0f} s; checkpoint in {out_dir}/")
    return result


def _plot(base: dict, trinity_test: dict, path: Path) -> None:
    """The baselines' cost-quality curves and single models on the held-out questions, with the
    trained TRINITY coordinator as one point (it has no trade-off knob at evaluation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from routers.plots import plot_cost_quality
    fig, ax = plt.subplots(figsize=(8, 5.5))
    plot_cost_quality(base, ax=ax)
    ax.scatter(trinity_test["cost"], trinity_test["accuracy"], marker="D", s=80, color="crimson", zorder=5,
               label=f"TRINITY ({trinity_test['turns']:.1f} turns/question)")
    ax.legend(fontsize=8)
    ax.set_title(f"TRINITY demo: {base['n_test']} held-out questions, simulated pool")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
