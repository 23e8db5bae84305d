"""Typed configs from plain mappings: dataclasses built from YAML with every value type-checked and
every error naming its dotted key, plus `a.b=c` overrides. TRINITY and the Conductor share it.

Range and choice rules sit on the fields themselves (`checked`), so every value is checked where
the config is built, before any data or model is loaded:

    steps: int = checked(20, ge=1)
    limit: int | None = checked(None, ge=1, why="null for all")
    kind: str = checked("linear", one_of=("linear", "lowrank"))
"""

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


@dataclasses.dataclass(frozen=True)
class Check:
    """Bounds and choices for one field; None/False means no such rule. A None value (an optional
    field left unset) is not checked; a list is checked element by element."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    one_of: tuple | None = None
    nonempty: bool = False
    why: str = ""                    # appended to the error, e.g. "GRPO compares a group"

    def error(self, value: Any) -> str | None:
        """What is wrong with `value`, or None when it passes."""
        if isinstance(value, list):
            return next((e for e in map(self.error, value) if e), None)
        if value is None:
            return None
        if self.nonempty and not str(value).strip():
            return "must not be empty"
        if self.one_of is not None and value not in self.one_of:
            return f"{value!r} is not one of {', '.join(map(str, self.one_of))}"
        for bound, ok, word in ((self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
                                (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
            if bound is not None and not ok(bound):
                return f"must be {word} {bound}, got {value!r}"
        return None


def checked(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
            one_of: Any = None, nonempty: bool = False, why: str = ""):
    """A dataclass field whose value `build` checks (see `Check`); the error names the dotted key."""
    rule = Check(ge, gt, le, lt, None if one_of is None else tuple(one_of), nonempty, why)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"check": rule})


def check_fields(obj: Any, prefix: str = "") -> None:
    """Apply every `checked` rule of dataclass instance `obj` (not its nested dataclasses)."""
    for f in dataclasses.fields(obj):
        rule = f.metadata.get("check")
        if rule is not None:
            problem = rule.error(getattr(obj, f.name))
            if problem:
                key = f"{prefix}.{f.name}" if prefix else f.name
                raise ConfigError(f"{key}: {problem}{f' ({rule.why})' if rule.why else ''}")


def build(cls, data: Any, prefix: str = ""):
    """An instance of dataclass `cls` from a mapping; unknown keys are refused by their dotted name,
    values of the wrong type or outside their field's `checked` rule by theirs."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; known keys{' in ' + prefix if prefix else ''}: "
                          f"{', '.join(sorted(names))}")
    obj = cls(**{k: coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()})
    check_fields(obj, prefix)
    return obj


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
