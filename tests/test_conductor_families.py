"""The Conductor's executor drives the simulated pool's coordination effects (access lists and
subtasks reach the workers), and the workflow-family policies behind the CPU ablation table."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from conductor.executor import execute, render_step_prompt
from conductor.families import (DOMAIN_PHRASES, FamilyRouter, family, make_workflow, rank_family)
from conductor.workflow import Workflow
from routers.errors import ConfigError
from routers.pool import load_pool
from routers.pool.simulated import step_context
from routers.serving_router import pool_call
from test_pool_support import ToyTask, make_items

N = 2000
TOL = 0.045
COORD = {"context_delta": 0.1, "adopt": 0.5, "verify_words": ["verify"], "domain_delta": 0.1,
         "off_domain_delta": -0.1, "domains": {"toy/humanities": ["humanities"]}}


def toy_pool(n: int = N, coordination: dict | None = COORD):
    d = {"name": "t", "seed": 0, "workers": [
        {"name": "weak", "backend": "simulated", "accuracy": {"default": 0.5}, "input_price": 0.1,
         "output_price": 0.1, "verifier": {"p_catch": 0.5, "p_false_reject": 0.1}},
        {"name": "strong", "backend": "simulated", "accuracy": {"default": 0.8}, "input_price": 5.0,
         "output_price": 5.0, "verifier": {"p_catch": 0.9, "p_false_reject": 0.05}}]}
    if coordination:
        d["coordination"] = coordination
    pool = load_pool(d)
    items = make_items(n, category="philosophy")  # domain toy/humanities
    pool.register(items, tasks={"toy": ToyTask()})
    return pool, items


def run_workflow(pool, items, wf: Workflow, **kw):
    async def go():
        return [await execute(wf, it.prompt, pool_call(pool), item_id=it.id, **kw) for it in items]
    return asyncio.run(go())


def test_step_prompt_format_is_what_the_simulated_pool_reads():
    text = render_step_prompt("What is 2+2?", "Verify it.", [(0, "It is 4."), (2, "It is 5.")])
    assert step_context([{"role": "user", "content": text}]) == (["It is 4.", "It is 5."], "Verify it.")
    assert step_context([{"role": "user", "content": render_step_prompt("Q?", None, [])}]) == ([], None)


def test_executor_passes_access_lists_and_subtasks_to_the_workers():
    pool, items = toy_pool(n=50)
    wf = Workflow(["weak", "strong"], ["Solve this humanities question.", "Verify Agent 0's answer."], [[], [0]])
    ep = run_workflow(pool, items[:1], wf)[0]
    first, second = (s.reply.meta["coordination"] for s in ep.steps)
    assert first == {"instruction": "domain", "visible_answers": 0}
    assert second["visible_answers"] == 1 and second["verify"] in ("kept", "redone")
    # without subtasks the second step only reads Agent 0 (context effect, no verification)
    second = run_workflow(pool, items[:1], wf, use_subtasks=False)[0].steps[1].reply.meta["coordination"]
    assert second["instruction"] is None and "verify" not in second and second["context"] in ("adopted", "solved")
    # an empty access list shows the step nothing
    blind = Workflow(wf.model_id, wf.subtasks, [[], []])
    assert run_workflow(pool, items[:1], blind)[0].steps[1].reply.meta["coordination"]["visible_answers"] == 0


def test_solve_then_verify_workflow_reaches_the_documented_accuracy():
    pool, items = toy_pool()
    wf = make_workflow("verify", ("weak", "strong"), "toy/humanities")
    wf.subtasks = ["Solve this humanities question.", "Verify Agent 0's humanities answer."]
    acc = np.mean([ToyTask().grade(ep.answer, it) for ep, it in zip(run_workflow(pool, items, wf), items)])
    a0, a1 = 0.5 + 0.1, 0.8 + 0.1                          # both instructions name the domain
    expected = a0 * ((1 - 0.05) + 0.05 * a1) + (1 - a0) * 0.9 * a1
    assert abs(acc - expected) < TOL                     # 0.92: above strong alone (0.8, or 0.9 told the domain)
    plain, _ = toy_pool(coordination=None)
    acc_plain = np.mean([ToyTask().grade(ep.answer, it) for ep, it in zip(run_workflow(plain, items, wf), items)])
    assert abs(acc_plain - 0.8) < TOL                    # without effects the last worker answers alone


def test_family_instructions_name_their_domain_in_the_bundled_pool():
    coord = load_pool("simulated_coordination")["gpt-4o"].sim.coordination
    for d in DOMAIN_PHRASES:
        wf = make_workflow("verify", ("a", "b"), d)
        assert coord.instruction_delta(wf.subtasks[0], d) == (0.04, "domain"), d
        assert coord.is_verify(wf.subtasks[1]) and not coord.is_verify(wf.subtasks[0])
        assert not coord.is_verify(make_workflow("refine", ("a", "b"), d).subtasks[1])
    with pytest.raises(ConfigError, match="unknown workflow shape"):
        make_workflow("vote", ("a", "b"), "gsm8k")


def test_family_members_and_ranking_pick_the_best_by_reward():
    assert len(family(["a", "b"])) == 2 + 4 + 4 and len(family(["a", "b"], one_worker=True)) == 2 + 2 + 2
    pool, items = toy_pool(n=400)
    ranked = rank_family(pool, family(["weak", "strong"]), items, rollouts=2, tasks={"toy": ToyTask()})
    top, acc, cost = ranked.by_domain["toy/humanities"][0]
    assert top[1][-1] == "strong" and acc > 0.85             # accuracy alone: strong answers last
    cheap = ranked.reweigh(1e7).by_domain["toy/humanities"][0][0]
    assert cheap == ("solo", ("weak",))                       # a huge cost weight: the cheapest member
    assert set(ranked.best("toy/humanities", {"weak"})[1]) == {"weak"}  # the best member inside a subset


def test_family_router_answers_within_its_subset_and_refuses_unknown_questions():
    pool, items = toy_pool(n=60)
    domains = {it.prompt: "toy/humanities" for it in items}
    members = family(["weak", "strong"])
    rnd = FamilyRouter("r", members, domains, subset=(1, 1), seed=0)
    call = pool_call(pool)

    async def go(router, it):
        return await router.answer([{"role": "user", "content": it.prompt}], call)
    for it in items[:30]:
        ep = asyncio.run(go(rnd, it))
        assert len({s.worker for s in ep.steps}) == 1                 # a one-worker subset
        assert ep.meta["family_member"][1] == [s.worker for s in ep.steps]
    with pytest.raises(ConfigError, match="not in this policy's domain index"):
        asyncio.run(go(rnd, make_items(1, category="history")[0]))
