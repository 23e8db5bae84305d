"""Run a set of TRINITY ablations over one base config and write the table (markdown + JSON + plot).

Each ablation file (configs/trinity/ablations/*.yaml) states only what it changes; that change is
applied over --base (default: its own `base:`), with the same seeds and --set overrides for every
row, so rows differ only by the ablation. An ablation that cannot run on this base (e.g. a roles
ablation on a single-turn base) is listed with the reason instead of a number.

With `--seeds 0,1,2` every row runs once per seed (`train.seed`) and the table gives mean ± standard
deviation; the validation column (held-out training queries, route task) is what to choose a method
on, the test column what to report. Selection rule, the same for every optimizer
(`trinity.optimizers.Selector`, `train.select`): the held-out training queries are halved; each
optimizer returns its best point on the first half over all its steps (`best-validation`) or its
last point (`last`), and the validation column is measured on the second half, which selection did
not see. The output states the rule.

Episode bases (`data.task: episode`, e.g. configs/trinity/hard.yaml): each run's held-out episodes
are re-run from its checkpoint (`episode_test_scores`, deterministic: the same argmax episodes and
answers that train_episode scored; a mismatch is an error), giving per-question scores. Pooled over
seeds (each seed holds out its own questions; a row and base share them seed by seed), the table
adds the test accuracy's 95% percentile-bootstrap interval over (seed, question) pairs and the
paired bootstrap p-value against the base row (routers.metrics), and each row's role shares.

    python scripts/ablate.py --base configs/trinity/route.yaml --train ../shared/data/llmrouter --seeds 0,1,2 \
        --out outputs/ablate-llmrouter configs/trinity/ablations/head_*.yaml configs/trinity/ablations/opt_*.yaml
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

from routers.errors import BatonError
from routers.yamlfile import merge, read_config_tree
from trinity.config import apply_overrides, from_dict


def ablation_config(base: Path, ablation: Path | None, overrides: list[str], train: str | None):
    data = read_config_tree(base)
    if ablation is not None:
        delta = yaml.safe_load(ablation.read_text()) or {}
        delta.pop("base", None)
        data = merge(data, delta)
    if train:
        data = merge(data, {"data": {"train": train}})
    return apply_overrides(from_dict(data), overrides)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ablations", nargs="+", help="ablation YAML files")
    p.add_argument("--base", required=True, help="the config every row starts from (row 'base')")
    p.add_argument("--train", default=None, help="training data spec (as `baton train trinity --train`)")
    p.add_argument("--out", default="outputs/ablate")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value overrides for every row")
    p.add_argument("--seeds", default=None, help="comma-separated train.seed values per row (default: the config's)")
    p.add_argument("--references-only", action="store_true",
                   help="episode tables: add the fixed-policy reference row to the table already in --out "
                        "(its rows are read back, nothing is retrained)")
    p.add_argument("--conductor", action="store_true",
                   help="the configs are Conductor configs (configs/conductor/*.yaml): train each, same overrides")
    args = p.parse_args(argv)
    if args.conductor:
        return conductor_table(args, argv)

    from trinity.train import load_routing_data, train_route, run
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = None if args.seeds is None else [int(x) for x in args.seeds.split(",")]
    rows = []
    shared = {}  # route rows reuse dataset loads (per seed) and one coordinator
    cmd = "python scripts/ablate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.references_only:
        done = json.loads((out / "ablations.json").read_text())
        rows = [r for r in done["rows"] if r["ablation"] != REFERENCE]
        cmd = done.get("command") or (out / "ablations.md").read_text().split("`")[1]
    for name, file in [] if args.references_only else \
            [("base", None)] + [(Path(a).stem, Path(a)) for a in args.ablations]:
        t0 = time.perf_counter()
        try:
            runs = []
            for seed in seeds or [None]:
                sets = args.overrides + ([] if seed is None else [f"train.seed={seed}"])
                cfg = ablation_config(Path(args.base), file, sets, args.train)
                where = out / name if seed is None else out / name / f"seed{seed}"
                if cfg.data.task == "route":
                    # what load_routing_data depends on: the seed draws data.limit subsets and the
                    # embedded dataset's split, so each seed of --seeds gets its own data
                    data_key = ("data", cfg.data.train, cfg.data.test, cfg.data.prices, cfg.data.limit, cfg.train.seed)
                    if data_key not in shared:
                        shared[data_key] = load_routing_data(cfg)
                    key = (cfg.coordinator.model, cfg.coordinator.layer, cfg.coordinator.position, cfg.coordinator.max_tokens)
                    if shared.get("coord_key") != key:
                        from trinity.coordinator import Coordinator
                        shared["coord"], shared["coord_key"] = Coordinator.from_config(cfg.coordinator), key
                    m = train_route(cfg, *shared[data_key], out=where, coordinator=shared["coord"],
                                    encoder=cfg.data.encoder)
                else:
                    m = run(cfg, out=where)
                test = m.get("test") or {}
                runs.append({"seed": cfg.train.seed, "train_accuracy": m["train"]["accuracy"],
                             "selection": m.get("selection"),
                             "validation_accuracy": (m.get("validation") or {}).get("accuracy"),
                             "test_accuracy": test.get("accuracy"), "test_cost": test.get("cost"),
                             "test_turns": test.get("turns")})
                if cfg.data.task == "episode" and test:
                    ids, scores = episode_test_scores(cfg, where, test["accuracy"], shared)
                    runs[-1].update(test_ids=ids, test_scores=scores, test_role_hist=test.get("role_hist"))
            row = {"ablation": name, "optimizer": cfg.train.optimizer, "head": cfg.head.kind,
                   "seconds": time.perf_counter() - t0, "seeds": [r["seed"] for r in runs]}
            for k in ("train_accuracy", "validation_accuracy", "test_accuracy", "test_cost", "test_turns"):
                vals = [r[k] for r in runs if r[k] is not None]
                row[k] = statistics.fmean(vals) if vals else None
                row[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else None
            row["runs"] = runs
            rows.append(row)
        except BatonError as e:
            rows.append({"ablation": name, "skipped": str(e)})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "runs"}), flush=True)

    episodes = any("test_scores" in run for r in rows for run in r.get("runs", []))
    if episodes:
        rows.append(fixed_policy_row(Path(args.base), args.overrides, args.train, seeds))
        add_intervals(rows)
    (out / "ablations.json").write_text(json.dumps({"command": cmd, "base": args.base, "train": args.train,
                                                    "seeds": seeds, "overrides": args.overrides, "rows": rows},
                                                   indent=2))

    def fmt(r, k, f):
        v, sd = r.get(k), r.get(k + "_sd")
        if v is None:
            return "-"
        return format(v, f) + ("" if sd is None else " ± " + format(sd, f))
    if episodes:
        lines = episode_lines(rows, fmt)
    else:
        lines = ["| ablation | train acc | validation acc | test acc | test cost $/q | test turns | optimizer | head | s |",
                 "|---|---|---|---|---|---|---|---|---|"]
    for r in [] if episodes else rows:
        if "skipped" in r:
            lines.append(f"| {r['ablation']} | n/a: {r['skipped']} | | | | | | | |")
        else:
            lines.append(f"| {r['ablation']} | {fmt(r, 'train_accuracy', '.3f')} | {fmt(r, 'validation_accuracy', '.3f')} | "
                         f"{fmt(r, 'test_accuracy', '.3f')} | {fmt(r, 'test_cost', '.2e')} | {fmt(r, 'test_turns', '.2f')} | "
                         f"{r['optimizer']} | {r['head']} | {r['seconds']:.0f} |")
    seed_line = "" if seeds is None else f"Seeds {', '.join(map(str, seeds))}: mean ± standard deviation.\n\n"
    rules = sorted({(r.get("selection") or {}).get("rule", "last") for row in rows for r in row.get("runs", [])})
    rule_line = (f"Selection rule (every optimizer): {', '.join(rules) or 'n/a'}. best-validation = the point "
                 "scoring best on one half of the held-out training queries over all steps; the validation "
                 "column is the other half, unseen by selection; test is read once at the end.\n\n")
    if episodes:
        rule_line = ("Selection rule (every row): last, the optimizer's final point (episode training holds out no "
                     "queries for selection); test is read once at the end. Test acc: mean ± sd over seeds; pooled: "
                     "over every (seed, held-out question), with its 95% percentile-bootstrap interval and the paired "
                     "bootstrap p-value against base (1000 resamples). Roles: share of test turns taken as "
                     "Thinker / Worker / Verifier. Row `" + REFERENCE + "`: no coordinator, the same two-turn "
                     "script for every question (a first turn by any worker in any role, then any worker answers), "
                     "the script chosen on each seed's training questions out of all such scripts; it is what a "
                     "router that reads nothing could reach.\n\n")
    print(rule_line.strip())
    (out / "ablations.md").write_text(f"Command: `{cmd}`\n\n{seed_line}{rule_line}" + "\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    done = [r for r in rows if r.get("test_accuracy") is not None or r.get("train_accuracy") is not None]
    if done:
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(done) + 1.5))
        key = "test_accuracy" if done[0].get("test_accuracy") is not None else "train_accuracy"
        vals = [r[key] if r.get(key) is not None else r["train_accuracy"] for r in done]
        err = [r.get(key + "_sd") or 0.0 for r in done]
        ax.barh([r["ablation"] for r in done], vals, xerr=err if any(err) else None)
        ax.set_xlabel(key.replace("_", " ") + ("" if seeds is None else f" (mean ± sd over {len(seeds)} seeds)"))
        ax.set_xlim(min(vals) - 0.05 - max(err), max(vals) + 0.02 + max(err))
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(out / "ablations.png", dpi=120)
    print(f"table in {out}/ablations.md, .json, .png")
    return 0


def episode_test_scores(cfg, where: Path, accuracy: float, shared: dict) -> tuple[list[str], list[float]]:
    """(held-out item ids, per-question scores) of the checkpoint in `where`: its argmax episodes on
    the test items re-run as `trinity.train.train_episode` ran them (same items, pool, protocol;
    coordinator features from the disk cache), graded by each item's task. Their mean must equal
    the run's reported test `accuracy`, else the re-run is not the evaluation it claims to be."""
    from routers.pool.config import load_pool
    from trinity.checkpoint import load
    from trinity.data import episode_items
    from trinity.episodes import EpisodeObjective, _task_grader
    from trinity.coordinator import Coordinator
    key = ("episode-coord", cfg.coordinator.model, cfg.coordinator.layer, cfg.coordinator.position,
           cfg.coordinator.max_tokens)
    if key not in shared:
        shared[key] = Coordinator.from_config(cfg.coordinator)
    model = load(where, coordinator=shared[key])
    train_items, test_items = episode_items(cfg)
    pool = load_pool(cfg.data.pool)
    if hasattr(pool, "register"):
        pool.register(train_items + test_items)
    objective = EpisodeObjective(test_items, pool, model.coordinator, model.head, model.workers, cfg.protocol,
                                 fitness=cfg.fitness, seed=cfg.train.seed)
    _, eps = objective.evaluate_final(model.head.get_flat(), test_items)
    scores = [float(_task_grader(ep.answer, it)) for ep, it in zip(eps, test_items)]
    if abs(sum(scores) / len(scores) - accuracy) > 1e-9:
        raise RuntimeError(f"{where}: re-running the held-out episodes gives accuracy {sum(scores) / len(scores):.4f}, "
                           f"the run reported {accuracy:.4f}; the per-question scores would not be that run's")
    return [it.id for it in test_items], scores


