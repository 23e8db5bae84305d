"""Turn `--router` arguments into `ServingRouter`s, through `routers.registry` only.

    random                      a baseline that needs no fitting, over every pool worker
    outputs/demo/trinity        a checkpoint directory (TRINITY, Conductor, a fitted baseline)
    trinity-demo=outputs/x      the same, served under the model name `trinity-demo`
    owner/name                  a checkpoint on the Hugging Face Hub (or in the local Hub cache)
    exports/my-router           a `baton export` directory (brings its own pool)

TRINITY coordinators are wrapped in a `MicroBatcher`, so concurrent requests share forward
passes; on CUDA the coordinator runs in bfloat16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from routers.errors import CheckpointError, ConfigError
from routers.serve.config import BatchConfig
from routers.serve.export import EXPORT_FILE, read_export
from routers.serving_router import ServingRouter


def split_spec(spec: str) -> tuple[str | None, str]:
    """'name=path' -> (name, path); 'path' -> (None, path)."""
    if "=" in spec:
        name, _, target = spec.partition("=")
        if not name or not target:
            raise ConfigError(f"--router {spec!r}: expected NAME=CHECKPOINT_DIR, a directory, or a baseline name")
        return name, target
    return None, spec


def export_pool_for(router_specs: list[str]) -> str | None:
    """The pool of the first `baton export` directory among `--router` specs (for serve without --pool)."""
    for spec in router_specs:
        p = Path(split_spec(spec)[1])
        if (p / EXPORT_FILE).is_file():
            return str(read_export(p)["pool_path"])
    return None


SERVE_FEATURE_CACHE = 50_000  # coordinator features kept in memory by a server (~0.1-0.2 GB at d<=1024)


def load_serving_router(spec: str, pool, *, device: str = "cpu", batch: BatchConfig | None = None) -> ServingRouter:
    from routers.checkpoint import read_checkpoint_type
    from routers.registry import BASELINES, baseline_class, load_checkpoint
    name, target = split_spec(spec)
    path = Path(target)
    if not path.exists() and target not in BASELINES and "/" in target and not target.startswith((".", "/")):
        from routers.checkpoint import pretrained_dir
        path = pretrained_dir(target)  # a Hub repo id: its snapshot (the local Hub cache when offline)
    if path.is_dir():
        if (path / EXPORT_FILE).is_file():
            info = read_export(path)
            path, name = info["router_path"], name or info["name"]
        rtype = read_checkpoint_type(path)
        kw: dict[str, Any] = {"serving": True, "pool": pool, "name": name, "device": device}
        if device.startswith("cuda"):
            kw["dtype"] = "bfloat16"  # a coordinator on the GPU runs in bf16
        if rtype in BASELINES:
            kw = {"serving": True, "name": name or rtype}
        router = load_checkpoint(path, **kw)
        trinity = getattr(router, "trinity", None)
        if trinity is not None and hasattr(trinity.coordinator, "disk_cache"):
            trinity.coordinator.disk_cache = False   # a server must not grow the on-disk feature cache
            trinity.coordinator.max_cached = SERVE_FEATURE_CACHE  # nor the in-memory one
        if trinity is not None and batch is not None:
            from routers.serve.batcher import MicroBatcher
            trinity.coordinator = MicroBatcher(trinity.coordinator, max_batch=batch.max_batch,
                                               max_wait_ms=batch.max_wait_ms)
    elif target in BASELINES:
        cls = baseline_class(target)
        if cls.needs_fit:
            raise ConfigError(f"--router {target}: this baseline must be fitted first; pass the directory of "
                              f"a fitted checkpoint (baselines that need no fitting, such as random, load by name)")
        from routers.baselines.serving import SingleChoice
        router = SingleChoice(cls(models=list(pool.names)), name=name or target)
    else:
        raise ConfigError(f"--router {spec!r}: neither a directory nor a baseline name "
                          f"(baselines: {', '.join(sorted(BASELINES))})")
    missing = [w for w in router.workers if w not in pool]
    if missing:
        raise CheckpointError(f"--router {spec}: routes to worker(s) {', '.join(missing)} that the pool lacks "
                              f"(pool has: {', '.join(pool.names)})")
    return router


def load_serving_routers(specs: list[str], pool, *, device: str = "cpu",
                         batch: BatchConfig | None = None) -> dict[str, ServingRouter]:
    out: dict[str, ServingRouter] = {}
    for spec in specs:
        r = load_serving_router(spec, pool, device=device, batch=batch)
        if r.name in out:
            raise ConfigError(f"--router {spec}: model name {r.name!r} is already served; "
                              f"use NAME=DIR to give it another name")
        out[r.name] = r
    return out
