"""Which features should TRINITY's selection head read? One table on a routing suite, the variant
chosen on validation only, the test split read once at the end.

Every row trains the same head with the same hyper-parameters, budget, selection rule and seeds
(--config, default configs/trinity/route.yaml); only the feature source changes (`VARIANTS`):
- smollm2: the coordinator's last layer at the penultimate token (the paper's choice; route.yaml);
- minilm: MiniLM sentence embeddings (`data.encoder=minilm`);
- smollm2+minilm: both side by side (`data.encoder=coordinator+minilm`, `trinity.data.route_features`).
Other layers and poolings need a new coordinator pass over every prompt (about 25 minutes on two
idle cores per layer); `--variants` runs them when their features are cached (`VARIANTS` lists them).

Data, as `scripts/make_results.py: run_suite` (`baton eval --drop-overlap`): the publisher's train
split fits; TRINITY holds out `data.validation_fraction` of it and halves that: one half picks each
run's returned point, the other is the validation column, which no run saw. The test split, without
the questions that also appear in training, is scored once, after the choice is made.

Rule: the variant with the highest mean validation accuracy over the seeds is chosen (ties: the one
listed first). Per test question a variant scores the mean over its seeds of the chosen model's
score (the accuracy of a seed drawn at random); intervals are 95% bootstrap and p-values paired
bootstrap on those per-question scores, against the best single model and against the best baseline
(`routers.evaluate.evaluate` on the same splits: the most accurate baseline on this test split),
with the same resamples as the evaluator (`routers.metrics.bootstrap_table`, seed 0, 1,000).

    python scripts/ablate_features.py --data ../shared/data/llmrouter \
        --prices ../shared/data/llmrouter/default_llm.json --seeds 0,1,2 --out results/features_llmrouter
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_results import BASELINES, _f  # noqa: E402  (the suites' baselines and number format, one home)

# name -> (what it is, config overrides): every other setting comes from --config
VARIANTS = {
    "smollm2": ("SmolLM2-135M, last layer, penultimate token (paper; route.yaml)", []),
    "minilm": ("MiniLM sentence embedding", ["data.encoder=minilm"]),
    "smollm2+minilm": ("both, side by side (MiniLM rows scaled to the SmolLM2 row's norm)",
                       ["data.encoder=coordinator+minilm"]),
    # a new coordinator pass each (cached afterwards): not in the default set
    "smollm2-layer15": ("SmolLM2-135M, layer 15 of 30, penultimate token", ["coordinator.layer=15"]),
    "smollm2-last-token": ("SmolLM2-135M, last layer, last token", ["coordinator.position=-1"]),
}
DEFAULT = "smollm2,minilm,smollm2+minilm"


def load_splits(spec: str, prices: str | None):
    """(train, validation, test) exactly as `run_suite` / `baton eval --drop-overlap` split them."""
    from routers.data import load_dataset
    from routers.evaluate import split_for_eval
    data = load_dataset(spec, prices=prices, seed=0)
    return split_for_eval(data, None, data_spec=spec, drop_overlap=True)


def run_variant(name: str, config: str, overrides: list[str], seeds: list[int], train, test, coordinator):
    """Train the variant once per seed; per seed its validation accuracy and per-test-question scores."""
    from routers.accounting import score_chosen
    from trinity.config import load_config
    from trinity.data import split_routing_dataset
    from trinity.train import train_route
    runs = []
    for seed in seeds:
        cfg = load_config(config, [*overrides, *VARIANTS[name][1], f"train.seed={seed}", "train.wandb=false"])
        if coordinator.get("key") != (cfg.coordinator.model, cfg.coordinator.layer, cfg.coordinator.position,
                                      cfg.coordinator.max_tokens):
            from trinity.coordinator import Coordinator
            coordinator["obj"] = Coordinator.from_config(cfg.coordinator)
            coordinator["key"] = (cfg.coordinator.model, cfg.coordinator.layer, cfg.coordinator.position,
                                  cfg.coordinator.max_tokens)
        tr, _ = split_routing_dataset(cfg, train, name="train split")
        t0 = time.perf_counter()
        m, head, data = train_route(cfg, tr, test, coordinator=coordinator["obj"], encoder=cfg.data.encoder,
                                    with_head=True)
        choice = head.logits(data.test_features)[:, :len(data.workers)].argmax(1)
        score, _ = score_chosen(data.test.scores[np.arange(len(choice)), choice])
        runs.append({"seed": seed, "validation_accuracy": m["validation"]["accuracy"],
                     "train_accuracy": m["train"]["accuracy"], "test_accuracy": float(score.mean()),
                     "test_cost": m["test"]["cost"], "feature_dim": int(data.features.shape[1]),
                     "seconds": time.perf_counter() - t0, "_score": score})
        print(json.dumps({"variant": name, **{k: v for k, v in runs[-1].items() if k != "_score"}}), flush=True)
    return runs


def _mean_sd(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="routing dataset spec with train and test splits")
    p.add_argument("--prices", default=None, help="price table (as baton eval --prices)")
    p.add_argument("--config", default="configs/trinity/route.yaml", help="the config every variant shares")
    p.add_argument("--variants", default=DEFAULT, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value overrides for every row")
    p.add_argument("--out", default="outputs/features", help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    from routers.errors import ConfigError
    from routers import metrics as M
    from routers.evaluate import build_routers, evaluate

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ConfigError(f"--variants: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = [*args.overrides] + ([f"data.prices={args.prices}"] if args.prices else [])
    t0 = time.perf_counter()
    train, validation, test = load_splits(args.data, args.prices)

    # 1. every variant, every seed: validation decides
    coordinator: dict = {}
    runs = {n: run_variant(n, args.config, overrides, seeds, train, test, coordinator) for n in names}
    val = {n: _mean_sd([r["validation_accuracy"] for r in runs[n]]) for n in names}
    chosen = max(names, key=lambda n: (val[n][0], -names.index(n)))

    # 2. the test split, once: baselines by the evaluator, then every row's intervals and p-values
    base = evaluate(build_routers(BASELINES), train, test, validation=validation, seed=0, progress=False)
    S, C = test.scores, test.cost_matrix()
    best = M.best_single(S, C)
    rivals = {k: v for k, v in base["routers"].items() if k != "oracle"}
    best_baseline = max(rivals, key=lambda k: rivals[k]["accuracy"])
    columns = {"best single": M.chosen(S, C, np.full(len(test), best["index"]))[0],
               "best baseline": np.asarray(base["per_query"][best_baseline]["score"], float)}
    pairs = {}
    for n in names:
        columns[n] = np.mean([r["_score"] for r in runs[n]], axis=0)
        pairs[n, "single"], pairs[n, "baseline"] = (n, "best single"), (n, "best baseline")
    cis, ps = M.bootstrap_table(columns, pairs, n_boot=base["n_boot"], seed=base["seed"])

    rows = []
    for n in names:
        row = {"variant": n, "features": VARIANTS[n][0], "overrides": VARIANTS[n][1],
               "feature_dim": runs[n][0]["feature_dim"], "seeds": seeds}
        for k in ("validation_accuracy", "train_accuracy", "test_accuracy", "test_cost"):
            row[k], row[k + "_sd"] = _mean_sd([r[k] for r in runs[n]])
        row.update(test_accuracy_ci=cis[n], p_vs_best_single=ps[n, "single"], p_vs_best_baseline=ps[n, "baseline"],
                   chosen=n == chosen, seconds=sum(r["seconds"] for r in runs[n]),
                   runs=[{k: v for k, v in r.items() if k != "_score"} for r in runs[n]])
        rows.append(row)
    cmd = "python scripts/ablate_features.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "command": cmd, "data": args.data, "config": args.config, "seeds": seeds, "overrides": args.overrides,
        "n_train": len(train), "n_test": len(test), "test_rule": test.meta.get("test_rule"),
        "rule": (f"chosen on validation: the highest mean validation accuracy over seeds {args.seeds} (held-out "
                 f"training queries no run's selection saw); test read once, after the choice"),
        "chosen": chosen, "best_single": {"model": test.models[best["index"]], "accuracy": float(columns["best single"].mean())},
        "best_baseline": {"router": best_baseline, "accuracy": rivals[best_baseline]["accuracy"],
                          "accuracy_ci": rivals[best_baseline]["accuracy_ci"]},
        "baselines": {k: {"accuracy": v["accuracy"], "accuracy_ci": v["accuracy_ci"], "cost": v["cost"]}
                      for k, v in rivals.items()},
        "n_boot": base["n_boot"], "rows": rows, "seconds": time.perf_counter() - t0,
        "not_run": "Not in this table: other SmolLM2 layers and poolings (" + ", ".join(
            k for k in VARIANTS if k not in names) + " are listed in the script; mean pooling is not offered by the "
            "coordinator). Each needs a new coordinator pass over every prompt, which this shared 2-core machine "
            "could not afford; `--variants` runs them once their features are cached "
            "(scripts/extract_features.py on a faster machine).",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(render(result)) + "\n")
    print("\n".join(render(result)))
    return 0


def render(r: dict) -> list[str]:
    """The table (results/features_llmrouter.md and the README block of scripts/make_results.py)."""
    def pm(row, k, fmt=".3f"):
        sd = row.get(k + "_sd")
        return _f(row[k], fmt) + ("" if sd is None else " ± " + _f(sd, fmt))
    bb = r["best_baseline"]
    lines = [f"{r['n_test']} test questions, {r['test_rule']}; {r['n_train']} training queries. Every row: "
             f"`{r['config']}` (same head, optimizer, budget and selection), seeds {', '.join(map(str, r['seeds']))} "
             f"(validation, train, test cost: mean ± sd). Test accuracy: mean over seeds per question, 95% bootstrap "
             f"interval; p: paired bootstrap against the best single model ({r['best_single']['model']}, "
             f"{_f(r['best_single']['accuracy'])}) and the best baseline ({bb['router']}, {_f(bb['accuracy'])} "
             f"[{_f(bb['accuracy_ci'][0])}, {_f(bb['accuracy_ci'][1])}]). **{r['rule'][0].upper() + r['rule'][1:]}: "
             f"{r['chosen']}.** `{r['command']}`", "",
             "| features | dim | validation acc | test acc [95% CI] | test cost $/q | p vs best single | "
             "p vs best baseline |", "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lo, hi = row["test_accuracy_ci"]
        name = f"**{row['variant']}** (chosen)" if row["chosen"] else row["variant"]
        lines.append(f"| {name}: {row['features']} | {row['feature_dim']} | {pm(row, 'validation_accuracy')} | "
                     f"{_f(row['test_accuracy'])} [{_f(lo)}, {_f(hi)}] | {pm(row, 'test_cost', '.3g')} | "
                     f"{_f(row['p_vs_best_single'])} | {_f(row['p_vs_best_baseline'])} |")
    return lines + ["", r["not_run"]]


if __name__ == "__main__":
    sys.exit(main())
