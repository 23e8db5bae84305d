"""Conductor executor (concurrency, access-list injection, failures), reward values, recursion."""

from __future__ import annotations

import asyncio
import time

import pytest

from conductor.config import ConductorConfig, load_config
from conductor.env import ConductorEnv
from conductor.executor import execute, render_step_prompt
from conductor.reward import WorkflowReward
from conductor.toy import ToyPool, ToyTask
from conductor.workflow import Workflow, parse_workflow
from routers.errors import ConfigError
from routers.pool.base import RateLimited, WorkerReply


def fake_call(delay: float = 0.0, log: list | None = None, fail: set[str] = frozenset()):
    async def call(candidates, messages, params):
        w = candidates[0]
        t0 = time.perf_counter()
        if log is not None:
            log.append((w, messages[0]["content"], params, t0))
        if w in fail:
            raise RateLimited(w, "slow down")
        await asyncio.sleep(delay)
        return WorkerReply(text=f"out-{w}", worker=w, model=w, input_tokens=10, output_tokens=3,
                           cost=0.01, latency_s=time.perf_counter() - t0)
    return call


def test_independent_steps_overlap_and_dependent_steps_wait():
    wf = Workflow(["a", "b", "c"], ["x", "y", "z"], [[], [], [0, 1]])
    log: list = []
    t0 = time.perf_counter()
    ep = asyncio.run(execute(wf, "Q?", fake_call(0.3, log)))
    wall = time.perf_counter() - t0
    assert wall < 0.85, wall  # sequential would be >= 0.9 s; a, b overlap then c runs
    starts = {w: t for w, _, _, t in log}
    assert abs(starts["a"] - starts["b"]) < 0.1
    assert starts["c"] - max(starts["a"], starts["b"]) >= 0.28
    assert ep.answer == "out-c" and [s.role for s in ep.steps] == ["step-0", "step-1", "step-2"]
    assert ep.steps[2].meta == {"instruction": "z", "access": [0, 1]}
    assert ep.cost == pytest.approx(0.03) and ep.worker_input_tokens == 30
    assert all(s.reply.latency_s >= 0.29 for s in ep.steps)


def test_access_list_injects_exact_agent_blocks():
    wf = parse_workflow('model_id=["a","b","c","d"]\nsubtasks=["s0","s1","s2","s3"]\naccess_list=[[],[0],"all",[]]',
                        ["a", "b", "c", "d"])
    log: list = []
    asyncio.run(execute(wf, "What?", fake_call(0.0, log), item_id="it-1", params={"max_tokens": 9}))
    seen = {w: (content, params) for w, content, params, _ in log}
    assert seen["a"][0] == "Question:\nWhat?\n\nYour task:\ns0"
    assert seen["b"][0] == "Question:\nWhat?\n\n<Agent 0 response>\nout-a\n</Agent 0 response>\n\nYour task:\ns1"
    assert seen["c"][0] == ("Question:\nWhat?\n\n<Agent 0 response>\nout-a\n</Agent 0 response>\n\n"
                            "<Agent 1 response>\nout-b\n</Agent 1 response>\n\nYour task:\ns2")
    assert seen["d"][0] == "Question:\nWhat?\n\nYour task:\ns3"
    # call hints (routers.serving_router): only the last step is the client's answer
    assert seen["a"][1] == {"max_tokens": 9, "item_id": "it-1", "answer": False, "final": False}
    assert seen["d"][1] == {"max_tokens": 9, "item_id": "it-1", "answer": True, "final": True}
    assert render_step_prompt("Q", None, [(3, "x")]) == "Question:\nQ\n\n<Agent 3 response>\nx\n</Agent 3 response>"


def test_ablation_switches_and_worker_failure_is_recorded():
    wf = Workflow(["a", "b"], ["s0", "s1"], [[], "all"])
    log: list = []
    ep = asyncio.run(execute(wf, "Q", fake_call(0.0, log), use_subtasks=False, force_worker="z"))
    assert [w for w, *_ in log] == ["z", "z"] and "Your task" not in log[0][1]
    ep = asyncio.run(execute(wf, "Q", fake_call(0.0, fail={"a"})))
    assert ep.steps[0].reply.text == "" and "slow down" in ep.steps[0].meta["error"]
    assert ep.answer == "out-b"


# -- reward ---------------------------------------------------------------------------------------
def toy_env(**overrides) -> tuple[ConductorEnv, list]:
    cfg = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    env = ConductorEnv(cfg, ToyPool(good=1.0, bad=0.0), ToyTask())
    items = ToyTask().load(limit=6)
    env.add_items(items)
    return env, items


