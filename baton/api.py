"""What `baton.evaluate`, `baton.train_trinity`, `baton.train_conductor` and `baton.from_pretrained`
do: the CLI's functions, called with Python objects, returning Python objects (a report dict, a
trained router)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from routers.errors import ConfigError


def _dataset(data):
    from routers.data.schema import RoutingDataset
    if isinstance(data, RoutingDataset):
        return data
    if isinstance(data, (str, Path)):
        from routers.data.load import load_dataset
        return load_dataset(str(data))
    raise ConfigError(f"data: expected a RoutingDataset or a dataset spec, got {type(data).__name__}")


def evaluate(routers: dict[str, Any], data, *, train=None, pool=None, n_boot: int = 1000, seed: int = 0,
             allow_overlap: bool = False, progress: bool = False) -> dict:
    """`baton eval` from Python: the same splits (`routers.evaluate.split_for_eval`) and the same
    `routers.evaluate.evaluate` call, so the same numbers. `routers`: name -> a Router (fitted ones
    are used as they are, others are fitted on the train split, tuning on the validation split as
    `baton eval` does), a baseline name, or a checkpoint folder / Hub id. `data` / `train`:
    RoutingDatasets or dataset specs. `pool` (a Pool or a shipped pool name): episode routers
    (multi-turn TRINITY, Conductor) answer the test questions through it, as `baton eval --pool`."""
    from routers.evaluate import evaluate as _evaluate, split_for_eval
    from routers.registry import BASELINES, baseline_class, load_pretrained
    built = {}
    for name, r in routers.items():
        if isinstance(r, str):
            if r in BASELINES:
                r = baseline_class(r)()
            else:
                r = load_pretrained(r)
                r.fitted = True  # a checkpoint is used as trained, as `baton eval --routers name=DIR`
        built[name] = r
    data = _dataset(data)
    source = None if train is None else _dataset(train)
    tr, validation, test = split_for_eval(data, source, data_spec=data.name,
                                          train_spec=None if source is None else source.name,
                                          allow_overlap=allow_overlap)
    if isinstance(pool, (str, Path)):
        from routers.pool.config import load_pool
        pool = load_pool(pool)
    return _evaluate(built, tr, test, n_boot=n_boot, seed=seed, validation=validation, pool=pool,
                     progress=progress)


def _overrides(kw: dict[str, Any]) -> list[str]:
    """{"train.iterations": 5} -> ["train.iterations=5"] (values as JSON, which the YAML parser reads)."""
    return [f"{k}={json.dumps(v)}" for k, v in kw.items()]


def _trinity_config(config, overrides: dict[str, Any]):
    from trinity.config import TrinityConfig, apply_overrides, load_config
    if isinstance(config, TrinityConfig):
        return apply_overrides(config, _overrides(overrides))
    from routers.registry import config_path
    return load_config(config_path("trinity", config), _overrides(overrides))


def train_trinity(config="route", data=None, *, out: str | Path | None = None, device: str | None = None,
                  **overrides: Any):
    """Train TRINITY and return the trained router (a `TrinityRouter`).

    config: a shipped config name ("route", "demo", "paper"), a YAML path or a TrinityConfig;
    overrides: dotted keys, e.g. **{"train.iterations": 5}; data: a RoutingDataset (route task) or a
    dataset / task spec replacing data.train; out: where the checkpoint, metrics.json and history go
    (None: a temporary folder, removed once the router is loaded)."""
    from trinity.data import split_routing_dataset
    from trinity.serving import TrinityRouter
    from trinity.train import run, train_route
    cfg = _trinity_config(config, overrides)
    if device is not None:
        cfg.coordinator.device = device
    from routers.data.schema import RoutingDataset
    with tempfile.TemporaryDirectory(prefix="baton-trinity-") as tmp:
        target = Path(out) if out is not None else Path(tmp)
        if cfg.data.encoder is not None:
            raise ConfigError("data.encoder: a comparison run with an encoder writes no checkpoint, so there "
                              "is no router to return; drop data.encoder")
        if isinstance(data, RoutingDataset):
            if cfg.data.task != "route":
                raise ConfigError("data: a RoutingDataset trains the route task; set data.task: route "
                                  "(the episode task takes task items, e.g. data='mmlu:200')")
            cfg.data.train = data.name  # recorded in the checkpoint as what it was trained on
            train, test = split_routing_dataset(cfg, data)
            train_route(cfg, train, test, out=target)
        else:
            if data is not None:
                cfg.data.train = str(data)
            run(cfg, out=target)
        return TrinityRouter.load(target, device=cfg.coordinator.device)


def train_conductor(config="demo", *, out: str | Path | None = None, progress: bool = False, **overrides: Any):
    """Train a Conductor (GRPO) and return the trained `ConductorRouter`. config: a shipped config
    name ("demo", "paper", ...), a YAML path or a ConductorConfig; overrides: dotted keys."""
    from conductor.checkpoint import load_router
    from conductor.config import ConductorConfig, load_config
    from conductor.train import train
    from routers.registry import config_path
    from routers.typedconfig import apply_dotted, build
    if isinstance(config, ConductorConfig):
        cfg = build(ConductorConfig, apply_dotted(config.to_dict(), _overrides(overrides)))
    else:
        cfg = load_config(config_path("conductor", config), _overrides(overrides))
    with tempfile.TemporaryDirectory(prefix="baton-conductor-") as tmp:
        target = Path(out) if out is not None else Path(tmp)
        train(cfg, target, progress=progress)
        return load_router(target, dtype=cfg.policy.dtype)


def from_pretrained(id_or_path: str | Path, **kw: Any):
    """Any router (TRINITY, Conductor, a fitted baseline) from a checkpoint folder or a Hub repo id
    (kw: revision, cache_dir, token, and the loader's own, e.g. device)."""
    from routers.registry import load_pretrained
    return load_pretrained(id_or_path, **kw)
