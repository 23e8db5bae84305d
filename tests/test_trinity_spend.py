"""The spend guard for live pools (trinity.spend): `baton train trinity --estimate` calls nothing
and counts exactly; `train.max_spend_usd` stops episode training between generations against the
stub OpenAI server, and a resumed run with a larger budget ends as an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from routers.cli import main as baton
from routers.errors import ConfigError
from trinity.config import TrinityConfig, apply_overrides

BASE = ["coordinator.model=tiny", "coordinator.max_tokens=24", "head.roles=true", "protocol.max_turns=2",
        "protocol.max_tokens=8", "fitness.diversity_bonus=0.1", "train.wandb=false", "train.iterations=6",
        "train.popsize=4", "train.repeats=1", "train.sigma0=0.5", "data.task=episode", "data.train=mmlu:8",
        "data.validation_fraction=0.25"]


def pool_file(tmp_path, url, name="pool", cache=True, unpriced=False):
    workers = [{"name": "alpha", "backend": "openai", "model": "alpha", "base_url": url, "api_key_env": None,
                "input_price": 1.0, "output_price": 2.0},
               {"name": "beta", "backend": "openai", "model": "beta", "base_url": url, "api_key_env": None,
                "input_price": 5.0, "output_price": 10.0}]
    if unpriced:
        workers.append({"name": "gamma", "backend": "openai", "model": "gamma", "base_url": url, "api_key_env": None})
    cfg = {"name": name, "workers": workers}
    if cache:
        cfg["cache"] = str(tmp_path / f"{name}.sqlite")
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


@pytest.fixture
def no_calls(monkeypatch):
    """Any worker call or coordinator load fails the test."""
    from routers.pool.openai_worker import OpenAIWorker
    from routers.pool.pool import Pool
    from trinity.coordinator import Coordinator

    def boom(*a, **k):
        raise AssertionError("--estimate called a worker or loaded the coordinator")
    monkeypatch.setattr(Pool, "call", boom)
    monkeypatch.setattr(OpenAIWorker, "_chat", boom)
    monkeypatch.setattr(Coordinator, "__init__", boom)


def test_estimate_counts_calls_and_names_unpriced_workers_without_calling(tmp_path, capsys, no_calls):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("{}")
    pool = pool_file(tmp_path, "http://127.0.0.1:9/v1", unpriced=True, cache=False)
    assert baton(["train", "trinity", "--config", str(cfg_file), "--estimate", *BASE, "train.batch_size=4",
                  f"data.pool={pool}"]) == 0
    out = capsys.readouterr().out
    # 6 generations x popsize 4 x batch 4 x repeats 1 x 2 turns + (4 evaluated training + 2 test items) x 2 turns
    assert "worker calls (upper bound): 204 = 6 generations x popsize 4 x batch 4" in out
    assert "12 for the final evaluation" in out and "no response cache" in out
    assert "unpriced workers: gamma" in out and "upper bound ?" in out       # unknown, never $0
    assert baton(["train", "trinity", "--config", str(cfg_file), "--estimate", *BASE, "train.batch_size=4",
                  f"data.pool={pool}", "train.unpriced_cost_usd=0.01"]) == 0
    out = capsys.readouterr().out
    assert "charged $0.01 per call" in out and "upper bound $" in out
    cached = pool_file(tmp_path, "http://127.0.0.1:9/v1", name="cached")
    from trinity.spend import estimate
    e = estimate(apply_overrides(TrinityConfig(), [*BASE, f"data.pool={cached}"]))
    assert e["worker_calls"] == e["worker_calls_with_cache"] == 6 * 4 * 6 * 1 * 2 + (6 + 2) * 2
    # a roles-free head: each item's first turn has 2 distinct calls, so at most 1 + 2 generations miss on it
    e = estimate(apply_overrides(TrinityConfig(), [*BASE, f"data.pool={cached}", "head.roles=false"]))
    assert e["worker_calls_with_cache"] == 6 * (4 * 3 + 4 * 6) + (6 + 2) * 2 < e["worker_calls"]
    assert 0 < e["usd_at_mean_prices"] < e["usd"] and e["usd_with_cache"] < e["usd"]
    assert baton(["train", "trinity", "--config", str(cfg_file), "--estimate", "data.task=route"]) == 0
    assert "0 worker calls" in capsys.readouterr().out


def test_budget_refuses_unpriced_workers_and_a_first_generation_it_cannot_cover(tmp_path, monkeypatch):
    """Both refusals come before any worker call (the coordinator loads; workers may not answer)."""
    from trinity.train import run
    from routers.pool.openai_worker import OpenAIWorker
    from routers.pool.pool import Pool

    def boom(*a, **k):
        raise AssertionError("a worker was called")
    monkeypatch.setattr(Pool, "call", boom)
    monkeypatch.setattr(OpenAIWorker, "_chat", boom)
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    pool = pool_file(tmp_path, "http://127.0.0.1:9/v1", unpriced=True)
    cfg = apply_overrides(TrinityConfig(), [*BASE, f"data.pool={pool}", "train.max_spend_usd=1"])
    with pytest.raises(ConfigError, match=r"no price for worker\(s\) gamma .*train.unpriced_cost_usd"):
        run(cfg, out=tmp_path / "a")
    priced = pool_file(tmp_path, "http://127.0.0.1:9/v1", name="priced")
    cfg = apply_overrides(TrinityConfig(), [*BASE, f"data.pool={priced}", "train.max_spend_usd=1e-9"])
    with pytest.raises(ConfigError, match="does not cover the first generation"):
        run(cfg, out=tmp_path / "b")


def _comparable(out):
    from safetensors.numpy import load_file
    hist = [{k: v for k, v in h.items() if k != "seconds"} for h in json.loads((out / "history.json").read_text())]
    metrics = json.loads((out / "metrics.json").read_text())
    return load_file(str(out / "router.safetensors"))["head"], hist, metrics


def test_budget_stops_between_generations_and_resume_ends_as_uninterrupted(tmp_path, monkeypatch):
    """Acceptance (issue 12 item 5) against the stub OpenAI server: a run stopped by
    train.max_spend_usd, resumed with a larger budget, ends as an uninterrupted run."""
    from routers.pool.stub import start_stub_server
    from trinity.spend import estimate
    from trinity.train import run
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    url, stop = start_stub_server()
    try:
        # 30 training items, 4 a generation: most of each batch is new, so a generation's spend stays high
        pool_a = pool_file(tmp_path, url, "a")
        full = apply_overrides(TrinityConfig(), [*BASE, "data.train=mmlu:40", "train.batch_size=4",
                                                 f"data.pool={pool_a}", "train.max_spend_usd=10"])
        run(full, out=tmp_path / "a")
        head_a, hist_a, m_a = _comparable(tmp_path / "a")
        spend = [h["spend_usd"] for h in hist_a]
        gen = [h["generation_spend_usd"] for h in hist_a]
        assert len(hist_a) == 6 and all(g > 0 for g in gen) and np.allclose(np.cumsum(gen), spend)
        assert all(h["worker_calls"] > 0 and 0 <= h["cache_hit_rate"] <= 1 for h in hist_a)
        assert any(h["cache_hit_rate"] > 0 for h in hist_a[1:])        # first-turn calls repeat across generations
        assert all(h["projected_total_usd"] >= h["spend_usd"] for h in hist_a)
        assert m_a["spend"]["usd"] == pytest.approx(spend[-1] + m_a["spend"]["evaluation_usd"])
        assert m_a["spend"]["stopped"] is None and "train" in m_a and "test" in m_a
        first = estimate(full)["first_generation_usd"]
        assert gen[0] <= first                                          # the projection bounds the first generation
        assert sum(h["worker_calls"] for h in hist_a) <= 6 * 4 * 4 * 2

        # the same run under a budget that covers the first generation's projection and stops later: the
        # guard stops before generation j, the first whose projection (the larger of the last
        # generation's spend and the mean) would take the spend past the budget
        budget = max(first, spend[1]) + 1e-9
        j = next(j for j in range(1, 6) if spend[j - 1] + max(gen[j - 1], np.mean(gen[:j])) > budget)
        k = j - 1
        part = apply_overrides(full, [f"data.pool={pool_file(tmp_path, url, 'b')}", f"train.max_spend_usd={budget}"])
        m_b = run(part, out=tmp_path / "b")
        _, hist_b, _ = _comparable(tmp_path / "b")
        assert len(hist_b) == k + 1 and hist_b == hist_a[:k + 1]          # whole generations only, the same ones
        assert m_b["spend"]["stopped"]["before_generation"] == k + 1 and m_b["spend"]["usd"] <= budget
        assert "train" not in m_b and "not run" in m_b["evaluation"]
        assert (tmp_path / "b" / "trainer_state.pkl").is_file() and (tmp_path / "b" / "router.safetensors").is_file()

        # resumed with the larger budget: the uninterrupted run's head, history, metrics and spend
        resumed = apply_overrides(part, ["train.max_spend_usd=10"])
        run(resumed, out=tmp_path / "b", resume=True)
        head_b, hist_b, m_b = _comparable(tmp_path / "b")
        np.testing.assert_array_equal(head_b, head_a)
        assert hist_b == hist_a
        for key in ("train", "test", "evaluations"):
            assert m_b[key] == m_a[key]
        assert m_b["spend"]["usd"] == pytest.approx(m_a["spend"]["usd"], rel=1e-12)
    finally:
        stop()


def test_route_mode_spends_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    from trinity.train import run
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    rows = [{"question": f"question {i}", "scores": {"a": float(i % 2), "b": 1.0}} for i in range(12)]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    cfg = apply_overrides(TrinityConfig(), ["coordinator.model=tiny", "coordinator.max_tokens=24", "head.roles=false",
                                            "train.wandb=false", "train.iterations=1", "train.popsize=4",
                                            f"data.train={tmp_path / 'train.json'}", "train.max_spend_usd=1"])
    run(cfg, out=tmp_path / "r")
    assert "route replays recorded scores and costs: no worker calls, nothing spent" in capsys.readouterr().out
    assert "spend_usd" not in json.loads((tmp_path / "r" / "history.json").read_text())[0]


def test_meter_and_guard_rules():
    """Cache hits are free, an unpriced worker's spend is unknown unless priced per call, sums do not
    depend on reply order; the guard projects max(last, mean), stops between generations, refuses
    the final evaluation it cannot afford, and an unknown spend under a budget is an error."""
    import asyncio

    from routers.pool.base import WorkerReply
    from trinity.spend import SpendGuard, SpendMeter

    class Pool:
        names = ["a", "free"]

        async def call(self, name, messages, **params):
            return WorkerReply(text="x", worker=name, model=name, input_tokens=1, output_tokens=1,
                               cost=float(params["cost"]), latency_s=0.0, cached=params.get("hit", False))

    async def calls(meter, spec):
        for name, cost, hit in spec:
            await meter.call(name, [], cost=cost, hit=hit)
    m = SpendMeter(Pool(), ["free"])
    asyncio.run(calls(m, [("a", 0.1, False), ("a", 0.2, False), ("a", 5.0, True)]))
    assert m.take() == (3, 1, pytest.approx(0.3)) and m.take() == (0, 0, 0.0)
    asyncio.run(calls(m, [("a", 0.1, False), ("free", 0.0, False)]))
    assert m.take()[2] is None                                      # unknown, never $0
    m = SpendMeter(Pool(), ["free"], unpriced_cost=0.5)
    asyncio.run(calls(m, [("free", 0.0, False)] + [("a", 0.1, False)] * 10))
    assert m.take()[2] == 1.5                        # exact (fsum): a running sum gives 1.5000000000000002

    class Meter:
        def __init__(self, usd):
            self.usd = list(usd)

        def take(self):
            return (10, 2, self.usd.pop(0)) if self.usd else (0, 0, 0.0)
    g = SpendGuard(Meter([0.0, 1.0, 3.0, 2.0]), 7.5, iterations=5, first_generation_usd=1.5, eval_usd=9.0,
                   episodes_per_generation=10, eval_episodes=5)
    g.resume([])
    assert not g.stop_before(0) and g.generation_row(0)["spend_usd"] == 1.0
    assert not g.stop_before(1)                                      # 1 + max(1, 1) <= 7.5
    row = g.generation_row(1)
    assert row == {"spend_usd": 4.0, "generation_spend_usd": 3.0, "worker_calls": 10, "cache_hit_rate": 0.2,
                   "projected_total_usd": 4.0 + 3 * 3.0 + 3.0 / 10 * 5}
    assert not g.stop_before(2)                                      # 4 + max(3, 2) = 7 <= 7.5
    g.generation_row(2)
    assert g.stop_before(3) and g.stopped["before_generation"] == 3  # 6 + max(2, 2) = 8 > 7.5
    assert "training stopped" in g.refuses_evaluation(5)
    g = SpendGuard(Meter([]), 6.1, iterations=3, first_generation_usd=1.0, eval_usd=1.0, episodes_per_generation=10,
                   eval_episodes=20)
    g.resume([{"spend_usd": 2.0, "generation_spend_usd": 2.0}, {"spend_usd": 6.0, "generation_spend_usd": 4.0}])
    assert g.spent == 6.0 and "would pass" in g.refuses_evaluation(20)   # 20 episodes x $0.4 > $0.1 left
    g = SpendGuard(Meter([0.0, None]), 100.0, iterations=3, first_generation_usd=1.0, eval_usd=1.0,
                   episodes_per_generation=10, eval_episodes=1)
    g.resume([])
    g.generation_row(0)
    with pytest.raises(ConfigError, match="spend so far is unknown"):
        g.stop_before(1)
