"""Typed configs from plain mappings: dataclasses built from YAML with every value type-checked and
every error naming its dotted key, plus `a.b=c` overrides. TRINITY and the Conductor share it."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

from routers.errors import ConfigError


def coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp` (a dataclass, Optional, list[...], dict, or scalar), or ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, {} if value is None else value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp) or (Any,)
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        return {str(k): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()} if args else dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp}")


def build(cls, data: Any, prefix: str = ""):
    """An instance of dataclass `cls` from a mapping; unknown keys are refused by their dotted name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; known keys{' in ' + prefix if prefix else ''}: "
                          f"{', '.join(sorted(names))}")
    return cls(**{k: coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()})


def apply_dotted(tree: dict, overrides: list[str], *, known_only: bool = False) -> dict:
    """`a.b=c` strings applied to a nested mapping (in place, returned); `c` is parsed as YAML (so 3,
    0.5, true, null, [a, b] work). With `known_only`, a key must already exist in `tree`."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected KEY=VALUE, e.g. train.iterations=10")
        key, raw = ov.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key}: cannot parse value {raw!r} ({e})") from None
        node, parts = tree, key.split(".")
        for i, p in enumerate(parts[:-1]):
            if known_only and not isinstance(node.get(p), dict):
                raise ConfigError(f"override {key}: unknown config key {'.'.join(parts[:i + 1])}")
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {p!r} is not a section")
        if known_only and parts[-1] not in node:
            raise ConfigError(f"override {key}: unknown config key {key}")
        node[parts[-1]] = value
    return tree
