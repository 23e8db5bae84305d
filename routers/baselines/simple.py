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
        self._table: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _fit(self, train, validation):
        self.fit_oracle(train)
        if validation is not None:
            self.fit_oracle(validation)

    def fit_oracle(self, data: RoutingDataset) -> "OracleRouter":
        """Register the true per-model scores (and costs) of `data`'s prompts."""
        if not self.models:
            self.models = list(data.models)
        data = data.select_models(self.models)
        costs = decision_costs(data.cost_matrix())
        for i, p in enumerate(data.prompts):
            self._table[p] = (score_chosen(data.scores[i])[0], costs[i])
        return self

    def _lookup(self, prompts, k):
        missing = [p for p in prompts if p not in self._table]
        if missing:
            raise DataError(f"oracle router has no recorded scores for {len(missing)} prompt(s), e.g. "
                            f"{missing[0][:80]!r}; call fit_oracle(dataset) with the evaluation data first")
        return np.array([self._table[p][k] for p in prompts]).reshape(len(prompts), len(self.models))

    def predict_quality(self, prompts, categories=None):
        return self._lookup(prompts, 0)

    def predict_cost(self, prompts, categories=None):
        return self._lookup(prompts, 1)

    def _save_state(self, path: Path) -> None:
        keys = list(self._table)
        (path / "prompts.json").write_text(json.dumps(keys))
        m = len(self.models)
        np.savez(path / "state.npz",
                 scores=np.array([self._table[k][0] for k in keys]).reshape(len(keys), m),
                 costs=np.array([self._table[k][1] for k in keys]).reshape(len(keys), m))

    def _load_state(self, path: Path) -> None:
        try:
            keys = json.loads((path / "prompts.json").read_text())
            st = np.load(path / "state.npz")
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: missing {Path(e.filename).name}") from None
        self._table = {k: (st["scores"][i], st["costs"][i]) for i, k in enumerate(keys)}
