"""One evaluator for every router: episode routers (multi-turn TRINITY, Conductor) are scored by
answering the test questions through `ServingRouter.answer` against a pool, beside baselines scored
on recorded cells; the per-question scores equal those a running server gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from routers.cli import main as baton
from routers.data import load_dataset
from routers.errors import ConfigError
from routers.evaluate import build_routers, evaluate
from routers.pool import load_pool
from routers.serve.app import create_app
from routers.serve.loading import load_serving_routers
from routers.tasks.registry import get_task


@pytest.fixture(scope="module")
def multi_turn_ckpt(tmp_path_factory):
    """A multi-turn TRINITY checkpoint over the simulated pool's six workers (tiny random Llama
    coordinator, random roles head, up to 3 turns)."""
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.coordinator import Coordinator
    from trinity.heads import make_head
    workers = list(load_pool("simulated").names)
    coord = Coordinator("tiny", max_tokens=64)
    head = make_head("linear", len(workers), coord.d)
    head.set_flat(np.random.default_rng(3).standard_normal(head.n_params))
    path = tmp_path_factory.mktemp("ckpt") / "trinity-mt"
    save(path, coordinator=coord, head=head, workers=workers, protocol=ProtocolConfig(max_turns=3),
         training={"data": {"train": "unit-test"}}, metrics={}, mean_cost=[0.001] * len(workers))
    return path


@pytest.fixture(scope="module")
def embedded_small():
    ds = load_dataset("embedded")
    test_rows = np.flatnonzero(np.array(ds.splits) == "test")[:30]
    return ds.split("train"), ds.subset(test_rows)


def test_episode_router_scored_beside_baselines_and_equal_to_serving(multi_turn_ckpt, embedded_small, tmp_path):
    train, test = embedded_small
    pool = load_pool("simulated")
    routers = build_routers(f"best-single,knn,trinity={multi_turn_ckpt}", encoder="hashing", pool=pool)
    res = evaluate(routers, train, test, pool=pool, n_boot=200, progress=False)
    t = res["routers"]["trinity"]
    assert t["kind"] == "episodes" and res["routers"]["knn"]["kind"] == "recorded"
    assert 1.0 <= t["turns"] <= 3.0 and t["orchestration_tokens"] > 0
    assert t["cost"] > 0 and t["p_vs_best_baseline"] is not None
    assert t["aiq"] is None and "one operating point" in t["note"]   # no curve, no area
    eval_scores = res["per_query"]["trinity"]["score"]
    assert len(eval_scores) == len(test) and set(eval_scores) <= {0.0, 1.0}

    # the same questions through a running server, graded the same way
    serve_pool = load_pool("simulated")
    served = load_serving_routers([f"trinity={multi_turn_ckpt}"], serve_pool)
    from routers.episode_eval import task_items
    items = task_items(test)
    serve_pool.register(items)
    got = []
    with TestClient(create_app(served, serve_pool, log_path=tmp_path / "log.jsonl")) as c:
        for it in items:
            r = c.post("/v1/chat/completions", json={"model": "trinity",
                                                     "messages": [{"role": "user", "content": it.prompt}]})
            assert r.status_code == 200, r.text
            got.append(get_task(it.task).grade(r.json()["choices"][0]["message"]["content"], it))
    assert got == eval_scores


def test_episode_router_needs_a_pool(multi_turn_ckpt):
    with pytest.raises(ConfigError, match="--pool"):
        build_routers(f"trinity={multi_turn_ckpt}")


def test_baton_eval_cli_prints_episodes_beside_baselines(multi_turn_ckpt, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = baton(["eval", "--data", "embedded", "--pool", "simulated", "--encoder", "hashing", "--bootstrap", "100",
                "--routers", f"random,best-single,trinity={multi_turn_ckpt}", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "episodes" in printed and "recorded" in printed and "test set:" in printed
    res = json.loads(out.read_text())
    assert res["routers"]["trinity"]["kind"] == "episodes"
    assert len(res["per_query"]["trinity"]["score"]) == res["n_test"] == len(res["per_query"]["ids"])
