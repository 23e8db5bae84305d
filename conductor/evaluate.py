"""Held-out evaluation of a Conductor policy: greedy workflows for each item, executed and graded
with the same reward code as training (so the numbers mean the same thing)."""

from __future__ import annotations

import random
from typing import Any

from tqdm.auto import tqdm

from conductor.env import ConductorEnv
from conductor.reward import WorkflowReward, batch_stats
from routers.tasks.base import TaskItem


def evaluate_policy(generator, env: ConductorEnv, items: list[TaskItem], *, batch_size: int = 8,
                    seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Mean reward, parse rate, accuracy, steps, worker cost and orchestration tokens on `items`.
    `generator(prompts) -> list[Generation]` (conductor.policy.Generator, greedy)."""
    env.add_items(items)
    rng = random.Random(seed)
    names = [env.sample_workers(rng) for _ in items]
    reward = WorkflowReward(env, generate=generator.texts)
    outs, orch_in, orch_out, choices = [], 0, 0, {}
    for s in tqdm(range(0, len(items), batch_size), desc="eval conductor", disable=not progress):
        chunk = items[s:s + batch_size]
        gens = generator([env.prompt(it.prompt, n) for it, n in zip(chunk, names[s:s + batch_size])])
        orch_in += sum(g.prompt_tokens for g in gens)
        orch_out += sum(g.completion_tokens for g in gens)
        outs += reward.run(reward.score_batch([g.text for g in gens], [it.id for it in chunk], names[s:s + batch_size]))
    for it, o in zip(items, outs):
        if o.episode is not None:
            key = f"{it.category}->{o.episode.steps[-1].worker}"
            choices[key] = choices.get(key, 0) + 1
    n = max(1, len(outs))
    stats = batch_stats(outs)
    # held-out accuracy follows the evaluator's rule (routers.accounting): a question whose workflow
    # failed is a wrong answer, never skipped; the failure rate is reported beside it
    acc = sum(o.score for o in outs if o.reward is not None) / n
    return {"n": len(outs), "mean_reward": stats["reward"], "worker_failure_rate": stats["worker_failure_rate"],
            "parse_rate": stats["parse_rate"], "accuracy": acc,
            "mean_steps": sum(o.meta.get("steps", 0) for o in outs) / max(1, sum(o.parsed for o in outs)),
            "worker_cost": sum(o.episode.cost for o in outs if o.episode) / n,
            "orchestration_input_tokens": orch_in / n, "orchestration_output_tokens": orch_out / n,
            "final_worker_by_category": dict(sorted(choices.items()))}
