"""TRINITY's cost-quality frontier: a family of selection heads, one per cost weight, in one checkpoint.

Why a family rather than one head conditioned on the weight: the paper's head is a linear map of the
coordinator's feature and nothing else; conditioning it on the weight would change that model. A
family costs one head-only search per weight on the already cached features (each warm-started
from the previous weight's head), and every operating point gets its own optimum instead of a
compromise shared with the others.

Units. The config gives relative weights (`fitness.frontier: [0, 0.1, 0.3, 1]`): r means "sending
every query to the dearest worker costs r of accuracy". The checkpoint stores them in the
evaluator's units, lam = r / reference_cost (accuracy per dollar, reference_cost = the dearest
worker's mean dollars per query on the training rows), so `baton eval` sweeps exactly the trained
heads and `baton serve`'s `lam` picks among them on the scale every other router uses
(`quality - lam * cost`).

A lam between two trained weights uses the largest trained weight <= lam (never a steeper
trade-off than asked for); a lam outside the trained range is clamped to it with a warning, never
extrapolated.
"""

from __future__ import annotations

import warnings

import numpy as np

from routers.errors import ConfigError


def check_weights(relative) -> list[float]:
    """The config's relative weights, sorted; refused unless finite and >= 0 and distinct."""
    r = [float(x) for x in relative]
    if not r or any(not np.isfinite(x) or x < 0 for x in r) or len(set(r)) != len(r):
        raise ConfigError(f"fitness.frontier: need distinct finite weights >= 0, got {list(relative)}")
    return sorted(r)


def reference_cost(decision_costs: np.ndarray) -> float:
    """The dearest worker's mean decision cost per query (the unit of a relative weight)."""
    ref = float(np.asarray(decision_costs, np.float64).mean(axis=0).max()) if np.size(decision_costs) else 0.0
    if not ref > 0:
        raise ConfigError("fitness.frontier: the training data has no prices, so there is no cost to trade "
                          "against; give data.prices (a price table) or drop fitness.frontier")
    return ref


def frontier_lams(cost_weight: float, relative, ref: float) -> list[float]:
    """The family's lams, ascending: the main head's `cost_weight` plus r / ref for each relative r."""
    return sorted({float(cost_weight), *(r / ref for r in check_weights(relative))})


def head_index(lams, lam: float, where: str = "trinity") -> int:
    """Index of the trained head that serves `lam`: the largest trained lam <= lam, clamped with a
    warning outside the trained range."""
    lams = np.asarray(lams, dtype=np.float64)
    lam = float(lam)
    if not np.isfinite(lam):
        raise ConfigError(f"{where}: lam must be a finite number, got {lam}")
    if lam < lams[0] or lam > lams[-1]:
        warnings.warn(f"{where}: lam {lam:g} is outside the trained frontier [{lams[0]:g}, {lams[-1]:g}]; "
                      "using the nearest trained head", stacklevel=3)
    return int(np.clip(np.searchsorted(lams, lam, side="right") - 1, 0, len(lams) - 1))


def to_config(lams, relative, ref: float) -> dict:
    """The checkpoint's `frontier` section (the heads themselves are the `frontier` tensor, one row
    per lam; each head's metrics are in the checkpoint's metrics)."""
    return {"lams": [float(x) for x in lams], "relative": sorted(float(x) for x in relative),
            "reference_cost": float(ref)}
