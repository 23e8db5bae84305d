"""Conductor training: one tiny GRPO step on CPU that saves and resumes, the checkpoint round trip
into a ServingRouter, the ablation helper and the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest

from conductor.config import load_config
from conductor.policy import Generation
from routers.errors import CheckpointError, ConfigError
from routers.pool.base import WorkerReply

TINY = ["policy.model=tiny", "grpo.max_completion_length=8", "grpo.max_steps=1", "train.prompts_per_step=1",
        "grpo.num_generations=2", "grpo.save_steps=1", "train.wandb=false", "grpo.learning_rate=1e-3",
        "data.train_limit=4", "data.eval_limit=3", "workflow.max_steps=2", "prompt.prefill='model_id = [\"'"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conductor.train import train
    out = tmp_path_factory.mktemp("cond")
    s = train(load_config(None, TINY), out, progress=False)
    return out, s


def test_grpo_step_saves_and_resumes(trained):
    from conductor.train import train
    out, s = trained
    assert (out / "trainer" / "checkpoint-1").is_dir()
    assert [c["step"] for c in s["curve"]] == [1] and 0.0 <= s["curve"][0]["reward"] <= 1.0
    assert 0.0 <= s["curve"][0]["parse_rate"] <= 1.0  # unparsable rollouts are counted in the trainer's log
    assert json.loads((out / "reward_curve.json").read_text()) == s["curve"]
    assert (out / "reward_curve.png").stat().st_size > 0 and s["eval_after"]["n"] == 3
    s2 = train(load_config(None, TINY + ["grpo.max_steps=2"]), out, resume=True, progress=False)
    assert s2["resumed_from"].endswith("checkpoint-1")
    assert (out / "trainer" / "checkpoint-2").is_dir() and [c["step"] for c in s2["curve"]][-1] == 2


@pytest.mark.slow
def test_worker_failures_during_training_never_crash_the_run(tmp_path):
    """Every rollout's workflow is the prefilled one-step `gamma` workflow; gamma raises on the
    arithmetic items (an exception no worker should raise). The run finishes, the failed rollouts
    are unscorable (no reward, no 0) and counted, the others are scored."""
    from conductor.env import ConductorEnv
    from conductor.toy import ToyPool, ToyTask
    from conductor.train import train

    class Flaky(ToyPool):
        async def call(self, worker, messages, **params):
            if self.items[params["item_id"]].category == "arithmetic":
                raise RuntimeError("connection reset by peer")
            return await super().call(worker, messages, **params)

    prefill = 'model_id = ["gamma"]\nsubtasks = ["Answer."]\naccess_list = [[]]\n'
    cfg = load_config(None, TINY + ["grpo.max_steps=2", "train.prompts_per_step=2", "data.eval_limit=3",
                                    "grpo.save_steps=100", f"prompt.prefill={json.dumps(prefill)}"])
    s = train(cfg, tmp_path / "out", env=ConductorEnv(cfg, Flaky(), ToyTask()), progress=False)
    rates = [c["worker_failure_rate"] for c in s["curve"]]
    assert len(rates) == 2 and 0 < sum(rates) / 2 < 1 and all(c["parse_rate"] == 1.0 for c in s["curve"])
    e = s["eval_after"]   # 3 held-out items, one of each category
    assert e["n"] == 3 and e["worker_failure_rate"] == pytest.approx(1 / 3) and e["parse_rate"] == 1.0
    assert e["accuracy"] == 0.0 and e["mean_reward"] == pytest.approx(0.5)  # gamma is wrong on the other two


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    from conductor.train import train
    with pytest.raises(ConfigError, match="no trainer checkpoint"):
        train(load_config(None, TINY), tmp_path / "empty", resume=True, progress=False)


def test_checkpoint_round_trip_into_serving_router(trained):
    from conductor.checkpoint import ConductorRouter, load_router
    from conductor.toy import ToyPool
    from routers.checkpoint import read_checkpoint_type
    from routers.registry import load_checkpoint

    out, _ = trained
    assert read_checkpoint_type(out) == "conductor"
    cfg = json.loads((out / "conductor_config.json").read_text())
    assert cfg["router_type"] == "conductor" and list(cfg["workers"]) == ["alpha", "beta", "gamma"]
    router = load_checkpoint(out, serving=True, pool=ToyPool(), name="cond")
    assert isinstance(router, ConductorRouter) and router.name == "cond" and router.workers == ["alpha", "beta", "gamma"]
    calls = []

    async def call(cands, messages, params):
        calls.append((cands, messages[0]["content"]))
        return WorkerReply(text=f"ans-{cands[0]}", worker=cands[0], model=cands[0], input_tokens=5,
                           output_tokens=2, cost=0.001, latency_s=0.0)

    msgs = [{"role": "user", "content": "What is 2 + 2?"}]
    # the (nearly random) policy's own output: parsed, or the recorded fallback to the first worker
    ep = asyncio.run(router.answer(msgs, call))
    assert ep.orchestration_input_tokens > 0 and ep.orchestration_output_tokens > 0
    assert "parse_error" in ep.meta or "workflow" in ep.meta
    if "parse_error" in ep.meta:
        assert ep.meta["fallback"] == "alpha" and ep.answer == "ans-alpha"
    # a policy that writes a valid two-step workflow: executed through the caller's CallFn
    router.generator = lambda prompts: [Generation('beta", "gamma"]\nsubtasks = ["solve", "check"]\naccess_list = [[], [0]]',
                                                   40, 12, 0.01)]
    calls.clear()
    ep = asyncio.run(router.answer(msgs, call))
    assert ep.answer == "ans-gamma" and [s.worker for s in ep.steps] == ["beta", "gamma"]
    assert (ep.orchestration_input_tokens, ep.orchestration_output_tokens) == (40, 12)
    assert "<Agent 0 response>\nans-beta\n</Agent 0 response>" in calls[1][1]
    assert ep.trace()["orchestration"]["output_tokens"] == 12

    # recursion: the top workflow hands its step to the Conductor itself, which writes a nested one
    router.recursion = {"enabled": True, "max_depth": 1, "name": "conductor"}

    def gen(prompts):
        top = "- conductor: yourself" in prompts[0]
        text = 'conductor"]\nsubtasks = ["delegate"]\naccess_list = [[]]' if top else \
            'gamma"]\nsubtasks = ["solve"]\naccess_list = [[]]'
        return [Generation(text, 30, 10, 0.01)]
    router.generator = gen
    ep = asyncio.run(router.answer(msgs, call))
    assert ep.answer == "ans-gamma" and ep.steps[0].worker == "conductor" and ep.steps[0].meta["depth"] == 1
    assert ep.orchestration_output_tokens == 10 and ep.steps[0].reply.output_tokens == 2 + 10
    assert ep.steps[0].reply.meta["nested"]["steps"][0]["worker"] == "gamma"

    class Small:
        names = ["alpha"]
    with pytest.raises(CheckpointError, match="beta"):
        load_router(out, pool=Small())
    (out / "conductor_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="format_version"):
        load_router(out)
    (out / "conductor_config.json").write_text(json.dumps(cfg))


def test_cli_rejects_bad_override(tmp_path):
    from routers.cli import main
    assert main(["train", "conductor", "--config", "configs/conductor/demo.yaml", "--out", str(tmp_path),
                 "train.stepz=3"]) == 2
