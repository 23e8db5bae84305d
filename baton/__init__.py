"""`import baton`: the Python API over routers/, trinity/ and conductor/, for notebooks.

    import baton
    ds = baton.load_dataset("embedded")                      # a file, a folder, a hub id or "embedded"
    knn = baton.baselines.KNN().fit(ds.split("train"))
    report = baton.evaluate({"knn": knn}, ds)                # what `baton eval` computes
    router = baton.train_trinity("route", data=ds, **{"train.iterations": 5})
    router.save_pretrained("runs/t1")                        # checkpoint + model card
    router = baton.TrinityRouter.from_pretrained("runs/t1")  # or a Hub repo id
    router.route("What is the capital of Peru?")             # workers, best first
    pool = baton.load_pool("simulated")                      # shipped configs by name
    reply = router.answer([{"role": "user", "content": "2+2?"}], pool=pool)

Names resolve on first use (PEP 562), so `import baton` loads neither torch nor the data stack.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "routers.data.load:load_dataset",
    "load_pool": "routers.pool.config:load_pool",
    "RoutingDataset": "routers.data.schema:RoutingDataset",
    "Router": "routers.baselines.base:Router",
    "TrinityRouter": "trinity.serving:TrinityRouter",
    "ConductorRouter": "conductor.checkpoint:ConductorRouter",
    "TrinityConfig": "trinity.config:TrinityConfig",
    "ConductorConfig": "conductor.config:ConductorConfig",
    "evaluate": "baton.api:evaluate",
    "train_trinity": "baton.api:train_trinity",
    "train_conductor": "baton.api:train_conductor",
    "from_pretrained": "baton.api:from_pretrained",
    "config_path": "routers.registry:config_path",
}
__all__ = sorted([*_EXPORTS, "baselines"])


def __getattr__(name: str):
    if name == "baselines":
        return importlib.import_module("baton.baselines")
    if name in _EXPORTS:
        mod, attr = _EXPORTS[name].split(":")
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'baton' has no attribute {name!r}")


def __dir__():
    return __all__
