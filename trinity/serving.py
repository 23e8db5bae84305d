"""A trained TRINITY checkpoint behind the project's two router interfaces.

- `TrinityRouter` (`routers.baselines.base.Router`, needs_fit=False) for `baton eval` and the
  Python API (`baton.TrinityRouter.from_pretrained`, `route`, `answer`, `save_pretrained`,
  `push_to_hub`): quality is the head's worker softmax on the single-turn transcript `user: <prompt>`.
- `TrinityServingRouter` (`routers.serving_router.ServingRouter`) for `baton serve`: runs the multi-turn
  protocol with argmax decisions, or single-turn selection for a roles-free head; the coordinator's
  tokens are reported as orchestration_input_tokens.
- `load_router(path, serving=False, **kw)`: the registry's entry point, a checkpoint as either one.

Cost trade-off `lam` (accuracy per dollar, as for every router): a checkpoint trained with a
frontier (`trinity.frontier`) serves lam with the head trained for it (`baton eval` sweeps exactly
those heads); without one, the head has no cost model, so lam uses the checkpoint's mean cost per
worker (from training data, when saved) as `softmax - lam * mean_cost` in single-turn selection, and
the multi-turn protocol ignores lam.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from routers.accounting import decision_costs

from routers.baselines.base import Router
from routers.errors import ConfigError
from routers.serving_router import CallFn, Episode, ServingRouter, Step, last_user_text
from trinity.checkpoint import card_facts
from trinity.checkpoint import load as load_checkpoint
from trinity.checkpoint import save as save_checkpoint
from trinity.coordinator import render_transcript
from trinity.heads import softmax
from trinity.protocol import run_episode


def selection_text(prompt: str) -> str:
    """The transcript a single-turn selection reads (what training features are computed on)."""
    return render_transcript([{"role": "user", "content": prompt}])


class TrinityRouter(Router):
    name = "trinity"
    needs_fit = False

    def __init__(self, model, **params: Any):
        super().__init__(**params)
        self.trinity = model
        self.models = list(model.workers)
        mc = model.mean_cost
        self._mean_cost = None if mc is None else np.asarray(mc, dtype=np.float64)
        self._cols = np.arange(len(self.models))   # dataset column -> head agent (-1: unknown)
        self._features = (None, None)              # (texts, coordinator features): one pass per sweep

    def fit(self, train, validation=None) -> "TrinityRouter":
        """Nothing is learned: align to the dataset's model order (and keep its mean costs)."""
        missing = [w for w in self.trinity.workers if w not in train.models]
        if missing:
            raise ConfigError(f"trinity checkpoint routes to {', '.join(missing)}, which dataset "
                              f"{train.name} does not have (it has {', '.join(train.models)})")
        self.models = list(train.models)
        self._cols = np.array([self.trinity.workers.index(m) if m in self.trinity.workers else -1
                               for m in self.models])
        costs = decision_costs(train.cost_matrix())  # routers.accounting: unpriced is never free
        self._mean_cost = costs.mean(axis=0) if len(train) else np.zeros(train.n_models)
        return self

    @classmethod
    def load(cls, path, **kw) -> "TrinityRouter":
        """A checkpoint folder (kw: device, dtype, coordinator, workers; see `trinity.checkpoint.load`)."""
        return cls(load_checkpoint(path, kw.pop("device", "cpu"), **kw))

    def answer(self, messages: list[dict], *, pool, lam: float = 0.0) -> Episode:
        """One synchronous episode through `pool`: the multi-turn protocol for a roles head (every episode
        ends with a Worker answer, as served), else one call down the head's ranking."""
        from routers.baselines.base import run_episode_sync
        return run_episode_sync(TrinityServingRouter(self.trinity, name=self.name), messages, pool, lam)

    def card(self) -> dict[str, Any]:
        return card_facts(self.trinity.config)

    def save(self, path):
        """Write the TRINITY checkpoint again (not the baseline format: the weights live in the head)."""
        m = self.trinity
        svf = m.coordinator.svf if m.config.get("svf") else None
        return save_checkpoint(path, coordinator=m.coordinator, head=m.head, workers=m.workers, protocol=m.protocol,
                    svf=svf, training=m.config.get("training"), metrics=m.config.get("metrics"),
                    mean_cost=m.mean_cost,
                    frontier=None if m.frontier is None else {"config": m.config["frontier"], "heads": m.frontier})

    @property
    def lam_values(self) -> list[float] | None:
        """The lams `baton eval` sweeps: the frontier's trained weights (None: the evaluator's grid)."""
        return self.trinity.lams

    def _probs(self, prompts: list[str], lam: float | None = None) -> np.ndarray:
        texts = tuple(selection_text(q) for q in prompts)
        if self._features[0] != texts:
            self._features = (texts, self.trinity.coordinator.features(list(texts)))
        p = softmax(self.trinity.agent_logits(list(texts), features=self._features[1], lam=lam))  # (n, L)
        out = np.zeros((len(prompts), len(self.models)))
        known = self._cols >= 0
        out[:, known] = p[:, self._cols[known]]
        return out

    def predict_quality(self, prompts: list[str], categories: list[str] | None = None) -> np.ndarray:
        """The main head's worker softmax (the frontier's lam=0 head when it has one)."""
        return self._probs(prompts, 0.0 if self.trinity.lams else None)

    def route(self, prompts, lam: float = 0.0, categories=None, quality=None, cost=None):
        """With a frontier, the head trained for `lam` picks (its argmax, cost already in its
        weights); without one, the base rule `quality - lam * cost`."""
        if self.trinity.lams is None or isinstance(prompts, str):
            return super().route(prompts, lam, categories, quality=quality, cost=cost)
        c = self.predict_cost(prompts, categories) if cost is None else cost
        return np.argmax(self._probs(prompts, lam) - 1e-9 * c, axis=1)  # tiny cost tiebreak, as the base rule

    def rank(self, prompt: str, lam: float = 0.0, category: str | None = None) -> list[str]:
        if self.trinity.lams is None:
            return super().rank(prompt, lam, category)
        q, c = self._probs([prompt], lam)[0], self.predict_cost([prompt])[0]
        return [self.models[j] for j in np.lexsort((c, -q))]


