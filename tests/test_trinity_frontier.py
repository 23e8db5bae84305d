"""TRINITY's cost-quality frontier (trinity.frontier): one `train_route` run writes a family of heads
along cost weights into one checkpoint; `baton eval` sweeps exactly those heads; serving maps lam
onto them (clamped, with a warning, outside the trained range)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from routers.data.schema import RoutingDataset
from routers.errors import ConfigError
from trinity.config import TrinityConfig, apply_overrides


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os
    os.environ.setdefault("BATON_CACHE", str(tmp_path_factory.mktemp("cache")))
    from trinity.coordinator import Coordinator
    return Coordinator("tiny", max_tokens=24, disk_cache=False)


def tradeoff_dataset(n=80):
    """'big' is right on every query at 100x the price of 'small', which is right on 60% of them:
    accuracy per dollar says pay for 'big' at a low cost weight and not at a high one."""
    rng = np.random.default_rng(1)
    prompts = [f"question {i}: {rng.choice(['sum', 'word', 'city', 'date'])} {rng.integers(1000)}" for i in range(n)]
    small = (rng.random(n) < 0.6).astype(float)
    return RoutingDataset(ids=[str(i) for i in range(n)], prompts=prompts, categories=["x"] * n,
                          splits=["train"] * (n - 20) + ["test"] * 20, models=["small", "big"],
                          scores=np.c_[small, np.ones(n)], costs=np.tile([1e-4, 1e-2], (n, 1)))


def cfg(*extra):
    return apply_overrides(TrinityConfig(), ["head.roles=false", "head.kind=selection", "train.wandb=false",
                                             "train.iterations=8", "train.popsize=8", "train.sigma0=0.3",
                                             "train.sampling=expected", "data.validation_fraction=0.2", *extra])


@pytest.fixture(scope="module")
def family(tiny, tmp_path_factory):
    from trinity.train import train_route
    ds = tradeoff_dataset()
    out = tmp_path_factory.mktemp("frontier") / "ckpt"
    m = train_route(cfg("fitness.frontier=[0.2,0.6,3.0]"), ds.split("train"), ds.split("test"), out=out,
                    coordinator=tiny)
    return ds, out, m


def test_one_run_writes_a_family_of_heads_that_trade_accuracy_for_cost(family):
    ds, out, m = family
    conf = json.loads((out / "config.json").read_text())
    lams = conf["frontier"]["lams"]
    # the main head (cost_weight 0) and one head per relative weight, in lam units (per dollar)
    assert lams[0] == 0.0 and len(lams) == 4 and lams == sorted(lams)
    assert np.allclose(np.array(lams[1:]) * conf["frontier"]["reference_cost"], [0.2, 0.6, 3.0])
    costs = [h["train"]["cost"] for h in m["frontier"]]
    assert costs[-1] < 0.5 * costs[0], costs  # the steepest weight stopped paying for 'big'
    assert all(b <= a * 1.05 for a, b in zip(costs, costs[1:])), costs
    accs = [h["train"]["accuracy"] for h in m["frontier"]]
    assert accs[0] > accs[-1]


def test_eval_sweeps_the_trained_heads_and_computes_aiq(family):
    from routers.evaluate import evaluate
    from routers.registry import load_checkpoint
    ds, out, _ = family
    router = load_checkpoint(str(out))
    res = evaluate({"trinity": router}, ds.split("train"), ds.split("test"), n_boot=50)
    row = res["routers"]["trinity"]
    lams = json.loads((out / "config.json").read_text())["frontier"]["lams"]
    assert [p["lam"] for p in row["curve"]] == pytest.approx(lams)
    assert row["aiq"] is not None
    assert row["curve"][-1]["cost"] < row["curve"][0]["cost"]


def test_lam_maps_onto_the_trained_heads_and_is_clamped_outside(family):
    from routers.registry import load_checkpoint
    from trinity.frontier import head_index
    _, out, _ = family
    lams = json.loads((out / "config.json").read_text())["frontier"]["lams"]
    assert head_index(lams, lams[2]) == 2 and head_index(lams, (lams[1] + lams[2]) / 2) == 1
    with pytest.warns(UserWarning, match="outside the trained frontier"):
        assert head_index(lams, lams[-1] * 10) == len(lams) - 1
    router = load_checkpoint(str(out))
    prompts = tradeoff_dataset().prompts[:20]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the range: no warning
        lo, hi = router.route(prompts, 0.0), router.route(prompts, lams[-1])
    assert (np.asarray(router.models)[hi] == "small").sum() > (np.asarray(router.models)[lo] == "small").sum()
    assert router.rank(prompts[0], lams[-1])[0] == router.models[hi[0]]


def test_saved_again_the_family_routes_identically(family, tmp_path):
    from routers.registry import load_checkpoint
    _, out, _ = family
    a = load_checkpoint(str(out))
    a.save(tmp_path / "again")
    b = load_checkpoint(str(tmp_path / "again"))
    prompts = tradeoff_dataset().prompts
    for lam in a.lam_values:
        assert (a.route(prompts, lam) == b.route(prompts, lam)).all()


def test_served_selection_uses_the_head_for_the_requests_lam(family):
    import asyncio

    from routers.pool.base import WorkerReply
    from routers.registry import load_checkpoint
    from trinity.serving import load_router
    _, out, _ = family
    serving = load_router(str(out), serving=True)
    lams = serving.trinity.lams
    prompt = tradeoff_dataset().prompts[0]
    picked = {}

    async def call(ranking, messages, meta):
        picked["ranking"] = ranking
        return WorkerReply(worker=ranking[0], model=ranking[0], text="ok", input_tokens=1, output_tokens=1,
                           cost=0.0, latency_s=0.0)

    fitted = load_checkpoint(str(out))
    for lam in (0.0, lams[-1]):
        asyncio.run(serving.answer([{"role": "user", "content": prompt}], call, lam=lam))
        assert picked["ranking"] == fitted.rank(prompt, lam)


def test_frontier_without_prices_or_with_bad_weights_is_refused(tiny):
    from trinity.train import train_route
    ds = tradeoff_dataset()
    unpriced = RoutingDataset(ids=ds.ids, prompts=ds.prompts, categories=ds.categories, splits=ds.splits,
                              models=ds.models, scores=ds.scores, costs=None)
    with pytest.raises(ConfigError, match="no prices"):
        train_route(cfg("fitness.frontier=[1.0]"), unpriced.split("train"), None, coordinator=tiny)
    with pytest.raises(ConfigError, match="fitness.frontier"):
        train_route(cfg("fitness.frontier=[-1.0]"), ds.split("train"), None, coordinator=tiny)


def test_multi_turn_frontier_trains_serves_and_is_swept_as_episodes(tmp_path, monkeypatch):
    """The protocol's cost penalty gets the same family: one run, roles heads at each weight, the
    served episode follows the request's lam, and the evaluator runs the episodes at every lam."""
    from routers.cli import main
    from routers.evaluate import evaluate
    from routers.pool.config import load_pool
    from routers.record import embedded_dataset
    from trinity.serving import load_router
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "mt"
    assert main(["train", "trinity", "--config", "configs/trinity/demo.yaml", "--out", str(out),
                 "coordinator.model=tiny", "coordinator.max_tokens=32", "data.limit=16", "train.iterations=2",
                 "train.popsize=4", "train.batch_size=8", "train.wandb=false", "fitness.frontier=[1.0,5.0]"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    lams = json.loads((out / "config.json").read_text())["frontier"]["lams"]
    assert len(lams) == 3 and lams[0] == 0.0 and [h["lam"] for h in metrics["frontier"]] == lams
    assert all(h["test"]["turns"] >= 1 for h in metrics["frontier"])
    router = load_router(str(out), serving=True)
    assert router.lam_values == lams
    pool = load_pool("simulated")
    ds = embedded_dataset(0)
    test = ds.split("test").subset(np.arange(12))
    res = evaluate({"trinity": router}, ds.split("train"), test, pool=pool, n_boot=50, progress=False)
    row = res["routers"]["trinity"]
    assert row["kind"] == "episodes" and [p["lam"] for p in row["curve"]] == pytest.approx(lams)
    assert row["aiq"] is not None  # a curve, not one operating point
