"""The objective stage: what a candidate router is worth. The fitness every optimizer maximizes,
the head-only objective that computes it fast on cached coordinator features, the held-out
accuracy that selects and reports a run's point (`HeldOutAccuracy`), and evaluation as served
(`served_metrics`, read against the best single model and the oracle).

fitness = mean terminal correctness + diversity_bonus * diversity + turn_bonus * turn_efficiency
          - cost_weight * mean dollars per query
(`FitnessConfig`; weights 0 except correctness reproduce the paper's cost-free objective).
diversity is the normalized entropy of the candidate's worker usage (0: always one worker,
1: all workers equally); turn_efficiency is 1 - turns_used / max_turns on solved episodes (0 for
single-turn routing). Both are our reading of the paper's "diversity" and "turn" bonuses.

Randomness is derived from (seed, generation, candidate index) so a candidate's fitness does not
depend on which process evaluates it or whether the run was resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from routers.accounting import decision_costs, known_dollars, mean_cost, score_chosen

from routers.errors import DataError
from trinity.config import FitnessConfig
from trinity.heads import softmax


@dataclass
class FitnessResult:
    fitness: float
    accuracy: float
    cost: float                      # mean dollars per query
    tokens: float = 0.0              # mean worker tokens per query
    diversity: float = 0.0
    turns: float = 1.0               # mean turns per episode
    worker_hist: dict[str, int] = field(default_factory=dict)
    role_hist: dict[str, int] = field(default_factory=dict)


class Objective(Protocol):
    """What the trainers optimize: a flat parameter vector in, fitness (higher is better) out."""

    n_params: int

    def x0(self) -> np.ndarray: ...

    def evaluate(self, X: np.ndarray, generation: int, indices: Sequence[int]) -> list[FitnessResult]:
        """Fitness of each row of X; `indices` are the rows' positions in the full population
        (seed the per-candidate randomness with them)."""
        ...


def normalized_entropy(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or len(counts) < 2:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(len(counts)))


def combine(accuracy: float, cost: float, diversity: float, turn_efficiency: float, cfg: FitnessConfig) -> float:
    return (accuracy + cfg.diversity_bonus * diversity + cfg.turn_bonus * turn_efficiency
            - cfg.cost_weight * cost)


def candidate_rng(seed: int, generation: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(generation), 0, int(index)])


def minibatch(n: int, batch_size: int | None, seed: int, generation: int) -> np.ndarray:
    """Sorted rows of `n` used in `generation`: all of them, or `batch_size` drawn from (seed, generation),
    so every candidate of a generation sees the same rows and a rerun sees the same batches."""
    if batch_size is None or batch_size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([int(seed), int(generation), 1]).choice(n, batch_size, replace=False))


class LogitsHead(Protocol):
    n_params: int

    def population_logits(self, X: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(P, N, outputs) logits of P flat parameter vectors on N feature rows; the first L
        outputs are the agent logits."""
        ...


