"""What the routers tune on: a held-out slice of train when no validation split is given, and the
routed accuracy they pick hyper-parameters by."""

from __future__ import annotations

import numpy as np


def holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, held_out_idx): a seeded split used when no validation split is given."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * fraction))) if n >= 10 else 0
    return np.sort(perm[k:]), np.sort(perm[:k])


def routed_accuracy(quality: np.ndarray, cost: np.ndarray, scores: np.ndarray, lam: float = 0.0) -> float:
    """Mean true score of the model each query is routed to (NaN truths count as 0)."""
    choice = np.argmax(quality - lam * cost - 1e-9 * cost, axis=1)
    return float(np.nan_to_num(scores[np.arange(len(choice)), choice], nan=0.0).mean())
