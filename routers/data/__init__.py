"""Routing datasets: one schema (RoutingDataset), one loader for every outside format, prices, splits.

Names are resolved lazily (PEP 562) so that importing `routers.data.schema`, as every router does,
does not pull in pandas and the adapters.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ADAPTERS": "load", "detect_format": "load", "load_dataset": "load",
    "save_jsonl": "native", "save_parquet": "native", "save_arrow": "arrow",
    "PriceTable": "prices", "apply_prices": "prices", "load_prices": "prices",
    "SPLITS": "schema", "RoutingDataset": "schema",
    "assign_splits": "splits",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"routers.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'routers.data' has no attribute {name!r}")


def __dir__():
    return __all__
