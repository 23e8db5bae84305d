"""The Conductor's reward: execute each sampled workflow against the pool and grade its answer.

    0    (reward.unparsable) the output is not a valid workflow
    0.5  (reward.wrong)      it runs but the answer is wrong
    1    (reward.correct)    the answer is right (graded by the task; partial scores interpolate)
    minus reward.cost_weight * dollars the workers cost; times (1 - recursion.discount) per level
    of recursion the workflow used.
    None (unscorable)        a worker call failed (after the pool's own retries) or the run raised:
                             the answer says nothing about the workflow, so it gets no score; trl
                             leaves such a completion out of its group's baseline and gives it zero
                             advantage. The run goes on; the failure is kept in `Outcome.error` and
                             counted as `conductor/worker_failure_rate`.

A workflow naming a worker outside the subset its prompt showed is unparsable (the parser refuses
it against that subset), so it is never executed. Unparsable outputs are counted as
`conductor/parse_rate`.

`WorkflowReward` is a trl reward function (`(prompts, completions, **columns) -> list[float | None]`);
the whole batch's workflows run concurrently in one asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from conductor.env import ConductorEnv
from conductor.executor import execute
from conductor.workflow import WorkflowError
from routers.serving_router import CallFn, Episode, pool_call
from routers.tasks.base import TaskItem

log = logging.getLogger(__name__)

# generate(prompts) -> completions: the policy, greedy, for nested (recursive) workflows
GenerateFn = Callable[[list[str]], list[str]]


@dataclass
class Outcome:
    reward: float | None                 # None: unscorable (a worker failed), see the module docstring
    parsed: bool
    score: float = 0.0                   # the task's grade of the answer (0 if unparsable)
    episode: Episode | None = None
    error: str | None = None
    levels: int = 0                      # recursion levels used
    meta: dict[str, Any] = field(default_factory=dict)


class WorkflowReward:
    """Reward function for trl's GRPOTrainer. Dataset columns used: `item_id`, `workers`."""

    __name__ = "workflow_reward"

    def __init__(self, env: ConductorEnv, call: CallFn | None = None, generate: GenerateFn | None = None):
        self.env = env
        self.call = call or pool_call(env.pool)
        self.generate = generate
        self.history: list[dict[str, float]] = []   # per batch: mean reward, parse rate, accuracy
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro):
        """Run `coro` on this reward's own event loop (kept across batches: pool clients such as
        httpx connections stay bound to one loop)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    # -- one workflow --------------------------------------------------------------------------
    async def _recurse_fn(self, names: list[str], item: TaskItem, levels: list[int], call: CallFn):
        env = self.env

        async def recurse(question: str, depth: int) -> Episode:
            levels[0] = max(levels[0], depth)
            if self.generate is None:
                return Episode(answer="", meta={"error": "no policy to generate a nested workflow"})
            prompt = env.prompt(question, names, depth)
            completion = (await asyncio.to_thread(self.generate, [prompt]))[0]
            try:
                wf = env.parse(completion, names, depth)
            except WorkflowError as e:
                return Episode(answer="", meta={"parse_error": str(e), "depth": depth})
            return await self._execute(wf, question, item, names, depth, levels, call)

        return recurse

    async def _execute(self, wf, question: str, item: TaskItem, names: list[str], depth: int,
                       levels: list[int], call: CallFn) -> Episode:
        w, rc = self.env.cfg.workflow, self.env.cfg.recursion
        recurse = await self._recurse_fn(names, item, levels, call) if rc.enabled else None
        return await execute(wf, question, call, item_id=item.id, depth=depth,
                             params=self.env.worker_params(), use_subtasks=w.use_subtasks,
                             force_worker=w.force_worker, self_name=rc.name if rc.enabled else None,
                             recurse=recurse)

    async def score(self, completion: str, item: TaskItem, names: list[str]) -> Outcome:
        env, r = self.env, self.env.cfg.reward
        try:
            wf = env.parse(completion, names, 0)
        except WorkflowError as e:
            return Outcome(r.unparsable, False, error=str(e), meta={"code": e.code})
        levels, failures = [0], []

        async def call(candidates, messages, params):  # notes failures; the executor records them
            try:
                return await self.call(candidates, messages, params)
            except Exception as e:
                failures.append(f"{candidates[0]}: {type(e).__name__}: {e}")
                raise

        try:
            ep = await self._execute(wf, item.prompt, item, names, 0, levels, call)
        except Exception as e:  # a failure the executor does not record (not a WorkerError)
            if not failures:  # not already noted by `call`
                failures.append(f"{type(e).__name__}: {e}")
            ep = None
        if failures:
            return Outcome(None, True, episode=ep, error="; ".join(failures)[:2000],
                           levels=levels[0], meta={"steps": len(wf), "worker_failure": True})
        score = float(env.task.grade(ep.answer, item))
        reward = r.wrong + (r.correct - r.wrong) * score - r.cost_weight * ep.cost
        reward *= (1.0 - env.cfg.recursion.discount) ** levels[0]
        return Outcome(reward, True, score, ep, levels=levels[0], meta={"steps": len(wf)})

    async def score_batch(self, completions: list[str], item_ids: list[str], workers: list[list[str]]) -> list[Outcome]:
        missing = [i for i in item_ids if i not in self.env.items]
        if missing:
            raise KeyError(f"reward: item ids not registered with the environment: {missing[:3]}")
        return list(await asyncio.gather(*(self.score(c, self.env.items[i], list(w))
                                           for c, i, w in zip(completions, item_ids, workers))))

    # -- trl entry point -----------------------------------------------------------------------
    def __call__(self, prompts: list[str], completions: list[Any], item_id: list[str],
                 workers: list[list[str]] | None = None, log_metric=None, **_: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        workers = workers or [self.env.workers] * len(texts)
        outs = self.run(self.score_batch(texts, item_id, workers))
        stats = batch_stats(outs)
        self.history.append(stats)
        if stats["worker_failure_rate"] == 1.0:
            log.warning("conductor reward: every workflow of this batch hit a worker failure (nothing to "
                        "learn from); first: %s", outs[0].error)
        if log_metric is not None:
            for k in ("parse_rate", "accuracy", "mean_steps", "worker_failure_rate"):
                if stats[k] is not None:
                    log_metric(f"conductor/{k}", stats[k])
        return [o.reward for o in outs]


def batch_stats(outs: list[Outcome]) -> dict[str, float | None]:
    """Mean reward and accuracy over the scored outcomes (None when none was), and the rates of
    parsed workflows and of worker failures over all of them."""
    n = max(1, len(outs))
    scored = [o for o in outs if o.reward is not None]
    k = len(scored)
    return {"reward": sum(o.reward for o in scored) / k if k else None,
            "parse_rate": sum(o.parsed for o in outs) / n,
            "accuracy": sum(o.score for o in scored) / k if k else None,
            "mean_steps": sum(o.meta.get("steps", 0) for o in outs) / n,
            "worker_failure_rate": sum(o.reward is None for o in outs) / n}
