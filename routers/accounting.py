"""The one rule for missing scores and unknown costs, used by training, evaluation, baselines and metrics.

Missing score (NaN in `RoutingDataset.scores`):
- A routing that lands on it scores 0, a wrong answer, and the number of such cells is reported as
  `missing`. It is never skipped (`nanmean`): skipping would let a router gain by steering toward
  unrecorded cells, and would score two routers on different questions.
- Estimators (a model's mean score, kNN's neighbours) learn from recorded scores only: nothing is
  imputed into a fit.

Unknown cost (NaN in `RoutingDataset.costs`, or no costs at all):
- Never 0. A sum or mean that touches one is unknown: NaN in arrays, null in JSON, "?" in tables,
  with the models behind it named (`unpriced_models`). Metrics that need costs (AIQ, APGR, CPT,
  the cheapest "weak" model) are not computed.
- Only the user can give it a number: a price table (`--prices`) or an explicit
  `--unpriced-cost X` (`fill_unpriced`), which the report states.
- A router still has to decide: `decision_costs` gives an unpriced cell the mean known price of its
  model, or the dearest known mean if the model has none, so an unpriced model is never the cheap
  choice. That number steers decisions only; it is never reported as a cost.
"""

from __future__ import annotations

import numpy as np


def score_chosen(chosen_scores) -> tuple[np.ndarray, int]:
    """Per-query scores of a routing's chosen cells, missing (NaN) as 0, and how many were missing."""
    s = np.asarray(chosen_scores, dtype=np.float64)
    missing = int(np.isnan(s).sum())
    return np.where(np.isnan(s), 0.0, s), missing


def mean_cost(costs, axis=None):
    """Mean dollars; NaN (unknown) wherever a term is unknown: never a partial or zero-filled sum."""
    c = np.asarray(costs, dtype=np.float64)
    if c.size == 0:
        return np.float64("nan") if axis is None else np.full(np.delete(c.shape, axis), np.nan)
    return c.mean(axis=axis)  # NaN propagates by design


def known_dollars(x) -> float | None:
    """A dollar figure for JSON and tables: None where it is unknown (None or NaN), never 0."""
    return None if x is None or not np.isfinite(x) else float(x)


def unpriced_models(costs, models: list[str]) -> list[str]:
    """Models with at least one unknown cost cell in (n, m) `costs` (None: every model)."""
    if costs is None:
        return list(models)
    c = np.asarray(costs, dtype=np.float64).reshape(-1, len(models))
    return [m for m, bad in zip(models, np.isnan(c).any(axis=0)) if bad]


def fill_unpriced(ds, value: float):
    """`ds` with every unknown cost set to `value` dollars, the user's explicit choice (recorded in meta)."""
    from dataclasses import replace

    if not np.isfinite(value) or value < 0:
        raise ValueError(f"--unpriced-cost must be a finite number of dollars >= 0, got {value}")
    c = np.full(ds.scores.shape, np.nan) if ds.costs is None else ds.costs
    filled = np.where(np.isnan(c), float(value), c)
    meta = {**ds.meta, "unpriced_cost": float(value),
            "unpriced_models": unpriced_models(ds.costs, ds.models)}
    return replace(ds, costs=filled, meta=meta)


def decision_costs(costs) -> np.ndarray:
    """Costs for routing decisions only (see module docstring): unknown cells get their model's mean
    known cost, or the dearest model mean when the model has none; all unknown gives zeros (the
    router is then cost-blind, which `baton eval` reports)."""
    c = np.array(costs, dtype=np.float64, copy=True)
    if c.ndim != 2 or c.size == 0 or not np.isnan(c).any():
        return c
    known = ~np.isnan(c)
    col_n = known.sum(axis=0)
    col_mean = np.where(col_n > 0, np.where(known, c, 0.0).sum(axis=0) / np.maximum(col_n, 1), np.nan)
    fallback = np.nanmax(col_mean) if np.isfinite(col_mean).any() else 0.0
    col_mean = np.where(np.isnan(col_mean), fallback, col_mean)
    return np.where(known, c, col_mean[None, :])
