"""One interface for every router baseline (and for trained routers evaluated beside them).

A router predicts, per query and per model, expected quality and expected cost, and routes under a
trade-off `lam` (dollars of cost worth one unit of quality, as a penalty): choose
argmax_j quality[i, j] - lam * cost[i, j]. Sweeping `lam` from 0 upward draws its cost-quality
curve. `rank` gives the full ordering used for fallback when serving.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routers.data.schema import RoutingDataset
from routers.checkpoint import read_router_config


class Router(abc.ABC):
    name: ClassVar[str] = "router"
    needs_fit: ClassVar[bool] = True

    def __init__(self, **params: Any):
        self.params = dict(params)
        self.models: list[str] = list(params.get("models", []))
        self._mean_cost: np.ndarray | None = None
        self.fitted = False  # set by fit() and load(); evaluators refit routers that are not

    # -- training ----------------------------------------------------------------------------
    def fit(self, train: RoutingDataset, validation: RoutingDataset | None = None) -> "Router":
        self.models = list(train.models)
        costs = train.cost_matrix()
        self._mean_cost = np.nanmean(costs, axis=0) if len(train) else np.zeros(train.n_models)
        self._fit(train, validation)
        self.fitted = True
        return self

    def _fit(self, train: RoutingDataset, validation: RoutingDataset | None) -> None:
        """Learn from `train`. Routers that need no fitting keep the default."""

    # -- prediction --------------------------------------------------------------------------
    @abc.abstractmethod
    def predict_quality(self, prompts: list[str], categories: list[str] | None = None) -> np.ndarray:
        """(n, m) expected score per query and model."""

    def predict_cost(self, prompts: list[str], categories: list[str] | None = None) -> np.ndarray:
        """(n, m) expected cost; default: each model's mean cost on the training split."""
        if self._mean_cost is None:
            return np.zeros((len(prompts), len(self.models)))
        return np.tile(self._mean_cost, (len(prompts), 1))

    def route(self, prompts: list[str], lam: float = 0.0, categories: list[str] | None = None,
              quality: np.ndarray | None = None, cost: np.ndarray | None = None) -> np.ndarray:
        """Index of the chosen model per query (ties broken toward the cheaper model)."""
        q = self.predict_quality(prompts, categories) if quality is None else quality
        c = self.predict_cost(prompts, categories) if cost is None else cost
        util = q - lam * c - 1e-9 * c  # tiny cost tiebreak
        return np.argmax(util, axis=1)

    def realized_cost(self, choice: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """Dollars actually paid per query when query i is routed to column choice[i] of `costs`
        (n, m). One call per query by default; a cascade also pays for every answer it rejected."""
        choice = np.asarray(choice, dtype=int)
        return np.asarray(costs, float)[np.arange(len(choice)), choice]

    def rank(self, prompt: str, lam: float = 0.0, category: str | None = None) -> list[str]:
        """Models best-first for one query: the fallback order when serving."""
        q = self.predict_quality([prompt], None if category is None else [category])[0]
        c = self.predict_cost([prompt], None if category is None else [category])[0]
        order = np.lexsort((c, -(q - lam * c)))
        return [self.models[j] for j in order]

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"router_type": self.name, "format_version": 1, "models": self.models,
               "params": {k: v for k, v in self.params.items() if k != "models"},
               "mean_cost": None if self._mean_cost is None else self._mean_cost.tolist()}
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
        self._save_state(path)
        return path

    def _save_state(self, path: Path) -> None:
        """Write learned state beside config.json (npz/safetensors/json; never pickle)."""

    @classmethod
    def load(cls, path: str | Path) -> "Router":
        path = Path(path)
        cfg = read_router_config(path, cls.name)
        r = cls(**cfg.get("params", {}))
        r.models = list(cfg["models"])
        r._mean_cost = None if cfg.get("mean_cost") is None else np.asarray(cfg["mean_cost"], float)
        r._load_state(path)
        r.fitted = True
        return r

    def _load_state(self, path: Path) -> None:
        """Read what `_save_state` wrote."""