class SelectionObjective:
    """Single-turn selection on cached features: each candidate head picks one worker per query
    (sampled `repeats` times from its softmax in training, or the exact expectation), and earns that
    worker's recorded score and cost. This is the fast path: no coordinator or pool calls."""

    def __init__(self, head: LogitsHead, features: np.ndarray, scores: np.ndarray, workers: list[str],
                 *, costs: np.ndarray | None = None, tokens: np.ndarray | None = None,
                 fitness: FitnessConfig | None = None, repeats: int = 16, sampling: str = "sample",
                 batch_size: int | None = None, seed: int = 0, x0: np.ndarray | None = None):
        features = np.asarray(features, dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float64)
        if features.ndim != 2 or scores.ndim != 2 or len(features) != len(scores):
            raise DataError(f"features {features.shape} and scores {scores.shape} must be (N, d) and (N, L)")
        if scores.shape[1] != len(workers):
            raise DataError(f"scores have {scores.shape[1]} columns for {len(workers)} workers")
        if np.isnan(scores).any():
            raise DataError(f"{int(np.isnan(scores).any(axis=1).sum())} queries have missing scores; "
                            "drop them (RoutingDataset.subset) before training")
        self.head, self.features, self.workers = head, features, list(workers)
        self.scores = scores.astype(np.float32)
        self.costs = (np.zeros_like(self.scores) if costs is None  # no prices: a cost-blind objective
                      else decision_costs(np.asarray(costs, dtype=np.float64)).astype(np.float32))
        self.tokens = (np.zeros_like(self.scores) if tokens is None
                       else np.nan_to_num(np.asarray(tokens, dtype=np.float64)).astype(np.float32))
        self.cfg = fitness or FitnessConfig()
        self.repeats, self.sampling, self.batch_size, self.seed = int(repeats), sampling, batch_size, int(seed)
        self.n_params = int(head.n_params)
        if x0 is None:
            x0 = head.init_flat() if hasattr(head, "init_flat") else np.zeros(self.n_params)
        self._x0 = np.asarray(x0, dtype=np.float64)

    def x0(self) -> np.ndarray:
        return self._x0.copy()

    def batch(self, generation: int) -> np.ndarray:
        """Query rows used in `generation` (all, or a minibatch drawn from (seed, generation))."""
        return minibatch(len(self.features), self.batch_size, self.seed, generation)

    def probabilities(self, X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(P, N, L) worker probabilities of each candidate."""
        return self._probs_from(X, self.features if rows is None else self.features[rows])

    def _probs_from(self, X: np.ndarray, F: np.ndarray) -> np.ndarray:
        logits = self.head.population_logits(np.atleast_2d(X), F)[..., :len(self.workers)]
        return softmax(logits, dtype=np.float32)

    def evaluate(self, X: np.ndarray, generation: int, indices: Sequence[int] | None = None) -> list[FitnessResult]:
        X = np.atleast_2d(X)
        indices = range(len(X)) if indices is None else indices
        rows = self.batch(generation)
        probs = self.probabilities(X, rows)                     # (P, N, L)
        S, C, T = self.scores[rows], self.costs[rows], self.tokens[rows]
        out = []
        for p, idx in zip(probs, indices):
            if self.sampling == "expected":
                acc = float((p * S).sum(-1).mean())
                cost = float((p * C).sum(-1).mean())
                tok = float((p * T).sum(-1).mean())
                usage = p.sum(0)
            else:
                rng = candidate_rng(self.seed, generation, idx)
                u = rng.random((self.repeats, len(rows), 1), dtype=np.float32)
                choice = (np.cumsum(p, -1)[None] < u).sum(-1)   # inverse-CDF sample, (R, N)
                choice = np.minimum(choice, len(self.workers) - 1)
                r = np.arange(len(rows))[None]
                acc = float(S[r, choice].mean())
                cost = float(C[r, choice].mean())
                tok = float(T[r, choice].mean())
                usage = np.bincount(choice.ravel(), minlength=len(self.workers))
            div = normalized_entropy(usage)
            out.append(FitnessResult(
                fitness=combine(acc, cost, div, 0.0, self.cfg), accuracy=acc, cost=cost, tokens=tok,
                diversity=div, turns=1.0,
                worker_hist={w: int(round(float(c))) for w, c in zip(self.workers, usage)}))
        return out

    def argmax_accuracy(self, x: np.ndarray, features: np.ndarray, scores: np.ndarray) -> float:
        """Served (argmax) accuracy of `x` on held-out rows given by their features."""
        return self.evaluate_argmax(x, features, scores)["accuracy"]

    def evaluate_argmax(self, x: np.ndarray, features: np.ndarray, scores: np.ndarray,
                        costs: np.ndarray | None = None) -> dict[str, Any]:
        """Evaluation as served: argmax worker per query on held-out rows."""
        logits = self.head.population_logits(np.atleast_2d(x), np.asarray(features, np.float32))[0, :, :len(self.workers)]
        choice = logits.argmax(-1)
        r = np.arange(len(choice))
        scores = np.asarray(scores, np.float64)
        c = np.full(scores.shape, np.nan) if costs is None else np.asarray(costs, np.float64)
        counts = np.bincount(choice, minlength=len(self.workers))
        # the evaluator's rule (routers.accounting): a missing score chosen is 0, an unknown cost unknown
        return {"accuracy": float(score_chosen(scores[r, choice])[0].mean()),
                "cost": known_dollars(mean_cost(c[r, choice])), "n": int(len(choice)), "worker_share": {w: float(k / len(choice)) for w, k in zip(self.workers, counts)}}


class HeldOutAccuracy:
    """`score(x)`: served accuracy of a flat vector on fixed held-out rows (what the optimizer loop
    selects the returned point by, and what the run reports). `inputs` are the rows' features, or
    their texts for objectives that featurize per candidate (`trinity.episodes.SVFSelectionObjective`).
    With `cost_weight` (a frontier head), the score is the head's own trade-off, accuracy minus
    cost_weight times the mean decision cost (`costs`, unpriced never free) of the workers it picks."""

    def __init__(self, objective, inputs, scores: np.ndarray, *, costs: np.ndarray | None = None,
                 cost_weight: float = 0.0):
        self.objective, self.inputs, self.scores = objective, inputs, scores
        self.costs, self.cost_weight = costs, float(cost_weight)

    def __call__(self, x: np.ndarray) -> float:
        if not self.cost_weight:
            return float(self.objective.argmax_accuracy(x, self.inputs, self.scores))
        r = self.objective.evaluate_argmax(x, self.inputs, self.scores, self.costs)
        return float(r["accuracy"] - self.cost_weight * r["cost"])


def reference_metrics(ds) -> dict[str, Any]:
    """Best single model and oracle on `ds` (the yardsticks a router is read against), by the
    evaluator's own functions and its rule for missing scores and unknown costs."""
    from routers import metrics as M
    best = M.best_single(ds.scores, ds.cost_matrix())
    return {"best_single": {"model": ds.models[best["index"]], "accuracy": best["accuracy"],
                            "cost": best["cost"]},
            "oracle": M.oracle(ds.scores, ds.cost_matrix())["accuracy"], "n": len(ds)}


def served_metrics(objective: SelectionObjective, x: np.ndarray, features: np.ndarray, ds) -> dict[str, Any]:
    """Argmax routing of head vector `x` on dataset `ds` (features given), with its yardsticks."""
    return {**objective.evaluate_argmax(x, features, ds.scores, ds.cost_matrix()), **reference_metrics(ds)}