def wf_text(worker: str) -> str:
    return f'model_id = ["{worker}"]\nsubtasks = ["Answer."]\naccess_list = [[]]'


def test_reward_values_unparsable_wrong_correct():
    env, items = toy_env()
    arith = next(it for it in items if it.category == "arithmetic")  # gamma is right, alpha wrong
    r = WorkflowReward(env)
    out = r([""] * 3, [wf_text("gamma"), wf_text("alpha"), "model_id = [oops"], item_id=[arith.id] * 3)
    assert out == [1.0, 0.5, 0.0]
    assert r.history[-1]["parse_rate"] == pytest.approx(2 / 3) and r.history[-1]["accuracy"] == pytest.approx(1 / 3)
    env2, _ = toy_env(**{"reward.wrong": 0.2, "reward.correct": 2.0, "reward.unparsable": -1.0})
    env2.add_items(items)
    assert WorkflowReward(env2)([""] * 3, [wf_text("gamma"), wf_text("alpha"), "x"], item_id=[arith.id] * 3) == [2.0, 0.2, -1.0]


def test_cost_penalty_and_worker_subset():
    env, items = toy_env(**{"reward.cost_weight": 1000.0})
    arith = next(it for it in items if it.category == "arithmetic")
    outs = asyncio.run(WorkflowReward(env).score_batch([wf_text("gamma")], [arith.id], [env.workers]))
    cost = outs[0].episode.cost
    assert cost > 0 and outs[0].reward == pytest.approx(1.0 - 1000.0 * cost)
    # a worker outside the subset shown in the prompt is unparsable for that prompt, and never called
    calls = env.pool.calls
    r = WorkflowReward(env)
    assert r([""], [wf_text("gamma")], item_id=[arith.id], workers=[["alpha", "beta"]]) == [0.0]
    assert env.pool.calls == calls and r.history[-1]["parse_rate"] == 0.0
    out = asyncio.run(r.score(wf_text("gamma"), arith, ["alpha", "beta"]))
    assert not out.parsed and out.meta["code"] == "unknown_model" and "'gamma'" in out.error
    assert env.pool.calls == calls


class FlakyPool(ToyPool):
    """A toy pool whose `down` worker fails: with a WorkerError (after the pool's own retries) or, for
    `crash`, with an exception no worker should raise."""

    def __init__(self, down: str, exc: Exception):
        super().__init__(good=1.0, bad=0.0)
        self.down, self.exc = down, exc

    async def call(self, worker, messages, **params):
        if worker == self.down:
            raise self.exc
        return await super().call(worker, messages, **params)


@pytest.mark.parametrize("exc", [RateLimited("gamma", "429 after 3 retries"), RuntimeError("socket closed")],
                         ids=["worker_error", "other_exception"])
def test_worker_failure_in_a_workflow_is_unscorable_not_a_crash(exc):
    env, items = toy_env()
    env.pool = FlakyPool("gamma", exc)
    env.add_items(items)
    arith = next(it for it in items if it.category == "arithmetic")
    two_step = 'model_id = ["alpha", "gamma"]\nsubtasks = ["a", "b"]\naccess_list = [[], "all"]'
    r, logged = WorkflowReward(env), {}
    out = r([""] * 4, [wf_text("gamma"), two_step, wf_text("alpha"), "junk"], item_id=[arith.id] * 4,
            log_metric=logged.__setitem__)
    # the failed workflows get no score (trl: zero advantage, out of the baseline); the others are graded
    assert out == [None, None, 0.5, 0.0]
    assert logged["conductor/worker_failure_rate"] == 0.5 and logged["conductor/parse_rate"] == 0.75
    assert r.history[-1]["reward"] == pytest.approx(0.25) and r.history[-1]["accuracy"] == 0.0
    failed = asyncio.run(r.score(two_step, arith, env.workers))
    assert failed.reward is None and failed.parsed and "gamma" in failed.error and failed.meta["worker_failure"]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="reward.wrongg"):
        load_config(None, ["reward.wrongg=1"])
    with pytest.raises(ConfigError, match="grpo.max_steps"):
        load_config(None, ["grpo.max_steps=many"])
    bad = tmp_path / "c.yaml"
    bad.write_text("policy:\n  model: [1]\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*policy.model"):
        load_config(bad)
    assert load_config(None, ["pool.subset=[1, 2]"]).pool.subset == [1, 2]


