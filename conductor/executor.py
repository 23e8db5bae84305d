"""Run a parsed workflow against the pool.

Steps form a DAG (each step depends only on the steps in its access list), so every step is an
asyncio task that waits for its inputs and then calls its worker: independent steps run at the same
time. The last step's output is the answer. A worker failure does not abort the workflow: the step
is recorded with an empty output and its error, and later steps go on (the answer is then usually
wrong, which is what the reward should see).

Recursion: a step whose worker is the Conductor itself (`self_name`) is answered by `recurse`,
which writes and runs a nested workflow one level deeper; its worker steps are kept in the step's
meta and its cost is counted in the step's reply.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from conductor.workflow import Workflow
from routers.pool.base import WorkerError, WorkerReply
from routers.serving_router import CallFn, Episode, Step

# recurse(subtask_prompt, depth) -> Episode of the nested workflow (depth is the nested depth)
RecurseFn = Callable[[str, int], Awaitable[Episode]]


def render_step_prompt(question: str, instruction: str | None, inputs: list[tuple[int, str]]) -> str:
    """What a step's worker reads: the question, the outputs it may see, then its instruction."""
    parts = [f"Question:\n{question}"]
    for j, text in inputs:
        parts.append(f"<Agent {j} response>\n{text}\n</Agent {j} response>")
    if instruction:
        parts.append(f"Your task:\n{instruction}")
    return "\n\n".join(parts)


def _episode_reply(ep: Episode, name: str, latency: float) -> WorkerReply:
    return WorkerReply(text=ep.answer, worker=name, model=name,
                       input_tokens=ep.worker_input_tokens + ep.orchestration_input_tokens,
                       output_tokens=ep.worker_output_tokens + ep.orchestration_output_tokens,
                       cost=ep.cost, latency_s=latency, meta={"nested": ep.trace()})


async def execute(workflow: Workflow, question: str, call: CallFn, *, item_id: str | None = None,
                  depth: int = 0, params: dict[str, Any] | None = None, use_subtasks: bool = True,
                  force_worker: str | None = None, self_name: str | None = None,
                  recurse: RecurseFn | None = None) -> Episode:
    """Execute `workflow` for `question`. `params` go to every worker call (max_tokens, temperature);
    `item_id` is passed as a hint so simulated/replay workers can find the item. Ablation switches:
    `use_subtasks=False` gives workers only the question and their inputs; `force_worker` sends
    every step to one worker."""
    base = dict(params or {})
    if item_id is not None:
        base["item_id"] = item_id
    tasks: list[asyncio.Task] = []

    async def run_step(i: int) -> Step:
        deps = workflow.inputs(i)
        done = [await tasks[j] for j in deps]
        inputs = [(j, s.reply.text) for j, s in zip(deps, done)]
        worker = force_worker or workflow.model_id[i]
        instruction = workflow.subtasks[i] if use_subtasks else None
        prompt = render_step_prompt(question, instruction, inputs)
        meta: dict[str, Any] = {"instruction": workflow.subtasks[i], "access": deps}
        t0 = time.perf_counter()
        try:
            if self_name is not None and worker == self_name:
                if recurse is None:
                    raise WorkerError(worker, "recursion is not enabled here")
                nested = await recurse(prompt, depth + 1)
                reply = _episode_reply(nested, worker, time.perf_counter() - t0)
                meta["depth"] = depth + 1
            else:
                last = i == len(workflow) - 1 and depth == 0      # the client's answer
                reply = await call([worker], [{"role": "user", "content": prompt}],
                                   {**base, "answer": last, "final": last})
        except WorkerError as e:
            reply = WorkerReply(text="", worker=worker, model=worker, input_tokens=0, output_tokens=0,
                                cost=0.0, latency_s=time.perf_counter() - t0)
            meta["error"] = str(e)
        return Step(worker=reply.worker or worker, role=f"step-{i}", reply=reply, candidates=[worker], meta=meta)

    for i in range(len(workflow)):
        tasks.append(asyncio.ensure_future(run_step(i)))
    try:
        steps = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
    meta: dict[str, Any] = {"workflow": {"model_id": workflow.model_id, "subtasks": workflow.subtasks,
                                         "access_list": workflow.access_list}, "depth": depth}
    if any("depth" in s.meta for s in steps):
        meta["recursed"] = True
    return Episode(answer=steps[-1].reply.text, steps=list(steps), meta=meta)
