"""Objectives whose features come from the coordinator at evaluation time (not a fixed cache):

- `EpisodeObjective`: the full multi-turn protocol against a worker pool. All candidates' episodes
  of a generation run together (`trinity.protocol.run_episodes`: one batched coordinator pass per
  turn, concurrent worker calls); fitness = correctness graded by the item's task, plus the bonuses.
- `SVFSelectionObjective`: single-turn selection where each candidate also carries SVF offsets, so
  features are recomputed per candidate (GPU configs; tested on CPU with the tiny random Llama).

Flat vector layout: [SVF offsets (svf.n_params, absent without SVF); head parameters].
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import numpy as np

from routers.serving_router import pool_call
from trinity.config import FitnessConfig, ProtocolConfig
from trinity.fitness import FitnessResult, SelectionObjective, combine, minibatch, normalized_entropy


def _split(x: np.ndarray, n_svf: int) -> tuple[np.ndarray, np.ndarray]:
    return x[:n_svf], x[n_svf:]


class EpisodeObjective:
    """Multi-turn TRINITY episodes on task items through a pool."""

    def __init__(self, items: list, pool, coordinator, head, workers: list[str], protocol: ProtocolConfig,
                 *, fitness: FitnessConfig | None = None, repeats: int = 1, batch_size: int | None = None,
                 seed: int = 0, svf=None, grader=None):
        from trinity.protocol import HeadPolicy  # noqa: F401  (fail early if the protocol is missing)
        self.items, self.pool, self.coord, self.head = list(items), pool, coordinator, head
        self.workers, self.protocol = list(workers), protocol
        self.cfg = fitness or FitnessConfig()
        self.repeats, self.batch_size, self.seed, self.svf = int(repeats), batch_size, int(seed), svf
        self.n_svf = 0 if svf is None else int(svf.n_params)
        self.n_params = self.n_svf + int(head.n_params)
        self.grader = grader or _task_grader

    def x0(self) -> np.ndarray:
        h = self.head.init_flat() if hasattr(self.head, "init_flat") else np.zeros(self.head.n_params)
        return np.concatenate([np.zeros(self.n_svf), h])

    def batch(self, generation: int) -> np.ndarray:
        return minibatch(len(self.items), self.batch_size, self.seed, generation)

    def _run(self, X_head: np.ndarray, tags: list[int], generation: int, rows, sample: bool):
        from trinity.protocol import HeadPolicy, run_episodes, start
        states = []
        for k, idx in enumerate(tags):
            for r in range(self.repeats if sample else 1):
                for i in rows:
                    it = self.items[i]
                    rng = np.random.default_rng([self.seed, int(generation), 0, int(idx), r, int(i)])
                    states.append(start([{"role": "user", "content": it.prompt}], item_id=it.id, rng=rng, tag=k))
        eps = asyncio.run(run_episodes(states, featurizer=self.coord, policy=HeadPolicy(self.head, X_head),
                                       call=pool_call(self.pool), workers=self.workers, cfg=self.protocol, sample=sample))
        return states, eps

    def _summarize(self, states, eps, n_cand: int) -> list[FitnessResult]:
        K = self.protocol.max_turns
        per: list[dict[str, Any]] = [dict(c=[], cost=[], tok=[], turns=[], eff=[], w={}, r={}) for _ in range(n_cand)]
        for s, ep in zip(states, eps):
            it = self.items_by_id[s.item_id]
            correct = float(self.grader(ep.answer, it))
            d = per[int(s.tag)]
            turns = len(ep.steps)
            d["c"].append(correct)
            d["cost"].append(ep.cost)
            d["tok"].append(ep.worker_input_tokens + ep.worker_output_tokens)
            d["turns"].append(turns)
            d["eff"].append(correct * ((K - turns) / (K - 1) if K > 1 else 0.0))
            for st in ep.steps:
                d["w"][st.worker] = d["w"].get(st.worker, 0) + 1
                d["r"][st.role] = d["r"].get(st.role, 0) + 1
        out = []
        for d in per:
            acc, cost, eff = float(np.mean(d["c"])), float(np.mean(d["cost"])), float(np.mean(d["eff"]))
            div = normalized_entropy([d["w"].get(w, 0) for w in self.workers])
            out.append(FitnessResult(fitness=combine(acc, cost, div, eff, self.cfg), accuracy=acc, cost=cost,
                                     tokens=float(np.mean(d["tok"])), diversity=div,
                                     turns=float(np.mean(d["turns"])), worker_hist=d["w"], role_hist=d["r"]))
        return out

    @property
    def items_by_id(self) -> dict:
        if not hasattr(self, "_by_id"):
            self._by_id = {it.id: it for it in self.items}
        return self._by_id

    def evaluate(self, X: np.ndarray, generation: int, indices: Sequence[int] | None = None,
                 sample: bool = True, rows=None) -> list[FitnessResult]:
        X = np.atleast_2d(X)
        indices = list(range(len(X))) if indices is None else list(indices)
        rows = self.batch(generation) if rows is None else rows
        if self.svf is None:
            states, eps = self._run(X, indices, generation, rows, sample)
            return self._summarize(states, eps, len(X))
        out = []
        for x, idx in zip(X, indices):  # SVF: each candidate changes the coordinator itself
            off, h = _split(x, self.n_svf)
            with self.svf.applied(off):
                states, eps = self._run(h[None], [idx], generation, rows, sample)
            for s in states:
                s.tag = 0
            out += self._summarize(states, eps, 1)
        return out

    def evaluate_final(self, x: np.ndarray, items: list | None = None) -> tuple[FitnessResult, list]:
        """Argmax episodes of the trained vector (evaluation as served) on `items` (default: all)."""
        saved = self.items
        if items is not None:
            self.items = list(items)
            if hasattr(self, "_by_id"):
                del self._by_id
        try:
            off, h = _split(np.asarray(x), self.n_svf)
            rows = np.arange(len(self.items))
            if self.svf is not None:
                self.svf.apply(off)
            states, eps = self._run(h[None], [0], 0, rows, sample=False)
            return self._summarize(states, eps, 1)[0], eps
        finally:
            self.items = saved
            if hasattr(self, "_by_id"):
                del self._by_id


def _task_grader(text: str, item) -> float:
    from routers.tasks import get_task
    return get_task(item.task).grade(text, item)


class SVFSelectionObjective(SelectionObjective):
    """Single-turn selection with SVF: per candidate, apply its offsets, recompute the features of
    the generation's queries (batched), then score its head as `SelectionObjective` does."""

    def __init__(self, coordinator, texts: list[str], head, scores, workers, **kw):
        self.coord, self.texts = coordinator, list(texts)
        if coordinator.svf is None:
            raise ValueError("SVFSelectionObjective needs coordinator.enable_svf() first")
        self.svf = coordinator.svf
        base = coordinator.features(self.texts).numpy()
        super().__init__(head, base, scores, workers, **kw)
        self.n_svf = int(self.svf.n_params)
        self.n_params = self.n_svf + int(head.n_params)
        self._x0 = np.concatenate([np.zeros(self.n_svf), self._x0])

    def argmax_accuracy(self, x: np.ndarray, texts: list[str], scores: np.ndarray) -> float:
        """Served accuracy of `x` on held-out `texts`: one coordinator pass under x's offsets."""
        with self.svf.applied(x[:self.n_svf]):
            F = self.coord.features(list(texts)).numpy()
        return self.evaluate_argmax(x[self.n_svf:], F, scores)["accuracy"]

    def probabilities(self, X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(len(self.texts)) if rows is None else rows
        out = []
        for x in np.atleast_2d(X):
            off, h = _split(x, self.n_svf)
            with self.svf.applied(off):
                F = self.coord.features([self.texts[i] for i in rows]).numpy()
            out.append(super()._probs_from(h[None], F)[0])
        return np.stack(out)
