"""`baton demo` (the main job) end to end at test size: tiny coordinator, a few generations."""

from __future__ import annotations

import json

import pytest

from routers.cli import main
from routers.registry import load_checkpoint


def test_quick_demo_trains_compares_and_writes_a_loadable_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    result = json.loads((out / "demo_result.json").read_text())
    t = result["trinity"]
    assert 0.0 <= t["test"]["accuracy"] <= 1.0 and t["test"]["cost"] > 0
    assert (out / "demo_cost_quality.png").stat().st_size > 10_000  # the plot a person looks at
    assert sum(t["test"]["role_hist"].values()) >= result["n_test"]  # every held-out episode ran
    assert set(result["baselines"]) >= {"random", "best-single", "oracle", "knn", "mlp", "trinity"}
    assert result["baselines"]["oracle"]["accuracy"] >= result["baselines"]["best-single"]["accuracy"]
    router = load_checkpoint(result["checkpoint"])  # what `baton eval --routers trinity=DIR` loads
    q = router.predict_quality(["What is 2+2?"])
    assert q.shape == (1, len(router.models)) and abs(q.sum() - 1) < 1e-5


def test_train_trinity_cli_runs_the_demo_config_on_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "t"
    rc = main(["train", "trinity", "--config", "configs/trinity/demo.yaml", "--out", str(out),
               "coordinator.model=tiny", "coordinator.max_tokens=32", "data.limit=16", "train.iterations=2",
               "train.popsize=4", "train.batch_size=8", "train.wandb=false"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["turns"] >= 1 and (out / "router.safetensors").is_file()


@pytest.mark.slow
def test_demo_at_test_size_beats_uniform_random_routing_by_a_margin_no_stub_reaches(tmp_path):
    """The demo's recipe (SmolLM2 coordinator, head-only sep-CMA-ES, K=2 over the simulated pool) at a
    size CI affords. A router that picks workers uniformly at random gets each held-out question right
    with the pool's mean probability; the trained one must clear that by 10 points and by a one-sided
    binomial test at 1% (a random or untrained head fails both)."""
    from scipy.stats import binom

    from trinity.demo import run_demo

    result = run_demo(str(tmp_path / "demo"), overrides=[
        "data.limit=48", "data.validation_fraction=0.99", "train.iterations=15", "train.popsize=8",
        "train.batch_size=24", "train.wandb=false"])
    n = result["n_test"]
    p_random = result["uniform_random_expected_accuracy"]
    acc = result["trinity"]["test"]["accuracy"]
    correct = round(acc * n)
    assert n >= 40 and 0.5 < p_random < 0.95
    assert acc >= p_random + 0.10, (acc, p_random)
    assert binom.sf(correct - 1, n, p_random) < 0.01  # P(a uniform-random router gets >= this many right)
