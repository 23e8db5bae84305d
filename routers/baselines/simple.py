"""Reference points for every cost-quality plot: random, best single model, oracle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from routers.accounting import decision_costs, score_chosen

from routers.baselines.base import Router
from routers.data.schema import RoutingDataset
from routers.errors import CheckpointError, DataError


class RandomRouter(Router):
    """Uniform random quality per (query, model), seeded by `seed` and the prompt text, so the same
    prompt gets the same choice whatever the batch. Needs no fit: `RandomRouter(models=[...])`."""

    name = "random"
    needs_fit = False

    def predict_quality(self, prompts, categories=None):
        seed = int(self.params.get("seed", 0))
        out = np.empty((len(prompts), len(self.models)))
        for i, p in enumerate(prompts):
            h = int.from_bytes(hashlib.blake2b(f"{seed}|{p}".encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(h).random(len(self.models))
        return out


class BestSingleRouter(Router):
    """Every query gets each model's mean training score: at lam=0 it always picks the model that
    was best on train; raising lam walks down to cheaper single models."""

    name = "best-single"

    def _fit(self, train, validation):
        self._mean_score = np.nan_to_num(np.nanmean(train.scores, axis=0), nan=0.0) if len(train) \
            else np.zeros(train.n_models)

    def predict_quality(self, prompts, categories=None):
        return np.tile(self._mean_score, (len(prompts), 1))

    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", mean_score=self._mean_score)

    def _load_state(self, path: Path) -> None:
        try:
            self._mean_score = np.load(path / "state.npz")["mean_score"]
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing state.npz") from None


class OracleRouter(Router):
    """The evaluation ceiling. It CHEATS BY DESIGN: it looks each prompt up in the true scores it
    was handed (`fit` registers train/validation; call `fit_oracle(test)` before evaluating on
    test) and predicts the recorded score and cost. Among several right models, the cost tiebreak
    in `route` makes it pick the cheapest. A prompt it was never given is an error, not a guess."""

    name = "oracle"

    def __init__(self, **params):
        super().__init__(**params)
        # prompt -> row of (_scores, _costs); a prompt registered again points at its newest row
        self._index: dict[str, int] = {}
        self._scores = self._costs = None

    def _fit(self, train, validation):
        self.fit_oracle(train)
        if validation is not None:
            self.fit_oracle(validation)

    def fit_oracle(self, data: RoutingDataset) -> "OracleRouter":
        """Register the true per-model scores (and costs) of `data`'s prompts."""
        if not self.models:
            self.models = list(data.models)
        data = data.select_models(self.models)
        scores, costs = score_chosen(data.scores)[0], decision_costs(data.cost_matrix())
        base = 0 if self._scores is None else len(self._scores)
        self._scores = scores if self._scores is None else np.vstack([self._scores, scores])
        self._costs = costs if self._costs is None else np.vstack([self._costs, costs])
        self._index.update(zip(data.prompts, range(base, base + len(data))))
        return self

    def _lookup(self, prompts, k):
        rows = np.fromiter((self._index.get(p, -1) for p in prompts), dtype=np.intp, count=len(prompts))
        if (rows < 0).any():
            missing = [p for p, r in zip(prompts, rows) if r < 0]
            raise DataError(f"oracle router has no recorded scores for {len(missing)} prompt(s), e.g. "
                            f"{missing[0][:80]!r}; call fit_oracle(dataset) with the evaluation data first")
        table = self._scores if k == 0 else self._costs
        return table[rows] if table is not None else np.zeros((0, len(self.models)))

    def predict_quality(self, prompts, categories=None):
        return self._lookup(prompts, 0)

    def predict_cost(self, prompts, categories=None):
        return self._lookup(prompts, 1)

    def _save_state(self, path: Path) -> None:
        keys = list(self._index)
        rows = np.fromiter(self._index.values(), dtype=np.intp, count=len(keys))
        m = len(self.models)
        (path / "prompts.json").write_text(json.dumps(keys))
        np.savez(path / "state.npz",
                 scores=self._scores[rows] if keys else np.zeros((0, m)),
                 costs=self._costs[rows] if keys else np.zeros((0, m)))

    def _load_state(self, path: Path) -> None:
        try:
            keys = json.loads((path / "prompts.json").read_text())
            st = np.load(path / "state.npz")
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: missing {Path(e.filename).name}") from None
        self._scores, self._costs = np.asarray(st["scores"], float), np.asarray(st["costs"], float)
        self._index = {k: i for i, k in enumerate(keys)}
