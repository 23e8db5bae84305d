"""Train a TRINITY router from a config: `baton train trinity --config FILE [--train SPEC]
[--out DIR] [--resume] [key=value ...]` and `scripts/train_trinity.py` both call `cli_train`.

Two tasks (`data.task`):
- route: single-turn selection on a recorded routing dataset (replay of recorded scores and costs).
  The coordinator reads `user: <prompt>`; its features are computed once (disk-cached) and the
  roles-free head is trained on them (`train.mode: head`), or features are recomputed per
  candidate under its SVF offsets (`train.mode: svf`, GPU configs).
- episode: the multi-turn protocol against a worker pool on task items (`data.pool`), graded by
  each item's task.
Output directory: the checkpoint (config.json + router.safetensors, `trinity.checkpoint`), plus
metrics.json, history.json and the resumable trainer state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from routers.accounting import decision_costs

from routers.errors import ConfigError, DataError
from trinity.config import TrinityConfig, load_config
from trinity.trainer import is_main_process


# -- data ---------------------------------------------------------------------------------------
def load_routing_data(cfg: TrinityConfig):
    """(train, test) RoutingDatasets: `data.train` (embedded or any spec) and its test split, or
    the test split of `data.test`."""
    if cfg.data.train == "embedded":
        if cfg.data.prices is not None:
            raise ConfigError("data.prices: the embedded dataset carries its recorded costs; drop data.prices")
        from routers.record import embedded_dataset
        ds = embedded_dataset(cfg.train.seed)
    else:
        from routers.data import load_dataset
        ds = load_dataset(cfg.data.train, prices=cfg.data.prices)
    train = ds.split("train") if "train" in ds.splits else ds
    if cfg.data.test is not None:
        from routers.data import load_dataset
        t = load_dataset(cfg.data.test, prices=cfg.data.prices)
        test = t.split("test") if "test" in t.splits else t
    else:
        test = ds.split("test") if "test" in ds.splits else None
    missing = np.isnan(train.scores).any(axis=1)
    if missing.all():
        raise DataError(f"{cfg.data.train}: every training query has a missing score")
    if missing.any():
        print(f"trinity: dropping {int(missing.sum())} training queries with missing scores")
        train = train.subset(~missing)
    if cfg.data.limit is not None and cfg.data.limit < len(train):
        idx = np.sort(np.random.default_rng(cfg.train.seed).choice(len(train), cfg.data.limit, replace=False))
        train = train.subset(idx)
    return train, test


def route_texts(prompts: list[str]) -> list[str]:
    """What the coordinator reads for single-turn routing: the one-line transcript `user: <prompt>`."""
    from trinity.coordinator import render_transcript
    return [render_transcript([("user", p)]) for p in prompts]


def route_features(source, prompts: list[str]) -> np.ndarray:
    """Features of `prompts` from a Coordinator, or from a `routers.embed` encoder name (the
    MiniLM comparison)."""
    if isinstance(source, str):
        from routers.embed import encode
        return np.asarray(encode(list(prompts), encoder=source), dtype=np.float32)
    return source.features(route_texts(prompts), progress=True).numpy()


def _mean_cost(ds) -> np.ndarray:
    """Per-model mean cost for the head's decisions (unpriced never free: routers.accounting)."""
    c = decision_costs(ds.cost_matrix())
    return c.mean(0) if len(ds) else np.zeros(ds.n_models)


def reference_metrics(ds) -> dict[str, Any]:
    """Best single model and oracle on `ds` (the yardsticks a router is read against), by the
    evaluator's own functions and its rule for missing scores and unknown costs."""
    from routers import metrics as M
    best = M.best_single(ds.scores, ds.cost_matrix())
    return {"best_single": {"model": ds.models[best["index"]], "accuracy": best["accuracy"],
                            "cost": best["cost"]},
            "oracle": M.oracle(ds.scores, ds.cost_matrix())["accuracy"], "n": len(ds)}


