"""Train a TRINITY router from a config: `baton train trinity --config FILE [--train SPEC]
[--out DIR] [--resume] [key=value ...]` and `scripts/train_trinity.py` both call `cli_train`.

One entry function per task reads top-down, calling each stage once; no stage calls back:

    config (trinity.config) -> data and features (trinity.data) -> objective (trinity.fitness,
    trinity.episodes) -> optimizer loop (trinity.optimizers.optimize: ask/tell strategies of
    trinity.trainer) -> evaluation (trinity.fitness.served_metrics / EpisodeObjective.evaluate_final)
    -> checkpoint (trinity.checkpoint.save_run)

Two tasks (`data.task`):
- route (`train_route`): single-turn selection on a recorded routing dataset (replay of recorded
  scores and costs). The coordinator reads `user: <prompt>`; its features are computed once
  (disk-cached) and the roles-free head is trained on them (`train.mode: head`), or features are
  recomputed per candidate under its SVF offsets (`train.mode: svf`, GPU configs).
- episode (`train_episode`): the multi-turn protocol against a worker pool on task items
  (`data.pool`), graded by each item's task.
Output directory: the checkpoint (config.json + router.safetensors, `trinity.checkpoint`), plus
metrics.json, history.json and the resumable trainer state.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from routers.accounting import decision_costs
from routers.errors import ConfigError
from trinity.checkpoint import is_main_process, save_run, warm_start
from trinity.config import TrinityConfig, load_config
from trinity.data import (COORDINATOR, RouteData, encoder_parts, episode_items, feature_source, final_eval_items,
                          load_routing_data, route_data, route_features, route_texts)
from trinity.fitness import HeldOutAccuracy, SelectionObjective, served_metrics
from trinity.frontier import frontier_lams, reference_cost
from trinity.frontier import to_config as frontier_config
from trinity.heads import head_from_config
from trinity.optimizers import optimize


# -- route task ----------------------------------------------------------------------------------
def train_route(cfg: TrinityConfig, train, test=None, *, out: str | Path | None = None, resume: bool = False,
                coordinator=None, encoder: str | None = None, with_head: bool = False):
    """Train the selection head on `train` (RoutingDataset); evaluate argmax routing on `test`;
    write the checkpoint to `out`. `encoder` (`data.encoder`, e.g. "minilm", or a concatenation
    such as "coordinator+minilm", `trinity.data.feature_source`) swaps the coordinator's features
    for others: comparison runs, no checkpoint is written then (a router serves from one
    coordinator's features). Returns the metrics, or (metrics, head, RouteData) `with_head`
    (callers that score the trained head themselves, e.g. scripts/ablate_features.py)."""
    # config
    if cfg.head.roles and cfg.head.kind != "selection":
        raise ConfigError("head.roles: data.task 'route' is single-turn selection; set head.roles: false")
    svf = cfg.train.mode == "svf"
    if svf and encoder is not None:
        raise ConfigError("train.mode: 'svf' needs the coordinator, not an encoder")
    t0 = time.perf_counter()
    if coordinator is None and COORDINATOR in encoder_parts(encoder):
        from trinity.coordinator import Coordinator
        coordinator = Coordinator.from_config(cfg.coordinator)
    source = feature_source(encoder, coordinator)
    # data and features
    data = route_data(cfg, train, test, source, features=not svf)
    # objective
    objective, head, select, report = _route_objective(cfg, data, coordinator if svf else None)
    t_feat = time.perf_counter() - t0
    x0 = None
    if cfg.train.init_from:
        x0 = warm_start(cfg.train.init_from, coordinator=coordinator if encoder is None else None, head=head,
                        workers=data.workers, svf=coordinator.svf if svf else None)
    # optimizer loop
    res = optimize(objective, cfg.train, out_dir=out, resume=resume, run_config=cfg.to_dict(), name=cfg.name,
                   validate=select, x0=x0)
    lams, X, ref = _route_frontier(cfg, data, res.x) if cfg.fitness.frontier else (None, None, None)
    # evaluation as served
    n_svf = getattr(objective, "n_svf", 0) if svf else 0
    x_head = res.x[n_svf:]
    head.set_flat(x_head)
    if svf:   # features under the trained offsets
        coordinator.svf.apply(res.x[:n_svf])
        data.features = route_features(source, data.train.prompts)
        data.test_features = None if data.test is None or not len(data.test) else route_features(source, data.test.prompts)
    metrics = {"train": served_metrics(objective, x_head, data.features, data.train),
               "seconds": {"features": t_feat, "total": None}, "optimizer": cfg.train.optimizer,
               "evaluations": res.evaluations, "selection": res.selection}
    if report is not None:  # held-out training queries selection did not see: what methods are compared on
        metrics["validation"] = {"accuracy": report(res.x)}
    if data.test_features is not None:
        metrics["test"] = served_metrics(objective, x_head, data.test_features, data.test)
    family = None
    if lams is not None:
        heads = []
        for lam, x in zip(lams, X):
            h = {"lam": float(lam), "train": objective.evaluate_argmax(x, data.features, data.train.scores,
                                                                       data.train.cost_matrix())}
            if data.test_features is not None:
                h["test"] = objective.evaluate_argmax(x, data.test_features, data.test.scores, data.test.cost_matrix())
            heads.append(h)
        family = {"config": frontier_config(lams, cfg.fitness.frontier, ref), "heads": X}
        metrics["frontier"] = heads
    metrics["seconds"]["total"] = time.perf_counter() - t0
    # checkpoint
    if encoder is not None and out is not None:
        print(f"data.encoder {encoder!r}: comparison run, no router checkpoint written to {out} (metrics only): "
              "a served router computes its features with its one coordinator", flush=True)
    save_run(out, metrics=metrics, history=res.history, coordinator=None if encoder is not None else coordinator,
             head=head, workers=data.workers, protocol=cfg.protocol, svf=coordinator.svf if svf else None,
             training=cfg.to_dict(), mean_cost=data.mean_cost, frontier=family)
    return (metrics, head, data) if with_head else metrics


def _route_objective(cfg: TrinityConfig, data: RouteData, coordinator=None):
    """(objective, head, select, report) for single-turn selection: the head on cached features,
    or (with `coordinator`, SVF mode) head and offsets with features recomputed per candidate.
    `select(x)` scores a point on the first held-out half by the head's own objective (accuracy,
    minus fitness.cost_weight times dollars when it is set); every optimizer returns its best point
    by it. `report(x)` gives accuracy on the second half, which selection never saw; both None
    without held-out rows."""
    fit = data.fit
    kw = dict(fitness=cfg.fitness, repeats=cfg.train.repeats, sampling=cfg.train.sampling,
              batch_size=cfg.train.batch_size, seed=cfg.train.seed, costs=data.costs, tokens=data.tokens)
    if coordinator is not None:
        from trinity.episodes import SVFSelectionObjective
        coordinator.enable_svf(cfg.svf)
        head = head_from_config(cfg.head, len(data.workers), coordinator.d)
        objective = SVFSelectionObjective(coordinator, route_texts(fit.prompts), head, fit.scores, data.workers, **kw)

        def held_out(rows):
            return HeldOutAccuracy(objective, route_texts([data.train.prompts[i] for i in rows]), data.train.scores[rows])
    else:
        F = data.features
        head = head_from_config(cfg.head, len(data.workers), F.shape[1])
        objective = SelectionObjective(head, F[data.fit_rows], fit.scores, data.workers, **kw)

        def held_out(rows, cost_weight=0.0):
            costs = decision_costs(data.train.cost_matrix()[rows]) if cost_weight else None
            return HeldOutAccuracy(objective, F[rows], data.train.scores[rows], costs=costs, cost_weight=cost_weight)
    if not len(data.select_rows):
        return objective, head, None, None
    select = held_out(data.select_rows, cfg.fitness.cost_weight) if coordinator is None else held_out(data.select_rows)
    return objective, head, select, held_out(data.report_rows) if len(data.report_rows) else None


def _route_frontier(cfg: TrinityConfig, data: RouteData, x_main: np.ndarray):
    """The cost-quality frontier (`trinity.frontier`): the main head (at fitness.cost_weight) plus
    one head per `fitness.frontier` weight, in ascending order, each found by the same optimizer,
    budget and selection rule, warm-started from the previous one. Returns (lams, X (K, n))."""
    if cfg.train.mode != "head":
        raise ConfigError("fitness.frontier: trained on cached features only (train.mode: head)")
    ref = reference_cost(data.costs)
    lams = frontier_lams(cfg.fitness.cost_weight, cfg.fitness.frontier, ref)
    X, x = [], x_main
    for k, lam in enumerate(lams):
        if lam != cfg.fitness.cost_weight:
            c = dataclasses.replace(cfg, fitness=dataclasses.replace(cfg.fitness, cost_weight=lam))
            objective, _, select, _ = _route_objective(c, data)
            print(f"frontier head {k + 1}/{len(lams)}: lam {lam:.4g} per dollar", flush=True)
            x = optimize(objective, cfg.train, run_config=c.to_dict(), name=f"{cfg.name}-frontier{k}",
                         validate=select, x0=x).x
        X.append(x_main if lam == cfg.fitness.cost_weight else x)
    return np.asarray(lams), np.stack(X), ref


# -- episode task --------------------------------------------------------------------------------
def train_episode(cfg: TrinityConfig, items: list, pool, *, test_items: list | None = None,
                  out: str | Path | None = None, resume: bool = False, coordinator=None) -> dict[str, Any]:
    """Train coordinator SVF (optional) and head on multi-turn episodes through `pool`. Worker calls
    are metered (`trinity.spend`): each generation's row carries its spend, and `train.max_spend_usd`
    stops the run between generations, or skips the final evaluation, before it passes the budget."""
    from trinity.episodes import EpisodeObjective
    from trinity.spend import make_guard
    t0 = time.perf_counter()
    if coordinator is None:
        from trinity.coordinator import Coordinator
        coordinator = Coordinator.from_config(cfg.coordinator)
    # objective (the data are the task items and the pool, metered)
    workers = list(pool.names)
    svf = coordinator.enable_svf(cfg.svf) if cfg.svf.enabled else None
    head = head_from_config(cfg.head, len(workers), coordinator.d)
    # evaluation as served (below): argmax episodes on a seeded sample of training items and the test items
    eval_items = final_eval_items(cfg, items)
    pool, guard = make_guard(cfg, pool, (svf.n_params if svf is not None else 0) + head.n_params, items, eval_items,
                             test_items or [])
    objective = EpisodeObjective(items, pool, coordinator, head, workers, cfg.protocol, fitness=cfg.fitness,
                                 repeats=cfg.train.repeats, batch_size=cfg.train.batch_size,
                                 seed=cfg.train.seed, svf=svf)
    x0 = None
    if cfg.train.init_from:
        x0 = warm_start(cfg.train.init_from, coordinator=coordinator, head=head, workers=workers, svf=svf)
    # optimizer loop
    res = optimize(objective, cfg.train, out_dir=out, resume=resume, run_config=cfg.to_dict(), name=cfg.name,
                   x0=x0, guard=guard)
    head.set_flat(res.x[objective.n_svf:])
    metrics: dict[str, Any] = {"optimizer": cfg.train.optimizer, "evaluations": res.evaluations}
    refused = None if guard is None else guard.refuses_evaluation(len(eval_items) + len(test_items or []))
    if refused:
        metrics["evaluation"] = refused
    else:
        final_train, _ = objective.evaluate_final(res.x, eval_items)
        metrics["train"] = final_train.__dict__
        if test_items:
            final_test, _ = objective.evaluate_final(res.x, test_items)
            metrics["test"] = final_test.__dict__
    family = None
    if cfg.fitness.frontier and not refused:
        family, metrics["frontier"] = _episode_frontier(cfg, items, pool, coordinator, head, workers, res.x,
                                                        metrics, eval_items, test_items, guard)
    if guard is not None:
        metrics["spend"] = guard.summary()
    metrics["seconds"] = time.perf_counter() - t0
    # checkpoint
    save_run(out, metrics=metrics, history=res.history, coordinator=coordinator, head=head, workers=workers,
             protocol=cfg.protocol, svf=svf, training=cfg.to_dict(), mean_cost=None, frontier=family)
    return metrics


def _episode_frontier(cfg: TrinityConfig, items, pool, coordinator, head, workers, x_main, main: dict, eval_items,
                      test_items, guard):
    """The multi-turn frontier (`trinity.frontier`): the main head plus one roles head per
    `fitness.frontier` weight, each trained on episodes with that cost penalty (same optimizer,
    budget and spend guard), warm-started from the previous one. A relative weight's unit here is
    the main (cost-weight) head's mean dollars per training question (`main`, its metrics, which
    are reused): r = 1 means paying what that policy pays costs one point of accuracy. Returns
    (checkpoint family, per-head metrics)."""
    from trinity.episodes import EpisodeObjective
    ref = main["train"]["cost"]
    if cfg.svf.enabled:
        raise ConfigError("fitness.frontier: heads on a fixed coordinator only (svf.enabled: false)")
    if not ref or not np.isfinite(ref) or ref <= 0:
        raise ConfigError(f"fitness.frontier: the main head's episodes cost {ref!r} dollars per question, so there "
                          "is no cost to trade against (price the pool's workers)")
    lams = frontier_lams(cfg.fitness.cost_weight, cfg.fitness.frontier, ref)
    X, heads, x = [], [], x_main
    for k, lam in enumerate(lams):
        if lam == cfg.fitness.cost_weight:  # the main head, trained and evaluated already
            X.append(x_main)
            heads.append({"lam": float(lam), **{s: main[s] for s in ("train", "test") if s in main}})
            continue
        fitness = dataclasses.replace(cfg.fitness, cost_weight=lam)
        objective = EpisodeObjective(items, pool, coordinator, head, workers, cfg.protocol, fitness=fitness,
                                     repeats=cfg.train.repeats, batch_size=cfg.train.batch_size,
                                     seed=cfg.train.seed)
        print(f"frontier head {k + 1}/{len(lams)}: lam {lam:.4g} per dollar", flush=True)
        c = dataclasses.replace(cfg, fitness=fitness)
        x = optimize(objective, cfg.train, run_config=c.to_dict(), name=f"{cfg.name}-frontier{k}", x0=x,
                     guard=guard).x
        X.append(x)
        h = {"lam": float(lam), "train": objective.evaluate_final(x, eval_items)[0].__dict__}
        if test_items:
            h["test"] = objective.evaluate_final(x, test_items)[0].__dict__
        heads.append(h)
    head.set_flat(x_main)
    return {"config": frontier_config(lams, cfg.fitness.frontier, ref), "heads": np.stack(X)}, heads


# -- entry points ---------------------------------------------------------------------------------
def run(cfg: TrinityConfig, out: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    out = cfg.out if out is None else out
    if cfg.data.task == "route":
        if cfg.train.max_spend_usd is not None:
            from trinity.spend import ROUTE_NOTE
            print(f"train.max_spend_usd: {ROUTE_NOTE}", flush=True)
        train, test = load_routing_data(cfg)
        return train_route(cfg, train, test, out=out, resume=resume, encoder=cfg.data.encoder)
    if cfg.data.pool is None:
        raise ConfigError("data.pool: data.task 'episode' needs a pool YAML")
    from routers.pool.config import load_pool
    pool = load_pool(cfg.data.pool)
    train_items, test_items = episode_items(cfg)
    if hasattr(pool, "register"):
        pool.register(train_items + test_items)
    return train_episode(cfg, train_items, pool, test_items=test_items or None, out=out, resume=resume)


def cli_train(args) -> int:
    cfg = load_config(args.config, list(getattr(args, "overrides", None) or []))
    if getattr(args, "train", None):
        cfg.data.train = args.train
    out = args.out or cfg.out
    if getattr(args, "estimate", False):   # the dry run: no coordinator, no worker call
        from trinity.spend import estimate, format_estimate
        print(format_estimate(estimate(cfg)))
        return 0
    metrics = run(cfg, out=out, resume=bool(getattr(args, "resume", False)))
    if not is_main_process():
        return 0
    print(json.dumps({k: v for k, v in metrics.items() if k in ("train", "test", "evaluation", "spend")}, indent=2,
                     default=str))
    print(f"{'metrics (no checkpoint: data.encoder)' if cfg.data.encoder else 'checkpoint and metrics'} in {out}/")
    return 0
