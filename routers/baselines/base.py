"""One interface for every router baseline (and for trained routers evaluated beside them).

A router predicts, per query and per model, expected quality and expected cost, and routes under a
trade-off `lam` (dollars of cost worth one unit of quality, as a penalty): choose
argmax_j quality[i, j] - lam * cost[i, j]. Sweeping `lam` from 0 upward draws its cost-quality
curve. `rank` gives the full ordering used for fallback when serving; `route("one prompt")` the same
ranking for a notebook, and `answer(messages, pool=...)` one synchronous call down it.
Checkpoints are Hub-native (`routers.checkpoint.HubMixin`): save_pretrained / from_pretrained /
push_to_hub, with a model card.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from routers.accounting import decision_costs
from routers.data.schema import RoutingDataset
from routers.checkpoint import HubMixin, make_readable, read_router_config, write_model_card
from routers.errors import CheckpointError


class Router(HubMixin, abc.ABC):
    name: ClassVar[str] = "router"
    needs_fit: ClassVar[bool] = True

    def __init__(self, **params: Any):
        self.params = dict(params)
        self.models: list[str] = list(params.get("models", []))
        self._mean_cost: np.ndarray | None = None
        self.fitted = False  # set by fit() and load(); evaluators refit routers that are not
        self.training_data: dict[str, Any] | None = None  # what fit() saw (name, size), for the model card

    # -- training ----------------------------------------------------------------------------
    def fit(self, train: RoutingDataset, validation: RoutingDataset | None = None) -> "Router":
        self.models = list(train.models)
        costs = decision_costs(train.cost_matrix())  # unpriced never looks free (routers.accounting)
        self._mean_cost = costs.mean(axis=0) if len(train) else np.zeros(train.n_models)
        self._fit(train, validation)
        self.fitted = True
        self.training_data = {"name": train.name, "n": len(train),
                              "validation_n": None if validation is None else len(validation)}
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

    def route(self, prompts: list[str] | str, lam: float = 0.0, categories: list[str] | None = None,
              quality: np.ndarray | None = None, cost: np.ndarray | None = None) -> np.ndarray | list[str]:
        """Index of the chosen model per query (ties broken toward the cheaper model); for one prompt
        given as a string, the models best first (`rank`)."""
        if isinstance(prompts, str):
            return self.rank(prompts, lam, None if categories is None else categories[0])
        q = self.predict_quality(prompts, categories) if quality is None else quality
        c = self.predict_cost(prompts, categories) if cost is None else cost
        util = q - lam * c - 1e-9 * c  # tiny cost tiebreak
        return np.argmax(util, axis=1)

    def route_grid(self, lams, quality: np.ndarray, cost: np.ndarray, block: int = 1024) -> np.ndarray | None:
        """(len(lams), n) choices of `route` at every lam, for a lam sweep; None for a router whose
        `route` is its own (a cascade's threshold table): the caller then calls `route` per lam.

        Element for element the same floating-point operations as `route` (so the same choices),
        over blocks of rows with all lams at once: one pass over the predictions, not one per lam."""
        if type(self).route is not Router.route:
            return None
        lams = np.asarray(lams, dtype=np.float64)
        q, c = np.asarray(quality, np.float64), np.asarray(cost, np.float64)
        if len(q) > 1 and (q == q[0]).all() and (c == c[0]).all():  # one prediction for all (best-single)
            return np.repeat(self.route_grid(lams, q[:1], c[:1]), len(q), axis=1)
        out = np.empty((len(lams), len(q)), dtype=np.int32 if q.shape[1] < 2 ** 31 else np.intp)
        lam = lams[:, None]
        for s in range(0, len(q), block):
            qb, cb = q[None, s:s + block], c[None, s:s + block]  # (1, rows, m) against (lams, 1, 1)
            out[:, s:s + block] = np.argmax(qb - lam[..., None] * cb - 1e-9 * cb, axis=2)
        return out

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

    def answer(self, messages: list[dict], *, pool, lam: float = 0.0):
        """Answer chat `messages` through `pool` (a `routers.pool.Pool`), synchronously: the first
        ranked worker that answers (as `baton serve` does, minus its retries). Returns the Episode
        (`.answer`, `.steps`, `.cost`)."""
        from routers.baselines.serving import SingleChoice
        return run_episode_sync(SingleChoice(self, name=self.name, workers=[w for w in self.models if w in pool]),
                                messages, pool, lam)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"router_type": self.name, "format_version": 1, "models": self.models,
               "params": {k: v for k, v in self.params.items() if k != "models"},
               "mean_cost": None if self._mean_cost is None else self._mean_cost.tolist(),
               "training_data": self.training_data}
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
        self._save_state(path)
        write_model_card(path, **self.card())
        make_readable(path)
        return path

    def _save_state(self, path: Path) -> None:
        """Write learned state beside config.json (npz/safetensors/json; never pickle)."""

    @classmethod
    def load(cls, path: str | Path) -> "Router":
        path = Path(path)
        cfg = read_router_config(path, cls.name)
        f = path / "config.json"
        if cfg.get("format_version") != 1:
            raise CheckpointError(f"{f}: format_version {cfg.get('format_version')!r}; this baton reads version 1")
        if not isinstance(cfg.get("models"), list):
            raise CheckpointError(f"{f}: missing 'models'")
        r = cls(**cfg.get("params", {}))
        r.models = list(cfg["models"])
        r._mean_cost = None if cfg.get("mean_cost") is None else np.asarray(cfg["mean_cost"], float)
        r.training_data = cfg.get("training_data")
        try:
            r._load_state(path)
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: missing {Path(e.filename or '?').name} (the {cls.name} router's "
                                  "learned state)") from None
        except (OSError, ValueError, KeyError, EOFError) as e:  # np.load / safetensors on a damaged file
            raise CheckpointError(f"{path}: the {cls.name} router's learned state is unreadable "
                                  f"({type(e).__name__}: {e})") from None
        r.fitted = True
        return r

    def _load_state(self, path: Path) -> None:
        """Read what `_save_state` wrote."""

    # -- Hub (routers.checkpoint.HubMixin) -----------------------------------------------------
    @classmethod
    def _from_checkpoint(cls, path: Path, **kw: Any) -> "Router":
        if cls is Router or getattr(cls, "__abstractmethods__", None):  # the generic entry: any kind
            from routers.registry import load_checkpoint
            return load_checkpoint(path, **kw)
        return cls.load(path, **kw)

    @classmethod
    def checkpoint_type(cls) -> str | None:
        """`Router.from_pretrained` loads any kind; a concrete class only its own."""
        return None if cls is Router or getattr(cls, "__abstractmethods__", None) else cls.name

    def card(self) -> dict[str, Any]:
        """The model card's facts (see `routers.checkpoint.write_model_card`)."""
        return {"router_type": self.name, "workers": list(self.models), "training_data": self.training_data,
                "training_config": {k: v for k, v in self.params.items() if k != "models"},
                "summary": f"A fitted `{self.name}` baseline router (`{type(self).__module__}.{type(self).__name__}`).",
                "limitations": [
                    "Quality and cost predictions hold for the training data's distribution of prompts and for the "
                    "workers as they answered when the data was recorded.",
                    "It routes only among the workers listed; a pool must serve them under the same names.",
                    "Predicted costs are each worker's mean cost on the training data, not per-prompt estimates"
                    + ("" if self._mean_cost is not None else " (no costs were recorded: cost is unknown)") + "."]}


def run_episode_sync(router, messages: list[dict], pool, lam: float = 0.0):
    """Run a `ServingRouter` on `messages` against `pool` from synchronous code. Each step goes to the
    first of its ranked workers that answers (a `WorkerError` moves down the ranking). Inside a
    running event loop (a Jupyter cell) the episode runs on a helper thread with its own loop."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from routers.errors import ConfigError
    from routers.pool.base import WorkerError
    missing = [w for w in router.workers if w not in pool]
    if not router.workers or missing:
        raise ConfigError(f"{router.name}: the pool lacks worker(s) {', '.join(missing or ['(none routable)'])} "
                          f"(pool has: {', '.join(pool.names)})")

    async def call(candidates: list[str], msgs: list[dict], params: dict[str, Any]):
        err: WorkerError | None = None
        for name in candidates:
            try:
                return await pool.call(name, msgs, **params)
            except WorkerError as e:
                err = e
        raise err if err is not None else ConfigError(f"{router.name}: no worker to call")

    def run():
        return asyncio.run(router.answer(messages, call, lam=lam))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(run).result()
