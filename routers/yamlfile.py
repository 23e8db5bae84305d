"""Reading YAML config files: one place for "not found", "invalid YAML" and `base:` chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from routers.errors import ConfigError


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The parsed YAML at `path`; a missing file or invalid YAML is a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML ({e})") from None


def merge(base: dict, over: dict) -> dict:
    """`over` merged into `base`, recursively for nested mappings (neither is modified)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_tree(path: str | Path, _seen: tuple = ()) -> dict:
    """A config mapping; a `base: other.yaml` key (relative to this file) is read first and this
    file's keys are merged over it, so an ablation config states only what it changes."""
    p = Path(path)
    if p.resolve() in _seen:
        raise ConfigError(f"{p}: 'base' chain loops back to itself")
    data = read_yaml(p) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of config sections")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{p}: base must be a file name, got {base!r}")
        data = merge(read_config_tree(p.parent / base, _seen + (p.resolve(),)), data)
    return data
