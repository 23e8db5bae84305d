"""The one routing-dataset schema every adapter produces and every router consumes.

Per query: id, prompt, category (task/subject), split. Per (query, model): score in [0, 1]
(NaN = missing, never silently zero), cost in dollars, response text, input/output tokens,
latency. Stored densely as (n_queries, n_models) arrays so evaluation is vectorized.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

SPLITS = ("train", "validation", "test")


@dataclass
class RoutingDataset:
    ids: list[str]
    prompts: list[str]
    categories: list[str]
    splits: list[str]
    models: list[str]
    scores: np.ndarray                      # (n, m) float64 in [0, 1]; NaN = not recorded
    costs: np.ndarray | None = None         # (n, m) dollars; NaN = unknown
    input_tokens: np.ndarray | None = None  # (n, m) float (NaN = unknown)
    output_tokens: np.ndarray | None = None
    latencies: np.ndarray | None = None     # (n, m) seconds
    responses: list[list[str | None]] | None = None  # [query][model]
    answers: list[str | None] | None = None  # gold answer per query where known
    name: str = "dataset"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n, m = len(self.ids), len(self.models)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(n, m)
        for k in ("costs", "input_tokens", "output_tokens", "latencies"):
            v = getattr(self, k)
            if v is not None:
                setattr(self, k, np.asarray(v, dtype=np.float64).reshape(n, m))
        for k in ("prompts", "categories", "splits"):
            if len(getattr(self, k)) != n:
                raise ValueError(f"{k} has {len(getattr(self, k))} entries for {n} queries")
        if len(set(self.models)) != m:
            raise ValueError(f"duplicate model names in {self.models}")

    # -- shape -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def model_index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise KeyError(f"unknown model {model!r}; dataset {self.name} has {self.models}") from None

    # -- views -------------------------------------------------------------------------------
    def subset(self, idx) -> "RoutingDataset":
        """Rows `idx` (indices or boolean mask) as a new dataset sharing nothing mutable."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        pick = lambda xs: (None if xs is None else xs.take(idx) if hasattr(xs, "take")  # noqa: E731
                           else [xs[i] for i in idx])  # an Arrow TextColumn takes without making str objects
        arr = lambda a: None if a is None else a[idx].copy()  # noqa: E731
        return replace(
            self, ids=pick(self.ids), prompts=pick(self.prompts), categories=pick(self.categories),
            splits=pick(self.splits), scores=arr(self.scores), costs=arr(self.costs),
            input_tokens=arr(self.input_tokens), output_tokens=arr(self.output_tokens),
            latencies=arr(self.latencies), responses=pick(self.responses), answers=pick(self.answers),
            meta=dict(self.meta),
        )

    def split(self, name: str) -> "RoutingDataset":
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.subset(np.array([s == name for s in self.splits], dtype=bool))

    def select_models(self, models: list[str]) -> "RoutingDataset":
        cols = [self.model_index(m) for m in models]
        col = lambda a: None if a is None else a[:, cols].copy()  # noqa: E731
        return replace(
            self, models=list(models), scores=col(self.scores), costs=col(self.costs),
            input_tokens=col(self.input_tokens), output_tokens=col(self.output_tokens),
            latencies=col(self.latencies),
            responses=None if self.responses is None else [[r[c] for c in cols] for r in self.responses],
            meta=dict(self.meta),
        )

    def cost_matrix(self) -> np.ndarray:
        """(n, m) dollars with unknown entries NaN (a dataset without costs is all unknown): never 0.
        Routers deciding on it use `routers.accounting.decision_costs`; see that module for the rule."""
        if self.costs is None:
            return np.full(self.scores.shape, np.nan)
        return self.costs.copy()

    def describe(self) -> str:
        from collections import Counter
        sp = Counter(self.splits)
        return (f"{self.name}: {len(self)} queries x {self.n_models} models "
                f"(train {sp.get('train', 0)}, validation {sp.get('validation', 0)}, test {sp.get('test', 0)}), "
                f"{int(np.isnan(self.scores).sum())} missing scores, costs {'yes' if self.costs is not None else 'no'}")
