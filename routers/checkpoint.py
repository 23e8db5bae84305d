"""Reading a checkpoint directory's `config.json`: one place for its "missing", "invalid JSON" and
"wrong router_type" errors, used by the registry, the baselines and TRINITY."""

from __future__ import annotations

import json
from pathlib import Path

from routers.errors import CheckpointError


def read_router_config(path: str | Path, expected_type: str | None = None) -> dict:
    """`path/config.json` as a dict with a string `router_type` (equal to `expected_type` if given)."""
    path = Path(path)
    f = path / "config.json"
    if not f.is_file():
        raise CheckpointError(f"{path}: no config.json; not a router checkpoint")
    try:
        cfg = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: invalid JSON ({e})") from None
    rtype = cfg.get("router_type") if isinstance(cfg, dict) else None
    if not isinstance(rtype, str):
        raise CheckpointError(f"{f}: missing 'router_type'")
    if expected_type is not None and rtype != expected_type:
        raise CheckpointError(f"{f}: router_type {rtype!r}, expected {expected_type!r}")
    return cfg
