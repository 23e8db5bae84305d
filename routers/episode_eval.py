"""Score routers that run episodes by answering each test question the way `baton serve` does.

Multi-turn TRINITY, the Conductor (and any `ServingRouter`) cannot be scored from recorded cells:
what they pay and answer depends on the turns they take. Each test question goes, as a user message,
through `ServingRouter.answer` with the server's own `RequestCaller` (fallback, retries, cooldowns;
no tenant rules, no client parameters, as a client that sets nothing), against a pool; the final
answer is graded by the question's task grader. Per question: score, worker cost (unknown if any
worker was unpriced), orchestration tokens and turns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from routers.data.schema import RoutingDataset
from routers.errors import BatonError, DataError
from routers.tasks.base import TaskItem


@dataclass
class EpisodeScores:
    """Per-question outcome of one router's episodes, aligned with the test split's rows."""
    score: np.ndarray                  # (n,) graded score in [0, 1]; a failed episode scores 0
    cost: np.ndarray                   # (n,) dollars paid to workers; NaN = unknown
    turns: np.ndarray                  # (n,) worker calls that answered
    orchestration_tokens: np.ndarray   # (n,) tokens the router's own model read and wrote
    workers: list[list[str]] = field(default_factory=list)  # who answered each step
    errors: list[str | None] = field(default_factory=list)  # why an episode failed, per question
    answers: list[str] = field(default_factory=list)


def task_items(test: RoutingDataset) -> list[TaskItem]:
    """The test rows as gradable task items: the gold answer from the data, the task from the id's or
    category's prefix ("gsm8k/12", "mmlu/anatomy"). Rows without either are refused by row."""
    from routers.tasks.registry import TASKS

    if test.answers is None:
        raise DataError("scoring episodes needs each question's gold answer, and this data has none "
                        "(native JSONL from `baton record` carries them)", file=test.name)
    items = []
    for i, (qid, prompt, cat, gold) in enumerate(zip(test.ids, test.prompts, test.categories, test.answers)):
        task = next((p.split("/")[0] for p in (str(qid), str(cat)) if p.split("/")[0] in TASKS), None)
        if gold is None or task is None:
            what = "gold answer" if gold is None else f"task (id {qid!r}, category {cat!r} name none of {sorted(TASKS)})"
            raise DataError(f"cannot grade an episode: no {what}", file=test.name, row=i)
        items.append(TaskItem(id=str(qid), prompt=prompt, answer=str(gold), task=task, category=cat))
    return items


def _caller(pool):
    """The server's CallFn for one request, with its default fallback settings and no tenant rules."""
    from routers.serve.compliance import TenantRules
    from routers.serve.config import FallbackConfig
    from routers.serve.fallback import RequestCaller, WorkerHealth

    cfg = FallbackConfig()
    health = WorkerHealth(pool, cfg)
    return lambda: RequestCaller(pool, health, TenantRules("eval", []), cfg)


async def _answer_all(router, items, pool, concurrency: int, lam: float, progress: bool):
    from routers.tasks.registry import get_task

    new_caller = _caller(pool)
    sem = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(items), desc=f"episodes {router.name}", unit="q", disable=not progress)

    async def one(it: TaskItem):
        async with sem:
            caller = new_caller()
            try:
                ep = await router.answer([{"role": "user", "content": it.prompt}], caller, lam=lam)
                out = (ep, None, get_task(it.task).grade(ep.answer, it), caller.spent)
            except BatonError as e:  # a refused or failed episode is a wrong answer with a reason,
                out = (None, f"{type(e).__name__}: {e}", 0.0, caller.spent)  # and what it paid
            bar.update()
            return out

    try:
        return await asyncio.gather(*(one(it) for it in items))
    finally:
        bar.close()


def score_episodes(router, test: RoutingDataset, pool, *, concurrency: int = 16, lam: float = 0.0,
                   progress: bool = True) -> EpisodeScores:
    """Answer every test question through `router.answer` against `pool` and grade it."""
    items = task_items(test)
    pool.register(items)
    results = asyncio.run(_answer_all(router, items, pool, concurrency, lam, progress))
    n = len(items)
    sc, co, turns, orch = (np.zeros(n) for _ in range(4))
    workers, errors, answers = [], [], []
    for i, (ep, err, g, spent) in enumerate(results):
        sc[i] = g
        errors.append(err)
        if ep is None:
            co[i] = spent  # the turns paid before the failure are still paid
            workers.append([]), answers.append("")
            continue
        co[i] = ep.cost if all(np.isfinite(s.reply.cost) for s in ep.steps) else np.nan
        turns[i] = len(ep.steps)
        orch[i] = ep.orchestration_input_tokens + ep.orchestration_output_tokens
        workers.append([s.worker for s in ep.steps])
        answers.append(ep.answer)
    return EpisodeScores(score=sc, cost=co, turns=turns, orchestration_tokens=orch, workers=workers,
                         errors=errors, answers=answers)
