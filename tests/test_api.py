"""`import baton`: the issue-14 snippet runs as written (with the tiny coordinator for speed), the
trainer returns a router that round-trips through save_pretrained / from_pretrained, and
`baton.evaluate` gives `baton eval`'s numbers."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

import baton
from routers.errors import CheckpointError

TINY = {"coordinator.model": "tiny", "train.iterations": 3, "train.popsize": 4, "data.limit": 80}


@pytest.fixture(scope="module")
def ds():
    return baton.load_dataset("embedded")


@pytest.fixture(scope="module")
def trained(ds, tmp_path_factory):
    router = baton.train_trinity("route", data=ds, **TINY)
    path = tmp_path_factory.mktemp("api") / "t1"
    router.save_pretrained(path)
    return router, path


def test_config_defaults_run_as_given():
    from conductor.config import ConductorConfig
    from trinity.config import TrinityConfig
    cfg = TrinityConfig().validate()
    assert cfg.data.task == "route" and not cfg.head.roles   # the default task's head: no roles conflict
    assert cfg.train.wandb is False and ConductorConfig().train.wandb is False


def test_train_trinity_returns_the_trained_router(trained, ds):
    router, path = trained
    assert isinstance(router, baton.TrinityRouter)
    ranked = router.route("What is the capital of Peru?")
    assert sorted(ranked) == sorted(ds.models)           # every worker, best first
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["training"]["train"]["iterations"] == 3 and cfg["training"]["data"]["train"] == "embedded"
    assert cfg["metrics"]["train"]["n"] == 80             # data.limit applied to the dataset passed in
    for f in ("config.json", "router.safetensors", "README.md"):
        assert stat.S_IMODE(os.stat(path / f).st_mode) & 0o044 == 0o044, f   # readable by group/others


def test_from_pretrained_routes_identically_and_answers(trained, ds):
    router, path = trained
    loaded = baton.TrinityRouter.from_pretrained(path)
    prompts = list(ds.split("test").prompts[:100])
    np.testing.assert_array_equal(loaded.predict_quality(prompts), router.predict_quality(prompts))
    assert [loaded.route(p) for p in prompts[:20]] == [router.route(p) for p in prompts[:20]]
    assert type(baton.from_pretrained(path)) is baton.TrinityRouter   # the generic entry reads the kind
    pool = baton.load_pool("simulated")
    ep = loaded.answer([{"role": "user", "content": "2+2?"}], pool=pool)
    assert ep.answer and ep.steps[0].worker == ep.steps[0].candidates[0] and ep.cost > 0


def test_model_card_metadata(trained):
    from huggingface_hub import ModelCard
    router, path = trained
    card = ModelCard.load(path / "README.md")
    meta = card.data.to_dict()["baton"]
    assert meta["workers"] == router.trinity.workers                    # head order
    assert meta["coordinator"]["model"] == "tiny" and meta["coordinator"]["fingerprint"]
    assert meta["training_data"]["train"] == "embedded" and meta["metrics"]["train"]["n"] == 80
    assert "## Limitations" in card.text and "More information needed" not in card.content


def test_from_pretrained_refuses_another_kind_and_missing(trained, tmp_path):
    _, path = trained
    with pytest.raises(CheckpointError, match="a 'trinity' checkpoint, not 'knn'"):
        baton.baselines.KNN.from_pretrained(path)
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        baton.TrinityRouter.from_pretrained(str(tmp_path / "nope"))
    bad = tmp_path / "v9"
    bad.mkdir()
    cfg = json.loads((path / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "format_version": 9}))
    with pytest.raises(CheckpointError, match=r"config.json: format_version 9"):
        baton.TrinityRouter.from_pretrained(bad)


def test_evaluate_gives_baton_eval_numbers(ds, tmp_path):
    from routers.cli import main
    out = tmp_path / "eval.json"
    assert main(["eval", "--data", "embedded", "--routers", "knn", "--bootstrap", "200", "--json", str(out)]) == 0
    cli = json.loads(out.read_text())["routers"]["knn"]
    api = baton.evaluate({"knn": baton.baselines.KNN()}, ds, n_boot=200)["routers"]["knn"]
    # fitted by the user the way `baton eval` fits it (train split, k tuned on validation): same numbers
    knn = baton.baselines.KNN().fit(ds.split("train"), ds.split("validation"))
    fitted = baton.evaluate({"knn": knn}, ds, n_boot=200)["routers"]["knn"]
    for k in ("accuracy", "cost", "aiq", "apgr", "accuracy_ci", "p_vs_best_single"):
        assert api[k] == cli[k] == fitted[k], k


def test_baseline_round_trip(ds, tmp_path):
    knn = baton.baselines.KNN().fit(ds.split("train"))
    knn.save_pretrained(tmp_path / "knn")
    again = baton.baselines.KNN.from_pretrained(tmp_path / "knn")
    prompts = list(ds.split("test").prompts[:100])
    np.testing.assert_array_equal(again.predict_quality(prompts), knn.predict_quality(prompts))
    assert again.route(prompts[0]) == knn.route(prompts[0])
    assert again.training_data == {"name": "embedded", "n": knn.training_data["n"], "validation_n": None}


def test_train_trinity_from_a_spec_keeps_its_output(tmp_path):
    router = baton.train_trinity("route", data="embedded", out=tmp_path / "t", **TINY)
    assert isinstance(router, baton.TrinityRouter) and (tmp_path / "t" / "metrics.json").is_file()
    assert json.loads((tmp_path / "t" / "config.json").read_text())["training"]["data"]["limit"] == 80


def test_evaluate_takes_names_and_specs(trained):
    _, path = trained
    report = baton.evaluate({"best": "best-single", "t": str(path)}, "embedded", n_boot=50)
    assert set(report["routers"]) == {"best", "t"}
    assert report["routers"]["best"]["accuracy"] == pytest.approx(report["best_single"]["accuracy"], abs=0.05)


def test_conductor_answers_synchronously_through_a_pool(tmp_path):
    """`baton.ConductorRouter.from_pretrained(...).answer(messages, pool=pool)` is one synchronous
    episode, the same one the served (awaited) path gives for the same calls: the policy writes a
    workflow (greedy), the pool's workers run it."""
    import asyncio

    from conductor.checkpoint import save_conductor
    from conductor.config import load_config
    from conductor.env import ConductorEnv
    from conductor.policy import Generation, load_policy
    from routers.errors import ConfigError
    from routers.pool.pool import Pool
    from routers.serving_router import pool_call
    pool = baton.load_pool("simulated")
    cfg = load_config(None)
    model, tok = load_policy(cfg.policy.model)
    path = save_conductor(model, tok, ConductorEnv.from_config(cfg, pool=pool), tmp_path / "c1")
    f = path / "conductor_config.json"   # a short workflow keeps greedy generation fast on a CPU
    f.write_text(json.dumps({**json.loads(f.read_text()), "max_new_tokens": 12}))
    conductor = baton.ConductorRouter.from_pretrained(path)
    assert conductor.workers == pool.names
    msgs = [{"role": "user", "content": "2+2?"}]
    ep = conductor.answer(msgs, pool=pool)            # the (untrained) policy's own workflow, or its fallback
    served = asyncio.run(conductor.answer(msgs, pool_call(pool)))
    assert ep.answer and ep.steps and all(s.worker in pool for s in ep.steps)
    assert ep.orchestration_input_tokens > 0 and ep.orchestration_output_tokens > 0
    assert ep.meta.get("conductor_output") == served.meta.get("conductor_output")
    assert ep.answer == served.answer and [s.worker for s in ep.steps] == [s.worker for s in served.steps]
    # a policy that writes a valid two-step workflow: both steps are pool calls, the last one answers
    a, b = pool.names[0], pool.names[-1]
    conductor.generator = lambda prompts: [Generation(
        f'model_id = ["{a}", "{b}"]\nsubtasks = ["solve", "check"]\naccess_list = [[], [0]]', 40, 12, 0.01)]
    ep = conductor.answer(msgs, pool=pool)
    assert [s.worker for s in ep.steps] == [a, b] and "parse_error" not in ep.meta
    assert ep.answer == ep.steps[-1].reply.text and ep.cost > 0
    assert (ep.orchestration_input_tokens, ep.orchestration_output_tokens) == (40, 12)
    with pytest.raises(ConfigError, match=f"lacks worker.*{a}"):
        conductor.answer(msgs, pool=Pool([pool[b]]))          # a pool without the first worker
    with pytest.raises(ConfigError, match="not both"):
        conductor.answer(msgs, pool_call(pool), pool=pool)