REFERENCE = "best fixed script"


class _Blind:
    """The featurizer of a fixed script: it reads no transcript (no coordinator pass, no tokens)."""

    def features(self, texts):
        import numpy as np
        return np.zeros((len(texts), 1))

    def count_tokens(self, texts):
        return [0] * len(texts)


def fixed_policy_row(base: Path, overrides: list[str], train: str | None, seeds) -> dict:
    """The strongest coordinator-free reference for an episode table: every fixed two-turn script
    (turn 1: worker a in role r; turn 2: worker b answers; K = 1 configs: worker a answers) scored
    on each seed's training questions, the best one (ties: first) run once on that seed's held-out
    questions. Same items, pool, protocol and grader as the rows above."""
    import asyncio

    import numpy as np

    from routers.pool.config import load_pool
    from routers.serving_router import pool_call
    from trinity.data import episode_items
    from trinity.episodes import _task_grader
    from trinity.protocol import ROLES, run_episodes, start
    t0 = time.perf_counter()
    runs = []
    for seed in seeds or [None]:
        cfg = ablation_config(base, None, overrides + ([] if seed is None else [f"train.seed={seed}"]), train)
        train_items, test_items = episode_items(cfg)
        pool = load_pool(cfg.data.pool)
        if hasattr(pool, "register"):
            pool.register(train_items + test_items)
        workers = list(pool.names)
        L, K = len(workers), int(cfg.protocol.max_turns)
        roles = [r for r in ROLES if r in cfg.protocol.roles]
        scripts = [(a, r, b) for a in range(L) for r in roles for b in range(L)] if K > 1 else \
            [(a, "worker", a) for a in range(L)]

        def play(script, items):
            a, r, b = script

            def policy(feats, states):
                z = np.full((len(states), L + 3), -1e9)
                first = len(states[0].turns) == 1
                z[:, a if first else b] = 0.0
                z[:, L + ROLES.index(r if first else "worker")] = 0.0
                return z
            states = [start([{"role": "user", "content": it.prompt}], item_id=it.id) for it in items]
            eps = asyncio.run(run_episodes(states, featurizer=_Blind(), policy=policy, call=pool_call(pool),
                                           workers=workers, cfg=cfg.protocol, sample=False))
            return [float(_task_grader(ep.answer, it)) for ep, it in zip(eps, items)], eps
        train_acc = [float(np.mean(play(sc, train_items)[0])) for sc in scripts]
        best = int(np.argmax(train_acc))
        scores, eps = play(scripts[best], test_items)
        hist: dict[str, int] = {}
        for ep in eps:
            for st in ep.steps:
                hist[st.role] = hist.get(st.role, 0) + 1
        a, r, b = scripts[best]
        runs.append({"seed": cfg.train.seed, "train_accuracy": train_acc[best], "test_accuracy": float(np.mean(scores)),
                     "test_cost": float(np.mean([ep.cost for ep in eps])), "test_turns": None,
                     "validation_accuracy": None, "script": f"{workers[a]} as {r}, then {workers[b]} answers",
                     "test_ids": [it.id for it in test_items], "test_scores": scores, "test_role_hist": hist})
    row = {"ablation": REFERENCE, "optimizer": "best on training", "head": "none",
           "seconds": time.perf_counter() - t0, "seeds": [r["seed"] for r in runs], "runs": runs,
           "scripts": [r["script"] for r in runs]}
    for k in ("train_accuracy", "validation_accuracy", "test_accuracy", "test_cost", "test_turns"):
        vals = [r[k] for r in runs if r[k] is not None]
        row[k] = statistics.fmean(vals) if vals else None
        row[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else None
    return row


def add_intervals(rows: list[dict]) -> None:
    """Per episode row: pooled test accuracy over (seed, question), its 95% bootstrap interval, and
    the paired p-value against base (the same seeds hold out the same questions in both rows)."""
    import numpy as np

    from routers.metrics import bootstrap_ci, paired_bootstrap_p
    base = next((r for r in rows if r["ablation"] == "base" and "runs" in r), None)

    def pooled(r):
        return ([(run["seed"], i) for run in r["runs"] for i in run["test_ids"]],
                np.array([s for run in r["runs"] for s in run["test_scores"]]))
    base_keys, base_scores = pooled(base) if base is not None else (None, None)
    for r in rows:
        if "runs" not in r or not all("test_scores" in run for run in r["runs"]):
            continue
        keys, scores = pooled(r)
        r["test_pooled_accuracy"] = float(scores.mean())
        r["test_pooled_n"] = len(scores)
        r["test_ci95"] = [float(x) for x in bootstrap_ci(scores)]
        if base is not None and r is not base:
            if keys != base_keys:
                raise RuntimeError(f"ablation {r['ablation']}: its held-out questions differ from base's "
                                   "(run both under the same --seeds)")
            r["p_vs_base"] = paired_bootstrap_p(scores, base_scores)
        hist: dict[str, int] = {}
        for run in r["runs"]:
            for k, v in (run.get("test_role_hist") or {}).items():
                hist[k] = hist.get(k, 0) + v
        total = sum(hist.values()) or 1
        r["test_role_share"] = {k: hist.get(k, 0) / total for k in ("thinker", "worker", "verifier")}


def episode_lines(rows: list[dict], fmt) -> list[str]:
    lines = ["| ablation | train acc | test acc | test acc pooled [95% CI] | p vs base | test cost $/q | "
             "roles T/W/V | optimizer | head | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['ablation']} | n/a: {r['skipped']} | | | | | | | | |")
            continue
        ci = r.get("test_ci95")
        pooled = "-" if ci is None else f"{r['test_pooled_accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] (n={r['test_pooled_n']})"
        p = "-" if r.get("p_vs_base") is None else f"{r['p_vs_base']:.3f}"
        sh = r.get("test_role_share")
        roles = "-" if sh is None else "/".join(f"{sh[k]:.2f}" for k in ("thinker", "worker", "verifier"))
        lines.append(f"| {r['ablation']} | {fmt(r, 'train_accuracy', '.3f')} | {fmt(r, 'test_accuracy', '.3f')} | "
                     f"{pooled} | {p} | {fmt(r, 'test_cost', '.2e')} | {roles} | {r['optimizer']} | {r['head']} | "
                     f"{r['seconds']:.0f} |")
    return lines


def conductor_table(args, argv) -> int:
    """The Conductor's rows: `conductor.ablate.run_ablation` trains --base and each config (each states
    only its change through `base:`), then the held-out accuracy/reward/parse rate go in one table."""
    from conductor.ablate import run_ablation
    out = Path(args.out)
    specs = [(c, args.overrides) for c in [args.base, *args.ablations]]
    rows = run_ablation(specs, out)
    lines = ["| config | accuracy | mean reward | parse rate | steps | accuracy before training |",
             "|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['name']} | {fmt(r['accuracy'])} | {fmt(r['mean_reward'])} | {fmt(r['parse_rate'])} | "
                     f"{fmt(r['mean_steps'])} | {fmt(r['eval_before_accuracy'])} |")
    cmd = "python scripts/ablate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (out / "ablations.md").write_text(f"Command: `{cmd}`\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