class TrinityServingRouter(ServingRouter):
    def __init__(self, model, name: str = "trinity"):
        self.trinity, self.name = model, name
        self.workers = list(model.workers)

    @property
    def lam_values(self) -> list[float] | None:
        """The frontier's trained lams (`baton eval` runs the episodes at each), or None."""
        return self.trinity.lams

    def describe(self) -> dict[str, Any]:
        c = self.trinity.config
        return {**super().describe(), "coordinator": c.get("coordinator", {}).get("model"),
                "head": c.get("head", {}).get("kind"),
                "mode": "selection" if self.trinity.head.n_roles == 0 else "multi-turn",
                "max_turns": getattr(self.trinity.protocol, "max_turns", None)}

    async def answer(self, messages: list[dict], call: CallFn, *, lam: float = 0.0) -> Episode:
        m = self.trinity
        if m.head.n_roles:
            # a client must never get an empty completion: the last turn answers if no Worker did
            cfg = dataclasses.replace(m.protocol, require_answer=True)
            return await run_episode(messages, featurizer=m.coordinator, policy=m.policy(lam) if m.lams else m.policy(),
                                     call=call, workers=self.workers, cfg=cfg, sample=False)
        if not last_user_text(messages):
            raise ConfigError("trinity: the request has no user message to route")
        text = selection_text(last_user_text(messages))
        t0 = time.perf_counter()
        # a frontier serves lam with the head trained for it; a single head trades off by mean cost
        logits = await asyncio.to_thread(m.agent_logits, [text], None, lam if m.lams else None)
        util = softmax(logits[0])
        if m.lams is None and lam and m.mean_cost is not None:
            util = util - lam * m.mean_cost
        ranking = [self.workers[j] for j in np.argsort(-util, kind="stable")]
        dt = time.perf_counter() - t0
        reply = await call(ranking, messages, {"role": "worker"})
        return Episode(answer=reply.text, steps=[Step(worker=reply.worker, role="answer", reply=reply,
                                                      candidates=ranking)],
                       orchestration_input_tokens=sum(m.coordinator.count_tokens([text])),
                       orchestration_latency_s=dt)


def load_router(path, serving: bool = False, **kw):
    """`routers.registry` entry point: a fitted `Router` (selection softmax as predict_quality) or,
    with serving=True, a `ServingRouter` (kw: pool, name, device, dtype, coordinator)."""
    if serving:
        m = load_checkpoint(path, kw.get("device", "cpu"), coordinator=kw.get("coordinator"), pool=kw.get("pool"),
                 dtype=kw.get("dtype"))
        return TrinityServingRouter(m, name=kw.get("name") or f"trinity-{Path(path).name}")
    m = load_checkpoint(path, kw.get("device", "cpu"), coordinator=kw.get("coordinator"), workers=kw.get("workers"),
             dtype=kw.get("dtype"))
    return TrinityRouter(m)