# -- recursion ------------------------------------------------------------------------------------
def test_recursion_depth_limit_and_discount():
    env, items = toy_env(**{"recursion.enabled": "true", "recursion.max_depth": 1, "recursion.discount": 0.25})
    arith = next(it for it in items if it.category == "arithmetic")
    assert env.names_at(env.workers, 0)[-1] == "conductor" and "conductor" not in env.names_at(env.workers, 1)
    assert "- conductor: yourself" in env.prompt(arith.prompt, env.workers, 0)
    prompts_seen: list[str] = []

    def generate(prompts):
        prompts_seen.extend(prompts)
        return [wf_text("gamma")[len(env.cfg.prompt.prefill):]]

    r = WorkflowReward(env, generate=generate)
    out = asyncio.run(r.score_batch([wf_text("conductor")], [arith.id], [env.workers]))[0]
    assert out.levels == 1 and out.score == 1.0 and out.reward == pytest.approx(0.75)
    step = out.episode.steps[0]
    assert step.worker == "conductor" and step.meta["depth"] == 1 and step.reply.cost > 0
    assert "conductor" not in prompts_seen[0].split("Question:")[0]  # depth 1 may not recurse again

    # the nested policy tries to recurse again: beyond the limit it is unparsable -> wrong answer
    r2 = WorkflowReward(env, generate=lambda ps: [wf_text("conductor")])
    out2 = asyncio.run(r2.score_batch([wf_text("conductor")], [arith.id], [env.workers]))[0]
    assert out2.parsed and out2.score == 0.0 and out2.reward == pytest.approx(0.5 * 0.75)
    # recursion off: the conductor is not a valid worker
    env3, _ = toy_env()
    env3.add_items(items)
    assert WorkflowReward(env3)([""], [wf_text("conductor")], item_id=[arith.id]) == [0.0]


def test_adaptive_pool_subsets_are_within_bounds():
    import random
    env, _ = toy_env(**{"pool.subset": "[1, 2]"})
    rng = random.Random(0)
    sizes = {len(env.sample_workers(rng)) for _ in range(50)}
    assert sizes == {1, 2}
    rows = env.dataset_rows(ToyTask().load(limit=4), seed=0)
    for row in rows:
        listed = row["prompt"].split("Question:")[0]
        assert all(f"- {w}" in listed for w in row["workers"])
        assert all(f"- {w}" not in listed for w in set(env.workers) - set(row["workers"]))
    assert isinstance(ConductorConfig().grpo["seed"], int)


def test_ablation_configs_inherit_from_their_base():
    one = load_config("configs/conductor/ablate_one_worker.yaml")
    demo = load_config("configs/conductor/demo.yaml")
    assert one.workflow.force_worker == "gamma" and one.policy == demo.policy and one.name != demo.name
    assert load_config("configs/conductor/ablate_random_pool.yaml").pool.subset == [2, 3]
    assert load_config("configs/conductor/ablate_recursion.yaml").recursion.enabled


def test_run_ablation_rows(monkeypatch, tmp_path):
    import json

    import conductor.ablate as ab

    def fake_train(cfg, out, progress=True):
        acc = 0.3 if cfg.workflow.force_worker else 0.9
        return {"eval_before": {"accuracy": 0.33}, "eval_after": {"accuracy": acc, "mean_reward": 0.5 + acc / 2,
                                                                  "parse_rate": 1.0}}
    monkeypatch.setattr(ab, "train", fake_train)
    rows = ab.run_ablation(["configs/conductor/demo.yaml", ("configs/conductor/demo.yaml", ["workflow.force_worker=beta"])],
                           tmp_path)
    assert [r["accuracy"] for r in rows] == [0.9, 0.3] and rows[1]["overrides"] == ["workflow.force_worker=beta"]
    assert rows[0]["eval_before_accuracy"] == 0.33 and rows[0]["checkpoint"].endswith("conductor-demo")
    assert json.loads((tmp_path / "conductor_ablation.json").read_text()) == rows


def test_ablate_script_writes_the_conductor_table(monkeypatch, tmp_path):
    import importlib.util
    from pathlib import Path

    import conductor.ablate as ab

    def fake_train(cfg, out, progress=True):
        acc = 0.25 if cfg.workflow.force_worker else 0.75
        return {"eval_before": {"accuracy": 0.5}, "eval_after": {"accuracy": acc, "mean_reward": 0.5 + acc / 2,
                                                                 "parse_rate": 1.0, "mean_steps": 1.0}}
    monkeypatch.setattr(ab, "train", fake_train)
    spec = importlib.util.spec_from_file_location("ablate", Path(__file__).resolve().parents[1] / "scripts" / "ablate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--conductor", "--base", "configs/conductor/demo.yaml", "--out", str(tmp_path),
                     "configs/conductor/ablate_one_worker.yaml"]) == 0
    table = (tmp_path / "ablations.md").read_text()
    assert "| 0.750 |" in table and "| 0.250 |" in table