# -- route task ----------------------------------------------------------------------------------
def _route_objective(cfg: TrinityConfig, train, workers: list[str], source, coordinator):
    """(objective, head, select, report) for single-turn selection. `data.validation_fraction` of the
    training queries is held out and halved: `select(x)` scores a point on the first half (every
    optimizer returns its best point by it, `trinity.optimizers.Selector`), `report(x)` on the
    second, which selection never saw, so the reported validation figure is not a maximum over
    steps. The test split is never looked at during training. Head mode scores cached features;
    SVF mode recomputes features under each candidate's offsets."""
    from trinity.fitness import SelectionObjective
    from trinity.heads import head_from_config
    n_val = int(round(len(train) * cfg.data.validation_fraction))
    perm = np.random.default_rng([cfg.train.seed, 11]).permutation(len(train))
    val_idx, fit_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    fit = train.subset(fit_idx) if n_val else train
    halves = (np.sort(perm[:n_val][: (n_val + 1) // 2]), np.sort(perm[:n_val][(n_val + 1) // 2:]))
    tokens = None if fit.output_tokens is None else np.nan_to_num(fit.input_tokens) + np.nan_to_num(fit.output_tokens)
    kw = dict(fitness=cfg.fitness, repeats=cfg.train.repeats, sampling=cfg.train.sampling,
              batch_size=cfg.train.batch_size, seed=cfg.train.seed, costs=decision_costs(fit.cost_matrix()),
              tokens=tokens)
    if cfg.train.mode == "svf":
        if isinstance(source, str):
            raise ConfigError("train.mode: 'svf' needs the coordinator, not an encoder")
        from trinity.episodes import SVFSelectionObjective
        coordinator.enable_svf(cfg.svf)
        head = head_from_config(cfg.head, len(workers), coordinator.d)
        objective = SVFSelectionObjective(coordinator, route_texts(fit.prompts), head, fit.scores, workers, **kw)
        n_svf = objective.n_svf

        def scorer(rows):
            texts, S = route_texts([train.prompts[i] for i in rows]), train.scores[rows]

            def score(x):  # one coordinator pass over the held-out queries under x's offsets
                with coordinator.svf.applied(x[:n_svf]):
                    F = coordinator.features(texts).numpy()
                return objective.evaluate_argmax(x[n_svf:], F, S)["accuracy"]
            return score
    else:
        F = route_features(source, train.prompts)
        head = head_from_config(cfg.head, len(workers), F.shape[1])
        objective = SelectionObjective(head, F[fit_idx], fit.scores, workers, **kw)

        def scorer(rows):
            return lambda x: objective.evaluate_argmax(x, F[rows], train.scores[rows])["accuracy"]
    if not n_val:
        return objective, head, None, None
    return objective, head, scorer(halves[0]), (scorer(halves[1]) if len(halves[1]) else None)


def train_route(cfg: TrinityConfig, train, test=None, *, out: str | Path | None = None, resume: bool = False,
                coordinator=None, encoder: str | None = None) -> dict[str, Any]:
    """Train the selection head on `train` (RoutingDataset); evaluate argmax routing on `test`;
    write the checkpoint to `out`. `encoder` (e.g. "minilm") swaps the coordinator for a
    `routers.embed` encoder (comparison runs; no checkpoint is written then)."""
    from trinity.optimizers import optimize
    if cfg.head.roles and cfg.head.kind != "selection":
        raise ConfigError("head.roles: data.task 'route' is single-turn selection; set head.roles: false")
    t0 = time.perf_counter()
    if encoder is None and coordinator is None:
        from trinity.coordinator import Coordinator
        coordinator = Coordinator.from_config(cfg.coordinator)
    source = encoder if encoder is not None else coordinator
    workers = list(train.models)
    if test is not None and list(test.models) != workers:
        missing = sorted(set(workers) - set(test.models))
        if missing:
            raise DataError(f"test data lacks the training models {', '.join(missing)}")
        test = test.select_models(workers)  # same column order as the head
    objective, head, validate, report = _route_objective(cfg, train, workers, source, coordinator)
    t_feat = time.perf_counter() - t0
    x0 = None
    if cfg.train.init_from:
        from trinity.checkpoint import warm_start
        x0 = warm_start(cfg.train.init_from, coordinator=coordinator if encoder is None else None, head=head,
                        workers=workers, svf=coordinator.svf if cfg.train.mode == "svf" else None)
    res = optimize(objective, cfg.train, out_dir=out, resume=resume, run_config=cfg.to_dict(), name=cfg.name,
                   validate=validate, x0=x0)
    x = res.x
    if cfg.train.mode == "svf":
        coordinator.svf.apply(x[:objective.n_svf])
        x_head = x[objective.n_svf:]
    else:
        x_head = x
    head.set_flat(x_head)

    def evaluate(ds):
        F = route_features(source, ds.prompts)
        r = objective.evaluate_argmax(x_head, F, ds.scores, ds.cost_matrix())
        return {**r, **reference_metrics(ds)}

    metrics = {"train": evaluate(train), "seconds": {"features": t_feat, "total": None},
               "optimizer": cfg.train.optimizer, "evaluations": res.evaluations, "selection": res.selection}
    if report is not None:  # held-out training queries selection did not see: what methods are compared on
        metrics["validation"] = {"accuracy": float(report(x))}
    if test is not None and len(test):
        metrics["test"] = evaluate(test)
    metrics["seconds"]["total"] = time.perf_counter() - t0
    if out is not None and is_main_process():
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if encoder is None:
            from trinity.checkpoint import save
            save(out, coordinator=coordinator, head=head, workers=workers, protocol=cfg.protocol,
                 svf=coordinator.svf if cfg.train.mode == "svf" else None, training=cfg.to_dict(),
                 metrics=metrics, mean_cost=_mean_cost(train))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (out / "history.json").write_text(json.dumps(res.history, indent=1))
    return metrics


# -- episode task --------------------------------------------------------------------------------
def load_items(spec: str, limit: int | None, seed: int) -> list:
    """Task items from `mmlu:200,gsm8k:100` style specs (items per task; `limit` caps the rest)."""
    from routers.tasks import get_task
    items = []
    for part in spec.split(","):
        name, _, n = part.strip().partition(":")
        items += get_task(name).load(int(n) if n else limit)
    if not items:
        raise DataError(f"data.train: {spec!r} gave no task items")
    rng = np.random.default_rng(seed)
    return [items[i] for i in rng.permutation(len(items))]


def embedded_episode_split(cfg: TrinityConfig):
    """The embedded default for episodes: packaged MMLU+GSM8K items of `routers.record.embedded_dataset`,
    `data.limit` training items from its train split and `limit * validation_fraction` (at least 12)
    held-out items from its test split, seeded. Returns (train_items, test_items, dataset, test_idx)
    so callers can score the foundation baselines on exactly the held-out questions."""
    from routers.record import embedded_dataset
    from routers.tasks.registry import load_task_items
    seed = cfg.train.seed
    ds = embedded_dataset(seed)
    items = {it.id: it for it in load_task_items("mmlu:600,gsm8k:400", seed=seed)}  # embedded_dataset's items
    train_ds, test_ds = ds.split("train"), ds.split("test")
    n_train = min(cfg.data.limit or len(train_ds), len(train_ds))
    n_test = min(len(test_ds), max(12, int(round(n_train * cfg.data.validation_fraction))))
    rng = np.random.default_rng(seed)
    tr_idx = np.sort(rng.permutation(len(train_ds))[:n_train])
    te_idx = np.sort(rng.permutation(len(test_ds))[:n_test])
    train_items = [items[i] for i in np.asarray(train_ds.ids)[tr_idx] if i in items]
    test_items = [items[i] for i in np.asarray(test_ds.ids)[te_idx] if i in items]
    if len(train_items) != n_train or len(test_items) != n_test:
        raise DataError("data.train 'embedded': the embedded dataset's ids do not match the packaged task items")
    return train_items, test_items, ds, te_idx


def train_episode(cfg: TrinityConfig, items: list, pool, *, test_items: list | None = None,
                  out: str | Path | None = None, resume: bool = False, coordinator=None) -> dict[str, Any]:
    """Train coordinator SVF (optional) and head on multi-turn episodes through `pool`."""
    from trinity.episodes import EpisodeObjective
    from trinity.heads import head_from_config
    from trinity.optimizers import optimize
    t0 = time.perf_counter()
    if coordinator is None:
        from trinity.coordinator import Coordinator
        coordinator = Coordinator.from_config(cfg.coordinator)
    workers = list(pool.names)
    svf = coordinator.enable_svf(cfg.svf) if cfg.svf.enabled else None
    head = head_from_config(cfg.head, len(workers), coordinator.d)
    objective = EpisodeObjective(items, pool, coordinator, head, workers, cfg.protocol, fitness=cfg.fitness,
                                 repeats=cfg.train.repeats, batch_size=cfg.train.batch_size,
                                 seed=cfg.train.seed, svf=svf)
    x0 = None
    if cfg.train.init_from:
        from trinity.checkpoint import warm_start
        x0 = warm_start(cfg.train.init_from, coordinator=coordinator, head=head, workers=workers, svf=svf)
    res = optimize(objective, cfg.train, out_dir=out, resume=resume, run_config=cfg.to_dict(), name=cfg.name,
                   x0=x0)
    n_svf = objective.n_svf
    head.set_flat(res.x[n_svf:])
    # argmax episodes on (a seeded sample of at most batch_size) training items: coordinator passes are scarce
    n_eval = min(len(items), cfg.train.batch_size or len(items))
    eval_items = [items[i] for i in np.sort(np.random.default_rng([cfg.train.seed, 13]).choice(len(items), n_eval, replace=False))]
    final_train, _ = objective.evaluate_final(res.x, eval_items)
    metrics: dict[str, Any] = {"train": final_train.__dict__, "optimizer": cfg.train.optimizer,
                               "evaluations": res.evaluations}
    if test_items:
        final_test, _ = objective.evaluate_final(res.x, test_items)
        metrics["test"] = final_test.__dict__
    metrics["seconds"] = time.perf_counter() - t0
    if out is not None and is_main_process():
        out = Path(out)
        from trinity.checkpoint import save
        costs = None
        save(out, coordinator=coordinator, head=head, workers=workers, protocol=cfg.protocol, svf=svf,
             training=cfg.to_dict(), metrics=metrics, mean_cost=costs)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        (out / "history.json").write_text(json.dumps(res.history, indent=1))
    return metrics


# -- entry points ---------------------------------------------------------------------------------
def run(cfg: TrinityConfig, out: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    out = cfg.out if out is None else out
    if cfg.data.task == "route":
        train, test = load_routing_data(cfg)
        return train_route(cfg, train, test, out=out, resume=resume, encoder=cfg.data.encoder)
    if cfg.data.pool is None:
        raise ConfigError("data.pool: data.task 'episode' needs a pool YAML")
    from routers.pool.config import load_pool
    pool = load_pool(cfg.data.pool)
    if cfg.data.train == "embedded":
        train_items, test_items, _, _ = embedded_episode_split(cfg)
    else:
        items = load_items(cfg.data.train, cfg.data.limit, cfg.train.seed)
        n_test = int(round(len(items) * cfg.data.validation_fraction))
        train_items, test_items = items[n_test:], items[:n_test]
    if hasattr(pool, "register"):
        pool.register(train_items + test_items)
    return train_episode(cfg, train_items, pool, test_items=test_items or None, out=out, resume=resume)


def cli_train(args) -> int:
    cfg = load_config(args.config, list(getattr(args, "overrides", None) or []))
    if getattr(args, "train", None):
        cfg.data.train = args.train
    out = args.out or cfg.out
    metrics = run(cfg, out=out, resume=bool(getattr(args, "resume", False)))
    if not is_main_process():
        return 0
    print(json.dumps({k: v for k, v in metrics.items() if k in ("train", "test")}, indent=2, default=str))
    print(f"checkpoint and metrics in {out}/")
    return 0
