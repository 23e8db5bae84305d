"""Load any router by name, by the checkpoint's own `config.json` "router_type" (from a folder or
a Hub repo id), and find the shipped configs by name (`demo` -> configs/trinity/demo.yaml).

This is the only way `routers/` reaches `trinity/` and `conductor/`: by the module path written
here, imported when a checkpoint of that type is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from routers.checkpoint import read_checkpoint_type
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
    "trinity": "trinity.serving:load_router",
    "conductor": "conductor.checkpoint:load_router",
}


def _import(spec: str) -> Any:
    mod, attr = spec.split(":")
    return getattr(importlib.import_module(mod), attr)


def baseline_class(name: str):
    if name not in BASELINES:
        raise ConfigError(f"unknown router {name!r}; known baselines: {', '.join(sorted(BASELINES))}")
    return _import(BASELINES[name])


def load_pretrained(id_or_path: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                    token: str | None = None, **kw: Any) -> Any:
    """Any router from a checkpoint folder or a Hub repo id, by the router_type written in it."""
    from routers.checkpoint import pretrained_dir
    return load_checkpoint(pretrained_dir(id_or_path, revision=revision, cache_dir=cache_dir, token=token), **kw)


def config_path(kind: str, spec: str | Path) -> Path:
    """A config file: `spec` itself if it exists, else the shipped `configs/<kind>/<spec>.yaml`
    (found in the repository or in the installed package)."""
    from routers.record import configs_dir
    p = Path(spec)
    if p.exists():
        return p
    shipped = configs_dir() / kind
    if p.suffix in ("", ".yaml", ".yml") and len(p.parts) == 1:
        f = shipped / (p.name if p.suffix else f"{p.name}.yaml")
        if f.is_file():
            return f
    names = sorted(x.stem for x in shipped.glob("*.yaml"))
    raise ConfigError(f"{spec}: no such config file, nor a shipped {kind} config (shipped: {', '.join(names)})")


# Router types whose checkpoint names a separate coordinator model: `baton export --include-coordinator`
COORDINATOR_BUNDLERS: dict[str, str] = {
    "trinity": "trinity.checkpoint:bundle_coordinator",
}


def bundle_coordinator(rtype: str, ckpt: Path, router_dir: Path, dest: Path) -> None:
    """Copy the coordinator of checkpoint `ckpt` into `dest`, pointing the exported copy at it."""
    if rtype not in COORDINATOR_BUNDLERS:
        raise ConfigError(f"--include-coordinator: a {rtype} checkpoint has no separate coordinator "
                          "(its folder already holds every weight it needs)")
    _import(COORDINATOR_BUNDLERS[rtype])(Path(ckpt), Path(router_dir), Path(dest))


# `baton train KIND`: the config loader per kind (to find the config's own `out`)
CONFIG_LOADERS: dict[str, str] = {
    "trinity": "trinity.config:load_config",
    "conductor": "conductor.config:load_config",
}


def check_out_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Training into `out` must not replace what is there by accident: a directory that already holds
    files is refused unless `resume` (continue its run) or `overwrite` (replace it) is asked for."""
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: continue the run in --out, or replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a directory")
    if resume or overwrite or not out.is_dir():
        return
    held = sorted(p.name for p in out.iterdir())
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise ConfigError(f"--out {out}: already holds {shown}; pass --resume to continue that run, "
                          "--overwrite to replace it, or choose another --out")


def cli_train(args) -> int:
    """`baton train trinity|conductor`: the config by name or path (`--config demo`), the output
    directory checked (`check_out_dir`), then the trainer's own CLI entry (`args._train_fn`)."""
    args.config = str(config_path(args.router, args.config))
    out = args.out
    if out is None:
        out = _import(CONFIG_LOADERS[args.router])(args.config, list(getattr(args, "overrides", None) or [])).out
    if not getattr(args, "estimate", False):   # a dry run writes nothing
        check_out_dir(out, resume=bool(getattr(args, "resume", False)), overwrite=bool(getattr(args, "overwrite", False)))
    return _import(args._train_fn)(args)


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
