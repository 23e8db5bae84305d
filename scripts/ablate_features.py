"""Which features should TRINITY's selection head read? One table on a routing suite, the variant
chosen on validation only, the test split read once at the end.

Every row trains the same head with the same hyper-parameters, budget, selection rule and seeds
(--config, default configs/trinity/route.yaml); only the feature source changes (`VARIANTS`):
- smollm2: the coordinator's last layer at the penultimate token (the paper's choice; route.yaml);
- minilm: MiniLM sentence embeddings (`data.encoder=minilm`);
- smollm2+minilm: both side by side (`data.encoder=coordinator+minilm`, `trinity.data.route_features`).
- other SmolLM2 layers (10, 20 of 30), the last token, and mean pooling over the tokens: every SmolLM2
  view comes from ONE coordinator pass over the prompts (`trinity.coordinator.precompute_views`:
  a forward pass returns every layer's hidden states), cached on disk like any coordinator feature.
A concatenation trains but is not servable (a checkpoint has one coordinator), so the result also
names the best servable variant by the same rule (`chosen_servable`), which suite runs train.

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

# name -> (what it is, config overrides): every other setting comes from --config. SmolLM2-135M has
# 30 blocks (hidden states 0..30); every SmolLM2 view comes from one pass (`precompute_views`)
VARIANTS = {
    "smollm2": ("SmolLM2-135M, last layer, penultimate token (paper; route.yaml)", []),
    "smollm2-last-token": ("SmolLM2-135M, last layer, last token", ["coordinator.position=-1"]),
    "smollm2-mean": ("SmolLM2-135M, last layer, mean over tokens", ["coordinator.pooling=mean"]),
    "smollm2-layer20": ("SmolLM2-135M, layer 20 of 30, penultimate token", ["coordinator.layer=20"]),
    "smollm2-layer20-mean": ("SmolLM2-135M, layer 20 of 30, mean over tokens",
                             ["coordinator.layer=20", "coordinator.pooling=mean"]),
    "smollm2-layer10": ("SmolLM2-135M, layer 10 of 30, penultimate token", ["coordinator.layer=10"]),
    "smollm2-layer10-mean": ("SmolLM2-135M, layer 10 of 30, mean over tokens",
                             ["coordinator.layer=10", "coordinator.pooling=mean"]),
    "minilm": ("MiniLM sentence embedding", ["data.encoder=minilm"]),
    "smollm2+minilm": ("both, side by side (MiniLM rows scaled to the SmolLM2 row's norm)",
                       ["data.encoder=coordinator+minilm"]),
}
DEFAULT = ",".join(VARIANTS)


def _servable(name: str) -> bool:
    """A checkpoint serves one feature source (its coordinator); concatenations train, not serve."""
    return not any(o.startswith("data.encoder=") and "+" in o for o in VARIANTS[name][1])


def load_splits(spec: str, prices: str | None):
    """(train, validation, test) exactly as `run_suite` / `baton eval --drop-overlap` split them."""
    from routers.data import load_dataset
    from routers.evaluate import split_for_eval
    data = load_dataset(spec, prices=prices, seed=0)
    return split_for_eval(data, None, data_spec=spec, drop_overlap=True)


def _key(c) -> tuple:
    return (c.model, c.layer, c.position, c.pooling, c.max_tokens, getattr(c, "truncation_side", "right"))


def coordinators(config: str, overrides: list[str], names: list[str], texts: list[str]) -> dict:
    """One coordinator per SmolLM2 view the variants read, sharing one loaded model, their features
    computed in one pass over `texts` (one forward per batch serves every layer and pooling)."""
    from trinity.config import load_config
    from trinity.coordinator import Coordinator, precompute_views
    from trinity.data import COORDINATOR, encoder_parts
    out: dict = {}
    for n in names:
        cfg = load_config(config, [*overrides, *VARIANTS[n][1], "train.wandb=false"])
        if cfg.data.encoder is not None and COORDINATOR not in encoder_parts(cfg.data.encoder):
            continue  # reads no coordinator
        c = cfg.coordinator
        if _key(c) in out:
            continue
        kw = dict(layer=c.layer, position=c.position, pooling=c.pooling, max_tokens=c.max_tokens,
                  batch_size=c.batch_size, device=c.device, dtype=c.dtype, truncation_side=_key(c)[-1])
        lead = next((o for k, o in out.items() if k[0] == c.model), None)
        out[_key(c)] = Coordinator.from_config(c) if lead is None else \
            Coordinator.from_model(lead.model, lead.tokenizer, lead.name, **kw)
    for model in dict.fromkeys(k[0] for k in out):
        group = [o for k, o in out.items() if k[0] == model]
        for (mt, ts) in {(o.max_tokens, o.truncation_side) for o in group}:
            views = [o for o in group if (o.max_tokens, o.truncation_side) == (mt, ts)]
            t0 = time.perf_counter()
            n = precompute_views(views, texts, progress=True)
            print(json.dumps({"coordinator_pass": model, "views": len(views), "texts_computed": n,
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return out


def run_variant(name: str, config: str, overrides: list[str], seeds: list[int], train, test, coords: dict):
    """Train the variant once per seed; per seed its validation accuracy and per-test-question scores."""
    from routers.accounting import score_chosen
    from trinity.config import load_config
    from trinity.data import split_routing_dataset
    from trinity.train import train_route
    runs = []
    for seed in seeds:
        cfg = load_config(config, [*overrides, *VARIANTS[name][1], f"train.seed={seed}", "train.wandb=false"])
        coordinator = coords.get(_key(cfg.coordinator))
        if coordinator is None:  # a variant that reads no coordinator (train_route loads none)
            coordinator = next(iter(coords.values()), None)
        tr, _ = split_routing_dataset(cfg, train, name="train split")
        t0 = time.perf_counter()
        m, head, data = train_route(cfg, tr, test, coordinator=coordinator, encoder=cfg.data.encoder,
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
    p.add_argument("--train-limit", type=int, default=None,
                   help="TRINITY fits on at most this many training queries, the same seeded subset for every "
                        "row (as `data.limit` with train.seed=0 picks them); the baselines fit on all")
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
    trinity_train = train
    if args.train_limit is not None:  # the subset `baton train trinity data.limit=N train.seed=0` draws
        from trinity.config import load_config
        from trinity.data import split_routing_dataset
        limit = load_config(args.config, [f"data.limit={args.train_limit}", "train.seed=0", "train.wandb=false"])
        trinity_train, _ = split_routing_dataset(limit, train, name="train split")

    # 0. every SmolLM2 view in one coordinator pass over the prompts TRINITY reads (train and test)
    from trinity.data import route_texts
    coords = coordinators(args.config, overrides, names, route_texts([*trinity_train.prompts, *test.prompts]))
    # 1. every variant, every seed: validation decides
    runs = {n: run_variant(n, args.config, overrides, seeds, trinity_train, test, coords) for n in names}
    val = {n: _mean_sd([r["validation_accuracy"] for r in runs[n]]) for n in names}
    pick = lambda pool: max(pool, key=lambda n: (val[n][0], -names.index(n)))  # noqa: E731
    chosen = pick(names)
    servable = [n for n in names if _servable(n)]
    chosen_servable = pick(servable) if servable else None

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
        "n_train": len(train), "n_train_trinity": len(trinity_train), "n_test": len(test), "test_rule": test.meta.get("test_rule"),
        "rule": (f"chosen on validation: the highest mean validation accuracy over seeds {args.seeds} (held-out "
                 f"training queries no run's selection saw); test read once, after the choice"),
        "chosen": chosen, "chosen_servable": chosen_servable,
        "chosen_servable_overrides": VARIANTS[chosen_servable][1] if chosen_servable else None,
        "best_single": {"model": test.models[best["index"]], "accuracy": float(columns["best single"].mean())},
        "best_baseline": {"router": best_baseline, "accuracy": rivals[best_baseline]["accuracy"],
                          "accuracy_ci": rivals[best_baseline]["accuracy_ci"]},
        "baselines": {k: {"accuracy": v["accuracy"], "accuracy_ci": v["accuracy_ci"], "cost": v["cost"]}
                      for k, v in rivals.items()},
        "n_boot": base["n_boot"], "rows": rows, "seconds": time.perf_counter() - t0,
        "not_run": "Not run here: " + (", ".join(k for k in VARIANTS if k not in names) or "none") + ".",
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
    lines = [f"{r['n_test']} test questions, {r['test_rule']}; {r['n_train']} training queries"
             f"{'' if r.get('n_train_trinity', r['n_train']) == r['n_train'] else ' (TRINITY fits on a seeded ' + str(r['n_train_trinity'])}"
             f"{'' if r.get('n_train_trinity', r['n_train']) == r['n_train'] else ' of them)'}. Every row: "
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
