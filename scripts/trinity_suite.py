"""TRINITY on one routing file, by one rule, beside every baseline: the row of issue 12's suite table.

Works on any routing file `baton eval` reads (LLMRouter, RouteLLM, RouterBench pickles/CSVs,
`{question, scores}` JSON, the embedded default), so a file nobody has seen gets the same treatment
as the shipped suites:

1. Features, chosen on validation (scripts/ablate_features.py): every feature variant trains the same
   head (configs/trinity/route.yaml) with seeds 0,1,2; the servable variant with the highest mean
   validation accuracy is kept (a concatenation trains but a checkpoint serves one coordinator).
2. `baton train trinity --config configs/trinity/route.yaml` with those features and a frontier of
   cost-weighted heads (`fitness.frontier`, the fixed grid `make_results.FRONTIER`), seed 0.
3. `baton eval`'s own evaluate on the file's test split (overlap with training dropped), the
   baselines beside it: accuracy with 95% bootstrap interval, cost, AIQ over the swept heads, paired
   p against the best single model and the best baseline.

TRINITY fits on at most `--train-limit` training queries (seeded, the same for every feature
variant and the checkpoint): coordinator passes are the scarce resource on CPU. The baselines fit
on the whole training split. The test split is read once, after every choice.

    python scripts/trinity_suite.py --data ../shared/data/routellm/gsm8k --prices builtin --out outputs/suite-gsm8k
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablate_features  # noqa: E402
from make_results import FRONTIER, REPO, _shown, evaluate_suite  # noqa: E402  (one home for the suite rules)

CONFIG = "configs/trinity/route.yaml"
TRAIN_LIMIT = 6000
RULE = ("One rule for every suite (scripts/trinity_suite.py): the features are chosen on validation (the servable "
        "variant with the highest mean validation accuracy over seeds 0, 1, 2 among SmolLM2 layers 10/20/30 at the "
        "penultimate token, the last token or mean-pooled, and MiniLM); `configs/trinity/route.yaml` then trains, "
        f"seed 0, a frontier of cost-weighted heads (fixed grid of relative weights {FRONTIER[1:-1].split(',')[0]}-"
        f"{FRONTIER[1:-1].split(',')[-1]}) on at most {TRAIN_LIMIT:,} "
        "training queries; the evaluator of `baton eval` scores it on the test split (overlap with training "
        "dropped) beside the baselines, which fit on the whole training split. TRINITY's AIQ sweeps its trained "
        "heads")


def run(data: str, prices: str | None, out: Path, *, label: str | None = None, name: str | None = None,
        seeds: str = "0,1,2", train_limit: int = TRAIN_LIMIT, features_out: Path | None = None,
        variants: str = ablate_features.DEFAULT, overrides: list[str] = ()) -> dict:
    """Steps 1-3 of the module docstring; returns the evaluator's result with TRINITY's rows."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    features_out = features_out or out / "features"
    args = ["--data", data, "--seeds", seeds, "--out", str(features_out), "--train-limit", str(train_limit),
            "--variants", variants] + (["--set", *overrides] if overrides else [])
    ablate_features.main(args + (["--prices", prices] if prices else []))
    feats = json.loads(features_out.with_suffix(".json").read_text())
    chosen = feats["chosen_servable"]
    ckpt = out / "checkpoint"
    cmd = [sys.executable, "-m", "routers.cli", "train", "trinity", "--config", CONFIG, "--train", data,
           "--out", str(ckpt), "--overwrite", "train.wandb=false", "train.seed=0", f"data.limit={train_limit}",
           f"fitness.frontier={FRONTIER}", *overrides, *feats["chosen_servable_overrides"]] + \
        ([f"data.prices={prices}"] if prices else [])
    subprocess.run(cmd, check=True, cwd=REPO)
    res = evaluate_suite(data, prices, label or Path(data).name, name=name, extra_routers=f"trinity={ckpt}")
    res["trinity"] = {"features": chosen, "features_rule": feats["rule"], "train_limit": train_limit,
                      "train_command": _shown(" ".join(["baton"] + cmd[3:])),
                      "features_command": _shown(feats["command"]), "seconds": time.perf_counter() - t0}
    (out / "suite.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def summary_row(res: dict) -> dict:
    """TRINITY against every baseline on one suite: the figures issue 12's goal is judged on."""
    if "skipped" in res:
        return {"suite": res["suite"], "skipped": res["skipped"]}
    rs = res["routers"]
    t = rs["trinity"]
    rivals = {k: v for k, v in rs.items() if k not in ("trinity", "oracle")}
    # the evaluator names the best baseline it paired TRINITY with (the most accurate other router)
    best_acc = t.get("best_baseline") or max(rivals, key=lambda k: rivals[k]["accuracy"])
    aiq = {k: v.get("aiq") for k, v in rs.items() if k != "oracle" and v.get("aiq") is not None}
    top_aiq = max(aiq, key=aiq.get) if aiq else None
    p_base = t.get("p_vs_best_baseline")
    return {"suite": res["suite"], "label": res["label"], "n_test": res["n_test"], "features": res["trinity"]["features"],
            "accuracy": t["accuracy"], "accuracy_ci": t["accuracy_ci"], "cost": t["cost"], "aiq": t.get("aiq"),
            "p_vs_best_single": t.get("p_vs_best_single"), "p_vs_best_baseline": p_base,
            "best_baseline": best_acc, "best_baseline_accuracy": rivals[best_acc]["accuracy"],
            "best_aiq_router": top_aiq, "best_aiq": aiq.get(top_aiq),
            "not_significantly_below": bool(t["accuracy"] >= rivals[best_acc]["accuracy"] or
                                            (p_base is not None and p_base >= 0.05)),
            "aiq_highest": top_aiq == "trinity"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="routing file or folder (anything `baton eval --data` reads)")
    p.add_argument("--prices", default=None, help="price table (as baton eval --prices)")
    p.add_argument("--out", default="outputs/trinity-suite")
    p.add_argument("--seeds", default="0,1,2", help="seeds of the feature choice")
    p.add_argument("--train-limit", type=int, default=TRAIN_LIMIT, help="TRINITY's training queries at most")
    p.add_argument("--variants", default=ablate_features.DEFAULT, help="feature variants to choose among")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value config overrides for every run")
    a = p.parse_args(argv)
    res = run(a.data, a.prices, Path(a.out), seeds=a.seeds, train_limit=a.train_limit, variants=a.variants,
              overrides=a.overrides)
    print(json.dumps(summary_row(res), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
