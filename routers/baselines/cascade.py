"""Cost-aware cascade (FrugalGPT's idea) replayed on recorded responses.

Models are tried cheapest first (mean training cost). After each "call" a learned scorer
estimates P(this answer is correct); the cascade stops at the first answer whose score reaches
the threshold `t`, else keeps the last (most expensive) model's answer. It pays for EVERY model it
called, so `realized_cost` and the cumulative `predict_cost` sum the costs along the order.

Scorer: one logistic regression per model on [query embedding, response embedding]. Where the
data has no responses it falls back to [query embedding] alone (a warning says so): the cascade
then still calls models in order, but its stop decision cannot look at the answer.

The trade-off knob: `route(prompts, lam)` uses the threshold that maximized
accuracy - lam * mean cost on the tuning data (the validation split, else a seeded 20% of train
held out from the scorer), stored as `params["threshold_table"]`; lam=0 is the most accurate
threshold, large lam the cheapest. `params["threshold"]`, when set, overrides the table.

On recorded data the cascade needs the responses of the queries it routes:
`attach_responses(dataset)` registers them (fit registers train and validation).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from routers.accounting import decision_costs, score_chosen

from routers.baselines.embedding import EmbeddingRouter
from routers.baselines.tuning import holdout
from routers.data.schema import RoutingDataset
from routers.errors import CheckpointError, DataError

THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 41), 4)) + (1.01,)  # 1.01: never stop early


class CascadeRouter(EmbeddingRouter):
    name = "cascade"

    def __init__(self, **params):
        params.setdefault("C", 1.0)
        params.setdefault("seed", 0)
        params.setdefault("threshold", None)
        super().__init__(**params)
        self._recorded: dict[str, tuple[list[str | None], np.ndarray]] = {}

    # -- recorded calls ----------------------------------------------------------------------
    def attach_responses(self, data: RoutingDataset) -> "CascadeRouter":
        """Register `data`'s recorded responses and costs: what "calling" a model returns."""
        data = data.select_models(self.models)
        costs = data.cost_matrix()
        for i, p in enumerate(data.prompts):
            resp = data.responses[i] if data.responses is not None else [None] * len(self.models)
            self._recorded[p] = (list(resp), costs[i])
        return self

    def _responses(self, prompts) -> list[list[str | None]]:
        missing = [p for p in prompts if p not in self._recorded]
        if missing:
            raise DataError(f"cascade router has no recorded responses for {len(missing)} prompt(s), e.g. "
                            f"{missing[0][:80]!r}; call attach_responses(dataset) first")
        return [self._recorded[p][0] for p in prompts]

    # -- scorer ------------------------------------------------------------------------------
    def _features(self, prompts, j_model: int, responses=None) -> np.ndarray:
        q = self.embed(prompts)
        if not self.params["use_responses"]:
            return q
        responses = self._responses(prompts) if responses is None else responses
        texts = [r[j_model] or "" for r in responses]
        return np.hstack([q, self.encoder.encode(texts, max_length=int(self.params["max_length"]), progress=False)])

    def _fit_scorers(self, data: RoutingDataset) -> None:
        from sklearn.linear_model import LogisticRegression
        self._coef, self._intercept = [], []
        for j in range(len(self.models)):
            y = data.scores[:, j]
            known = ~np.isnan(y)
            x = self._features([p for p, k in zip(data.prompts, known) if k], j,
                               None if data.responses is None else [r for r, k in zip(data.responses, known) if k])
            yb = (y[known] >= 0.5).astype(int)
            if len(np.unique(yb)) < 2:  # one class: a constant scorer at that class's rate
                rate = np.clip(yb.mean() if len(yb) else 0.5, 1e-3, 1 - 1e-3)
                self._coef.append(np.zeros(x.shape[1]))
                self._intercept.append(float(np.log(rate / (1 - rate))))
                continue
            lr = LogisticRegression(C=float(self.params["C"]), max_iter=2000).fit(x, yb)
            self._coef.append(lr.coef_[0].astype(np.float64))
            self._intercept.append(float(lr.intercept_[0]))
        self._coef = np.stack(self._coef)
        self._intercept = np.asarray(self._intercept)

    def _fit(self, train, validation):
        has = train.responses is not None and any(r is not None for row in train.responses for r in row)
        self.params["use_responses"] = bool(has)
        if not has:
            warnings.warn(f"cascade: dataset {train.name} has no responses; its answer scorer falls back to the "
                          "query alone (it cannot see the answer it accepts)", stacklevel=3)
        self._order = np.lexsort((np.arange(len(self.models)), self._mean_cost)).astype(int)
        if validation is not None and len(validation):
            fit_on, tune_on = train, validation
        else:
            tr, va = holdout(len(train), 0.2, int(self.params["seed"]))
            fit_on, tune_on = train.subset(tr), train.subset(va)
        self.attach_responses(train)
        if validation is not None:
            self.attach_responses(validation)
        self._fit_scorers(fit_on)
        q = self.predict_quality(tune_on.prompts)
        costs = decision_costs(tune_on.cost_matrix())  # choosing a threshold, not reporting a cost
        table = []
        for t in THRESHOLDS:
            ch = self._walk(q, t)
            table.append({"threshold": float(t),
                          "accuracy": float(score_chosen(tune_on.scores[np.arange(len(ch)), ch])[0].mean()),
                          "cost": float(self.realized_cost(ch, costs).mean())})
        self.params["threshold_table"] = table

    # -- routing -----------------------------------------------------------------------------
    def predict_quality(self, prompts, categories=None):
        """(n, m) scorer probability that model j's (recorded) answer is correct."""
        responses = self._responses(prompts) if self.params["use_responses"] else None
        out = np.empty((len(prompts), len(self.models)))
        for j in range(len(self.models)):
            z = self._features(prompts, j, responses) @ self._coef[j] + self._intercept[j]
            out[:, j] = 1.0 / (1.0 + np.exp(-z))
        return out

    def predict_cost(self, prompts, categories=None):
        """(n, m) cost of a cascade that ends at model j: j's cost plus every cheaper model's before it."""
        base = np.array([self._recorded[p][1] if p in self._recorded else self._mean_cost for p in prompts],
                        float).reshape(len(prompts), len(self.models))
        return self._cumulative(base)

    def _cumulative(self, costs: np.ndarray) -> np.ndarray:
        out = np.empty_like(costs)
        out[:, self._order] = np.cumsum(costs[:, self._order], axis=1)
        return out

    def realized_cost(self, choice, costs):
        choice = np.asarray(choice, dtype=int)
        return self._cumulative(np.asarray(costs, float))[np.arange(len(choice)), choice]

    def threshold_for(self, lam: float) -> float:
        """The stop threshold for trade-off lam (see the module docstring)."""
        if self.params.get("threshold") is not None:
            return float(self.params["threshold"])
        table = self.params["threshold_table"]
        best = max(table, key=lambda r: (r["accuracy"] - lam * r["cost"], -r["cost"]))
        return best["threshold"]

    def _walk(self, q: np.ndarray, t: float) -> np.ndarray:
        qo = q[:, self._order] >= t
        qo[:, -1] = True                      # the last model's answer is always accepted
        return self._order[np.argmax(qo, axis=1)]

    def route(self, prompts, lam=0.0, categories=None, quality=None, cost=None):
        if isinstance(prompts, str):  # one prompt from a notebook: the ranking, as Router.route gives
            return self.rank(prompts, lam)
        q = self.predict_quality(prompts, categories) if quality is None else np.asarray(quality)
        return self._walk(q, self.threshold_for(lam))

    def rank(self, prompt, lam=0.0, category=None):
        """Serving a single call cannot replay a cascade; the fallback order is the cascade order."""
        return [self.models[j] for j in self._order]

    # -- persistence -------------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", coef=self._coef, intercept=self._intercept, order=self._order)

    def _load_state(self, path: Path) -> None:
        try:
            st = np.load(path / "state.npz")
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing state.npz") from None
        self._coef, self._intercept, self._order = st["coef"], st["intercept"], st["order"].astype(int)
