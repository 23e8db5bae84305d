"""Load any router by name or by the checkpoint's own `config.json` "router_type".

This is the only way `routers/` reaches `trinity/` and `conductor/`: by the module path written
here, imported when a checkpoint of that type is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from routers.checkpoint import read_router_config
from routers.errors import CheckpointError, ConfigError

# Baseline routers: name -> "module:Class". Filled by routers/baselines.
BASELINES: dict[str, str] = {
    "random": "routers.baselines.simple:RandomRouter",
    "best-single": "routers.baselines.simple:BestSingleRouter",
    "oracle": "routers.baselines.simple:OracleRouter",
    "knn": "routers.baselines.knn:KNNRouter",
    "mlp": "routers.baselines.mlp:MLPRouter",
    "mf": "routers.baselines.mf:MFRouter",
    "sw-elo": "routers.baselines.sw_elo:SWEloRouter",
    "cascade": "routers.baselines.cascade:CascadeRouter",
    "rules": "routers.baselines.rules:RulesRouter",
}

# Trained-router checkpoints: router_type -> "module:function(path, **kw)" returning an evaluable
# router (a `routers.baselines.base.Router`) or, with serving=True, a `ServingRouter`.
CHECKPOINT_LOADERS: dict[str, str] = {
    "trinity": "trinity.checkpoint:load_router",
    "conductor": "conductor.checkpoint:load_router",
}


def _import(spec: str) -> Any:
    mod, attr = spec.split(":")
    return getattr(importlib.import_module(mod), attr)


def baseline_class(name: str):
    if name not in BASELINES:
        raise ConfigError(f"unknown router {name!r}; known baselines: {', '.join(sorted(BASELINES))}")
    return _import(BASELINES[name])


def read_checkpoint_type(path: str | Path) -> str:
    """The router_type of a checkpoint directory. A Conductor checkpoint is an HF model folder
    (whose config.json is the model's), so its type lives in conductor_config.json."""
    path = Path(path)
    if (path / "conductor_config.json").is_file():
        return "conductor"
    return read_router_config(path)["router_type"]


def load_checkpoint(path: str | Path, **kw: Any) -> Any:
    """Load a checkpoint directory by the router_type written in it."""
    rtype = read_checkpoint_type(path)
    if rtype in CHECKPOINT_LOADERS:
        return _import(CHECKPOINT_LOADERS[rtype])(path, **kw)
    if rtype in BASELINES:
        if kw.get("serving"):
            from routers.baselines.serving import SingleChoice
            return SingleChoice(_import(BASELINES[rtype]).load(path), name=kw.get("name") or rtype)
        return _import(BASELINES[rtype]).load(path)
    raise CheckpointError(f"{path}: unknown router_type {rtype!r}; known: "
                          f"{', '.join(sorted(set(BASELINES) | set(CHECKPOINT_LOADERS)))}")
