"""k-nearest-neighbour router (RouterBench's kNN): a query's expected score and cost per model are
the similarity-weighted means over its k most similar training queries (cosine on embeddings).

Weights are 1 / (cosine distance + 1e-3), so near-duplicates dominate. `k` is tuned on the
validation split when one is given (the k whose routed accuracy at lam=0 is highest), else
`params["k"]` (default 20). The search is exact and blocked (QUERY_BLOCK queries x TRAIN_BLOCK
training rows at a time, merging top-k lists), so memory is O(block + n x m), never n x n_train;
time is O(n x n_train x dim).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from routers.accounting import decision_costs
from routers.baselines.embedding import EmbeddingRouter
from routers.baselines.tuning import routed_accuracy
from routers.errors import CheckpointError

K_GRID = (5, 10, 20, 50, 100)
QUERY_BLOCK, TRAIN_BLOCK = 256, 16384  # similarities held at once: 256 x 16384 (16 MB float32 + indices)


def _top(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest similarities and their columns, most similar first."""
    k = max(1, min(int(k), sims.shape[1]))
    idx = (np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1]
           else np.broadcast_to(np.arange(k), sims.shape).copy())
    top = np.take_along_axis(sims, idx, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(idx, order, axis=1)


class KNNRouter(EmbeddingRouter):
    name = "knn"

    def __init__(self, **params):
        params.setdefault("k", 20)
        super().__init__(**params)
        self._cached: tuple[tuple[str, ...], int, np.ndarray, np.ndarray] | None = None

    def _fit(self, train, validation):
        self._x = self.embed(train.prompts)
        self._scores = train.scores.astype(np.float32)
        self._costs = decision_costs(train.cost_matrix()).astype(np.float32)
        self._prior = np.nan_to_num(np.nanmean(train.scores, axis=0), nan=0.0) if len(train) else np.zeros(train.n_models)
        self._cached = None
        if validation is not None and len(validation):
            ks = [k for k in K_GRID if k <= len(train)]
            if ks:
                preds = self._predict_many(self.embed(validation.prompts), ks)
                acc = {k: routed_accuracy(*preds[k], validation.scores) for k in ks}
                self.params["k"] = max(acc, key=lambda k: (acc[k], -k))
                self.params["k_validation_accuracy"] = {str(k): v for k, v in acc.items()}

    def _combine(self, top: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Similarity-weighted means of the neighbours' scores (known ones only) and costs."""
        w = 1.0 / (1.0 - top + 1e-3)                                      # (n, k)
        s = self._scores[idx]                                             # (n, k, m)
        known = ~np.isnan(s)
        wk = w[:, :, None] * known
        denom = wk.sum(1)
        q = np.where(denom > 0, (wk * np.nan_to_num(s)).sum(1) / np.maximum(denom, 1e-12), self._prior[None, :])
        c = (w[:, :, None] * self._costs[idx]).sum(1) / w.sum(1, keepdims=True)
        return q, c

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (similarities, training rows) of queries `q`, most similar first, merging the
        top-k of each TRAIN_BLOCK-row slice of the training set: memory O(len(q) x TRAIN_BLOCK)."""
        best_s = best_i = None
        for b in range(0, len(self._x), TRAIN_BLOCK):
            s, i = _top(q @ self._x[b:b + TRAIN_BLOCK].T, k)
            i = i + b
            if best_s is not None:  # merge with the best so far
                s, pos = _top(np.concatenate([best_s, s], axis=1), k)
                i = np.take_along_axis(np.concatenate([best_i, i], axis=1), pos, axis=1)
            best_s, best_i = s, i
        return best_s, best_i

    def _predict_many(self, x: np.ndarray, ks) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{k: (quality, cost)} for queries `x`, QUERY_BLOCK queries at a time (never n x n_train)."""
        n, m = len(x), self._scores.shape[1]
        out = {int(k): (np.empty((n, m)), np.empty((n, m))) for k in ks}
        for a in range(0, n, QUERY_BLOCK):
            top, idx = self._search(x[a:a + QUERY_BLOCK], max(out))
            for k, (q, c) in out.items():
                q[a:a + QUERY_BLOCK], c[a:a + QUERY_BLOCK] = self._combine(top[:, :k], idx[:, :k])
        return out

    def _predict(self, prompts) -> tuple[np.ndarray, np.ndarray]:
        """(quality, cost) for `prompts`; route() asks for both, so the last batch is kept."""
        key, k = tuple(prompts), int(self.params["k"])
        if self._cached is None or self._cached[:2] != (key, k):
            self._cached = (key, k, *self._predict_many(self.embed(prompts), [k])[k])
        return self._cached[2], self._cached[3]

    def predict_quality(self, prompts, categories=None):
        return self._predict(prompts)[0]

    def predict_cost(self, prompts, categories=None):
        return self._predict(prompts)[1]

    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", x=self._x, scores=self._scores, costs=self._costs, prior=self._prior)

    def _load_state(self, path: Path) -> None:
        try:
            st = np.load(path / "state.npz")
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing state.npz") from None
        self._x, self._scores, self._costs, self._prior = st["x"], st["scores"], st["costs"], st["prior"]
        self._cached = None
