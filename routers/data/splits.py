"""Deterministic train/validation/test assignment for files that carry no split.

A query's split is a function of (seed, prompt) only, through SHA-256 (Python's `hash` is salted per
process), so the same prompt lands in the same split on every machine, and duplicated prompts never
leak across splits.
"""

from __future__ import annotations

import hashlib

from routers.data.schema import SPLITS
from routers.errors import ConfigError


def check_fractions(fractions) -> tuple[float, float, float]:
    try:
        fr = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"split_fractions must be three numbers (train, validation, test), "
                          f"got {fractions!r}") from None
    if len(fr) != 3 or any(x < 0 for x in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"split_fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    return fr  # type: ignore[return-value]


def hash_unit(prompt: str, seed: int = 0) -> float:
    """Uniform number in [0, 1) from the first 8 bytes of sha256(f"{seed}\\0{prompt}")."""
    h = hashlib.sha256(f"{seed}\0{prompt}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def assign_splits(prompts: list[str], *, seed: int = 0,
                  fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> list[str]:
    """One of SPLITS per prompt: u < train -> train, u < train+validation -> validation, else test."""
    tr, va, _ = check_fractions(fractions)
    out = []
    for p in prompts:
        u = hash_unit(p, seed)
        out.append(SPLITS[0] if u < tr else SPLITS[1] if u < tr + va else SPLITS[2])
    return out


SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


def normalize_split(name: str) -> str | None:
    """'val'/'dev' -> 'validation' etc.; None for names that are not a split."""
    return SPLIT_ALIASES.get(str(name).strip().lower())
