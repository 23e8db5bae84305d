"""k-nearest-neighbour router (RouterBench's kNN): a query's expected score and cost per model are
the similarity-weighted means over its k most similar training queries (cosine on embeddings).

Weights are 1 / (cosine distance + 1e-3), so near-duplicates dominate. `k` is tuned on the
validation split when one is given (the k whose routed accuracy at lam=0 is highest), else
`params["k"]` (default 20).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from routers.baselines.embedding import EmbeddingRouter
from routers.baselines.tuning import routed_accuracy
from routers.errors import CheckpointError

K_GRID = (5, 10, 20, 50, 100)


class KNNRouter(EmbeddingRouter):
    name = "knn"

    def __init__(self, **params):
        params.setdefault("k", 20)
        super().__init__(**params)

    def _fit(self, train, validation):
        self._x = self.embed(train.prompts)
        self._scores = train.scores.astype(np.float32)
        self._costs = train.cost_matrix().astype(np.float32)
        self._prior = np.nan_to_num(np.nanmean(train.scores, axis=0), nan=0.0) if len(train) else np.zeros(train.n_models)
        if validation is not None and len(validation):
            sims = self.embed(validation.prompts) @ self._x.T
            acc = {k: routed_accuracy(*self._predict(sims, k), validation.scores) for k in K_GRID if k <= len(train)}
            if acc:
                self.params["k"] = max(acc, key=lambda k: (acc[k], -k))
                self.params["k_validation_accuracy"] = {str(k): v for k, v in acc.items()}

    def _predict(self, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(int(k), sims.shape[1]))
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = 1.0 / (1.0 - np.take_along_axis(sims, idx, axis=1) + 1e-3)  # (n, k)
        s = self._scores[idx]                                             # (n, k, m)
        known = ~np.isnan(s)
        wk = w[:, :, None] * known
        denom = wk.sum(1)
        q = np.where(denom > 0, (wk * np.nan_to_num(s)).sum(1) / np.maximum(denom, 1e-12), self._prior[None, :])
        c = (w[:, :, None] * self._costs[idx]).sum(1) / w.sum(1, keepdims=True)
        return q, c

    def _sims(self, prompts):
        return self.embed(prompts) @ self._x.T

    def predict_quality(self, prompts, categories=None):
        return self._predict(self._sims(prompts), self.params["k"])[0]

    def predict_cost(self, prompts, categories=None):
        return self._predict(self._sims(prompts), self.params["k"])[1]

    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", x=self._x, scores=self._scores, costs=self._costs, prior=self._prior)

    def _load_state(self, path: Path) -> None:
        try:
            st = np.load(path / "state.npz")
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing state.npz") from None
        self._x, self._scores, self._costs, self._prior = st["x"], st["scores"], st["costs"], st["prior"]
