"""TRINITY training through the coordinator (tiny random Llama): SVF-mode selection, multi-turn
episodes against a fake pool, and train_route writing a checkpoint that loads back."""

from __future__ import annotations

import numpy as np
import pytest

from routers.data.schema import RoutingDataset
from routers.pool.base import WorkerReply
from trinity.config import TrinityConfig, apply_overrides


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os
    os.environ.setdefault("BATON_CACHE", str(tmp_path_factory.mktemp("cache")))
    from trinity.coordinator import Coordinator
    return Coordinator("tiny", max_tokens=24, disk_cache=False)


def toy_dataset(n=40):
    """Two workers: 'math' solves questions about numbers, 'words' the rest."""
    rng = np.random.default_rng(0)
    prompts, scores = [], []
    for i in range(n):
        if i % 2:
            prompts.append(f"compute {rng.integers(100)} plus {rng.integers(100)}")
            scores.append([1.0, 0.0])
        else:
            prompts.append(f"define the word {['apple', 'river', 'cloud', 'stone'][i % 4]}")
            scores.append([0.0, 1.0])
    return RoutingDataset(ids=[str(i) for i in range(n)], prompts=prompts, categories=["x"] * n,
                          splits=["train"] * (n - 10) + ["test"] * 10, models=["math", "words"],
                          scores=np.array(scores), costs=np.tile([2e-3, 1e-3], (n, 1)))


def route_cfg(*overrides):
    return apply_overrides(TrinityConfig(), ["head.roles=false", "train.wandb=false", "train.iterations=3",
                                             "train.popsize=6", "train.repeats=2", "train.sigma0=0.1",
                                             *overrides])


def test_train_route_writes_a_checkpoint_that_loads(tiny, tmp_path):
    from trinity.checkpoint import load
    from trinity.train import train_route
    ds = toy_dataset()
    cfg = route_cfg()
    m = train_route(cfg, ds.split("train"), ds.split("test"), out=tmp_path / "ck", coordinator=tiny)
    assert set(m["test"]) >= {"accuracy", "cost", "best_single", "oracle"}
    assert (tmp_path / "ck" / "router.safetensors").is_file() and (tmp_path / "ck" / "history.json").is_file()
    model = load(tmp_path / "ck", coordinator=tiny)
    assert model.workers == ["math", "words"] and model.head.n_agents == 2 and model.head.n_roles == 0
    # the restored head routes the test prompts exactly as the training run evaluated them
    from trinity.data import route_texts
    choice = model.agent_logits(route_texts(ds.split("test").prompts)).argmax(1)
    S = ds.split("test").scores
    assert S[np.arange(len(choice)), choice].mean() == pytest.approx(m["test"]["accuracy"])


def test_fixed_seed_route_run_is_deterministic_and_a_straight_line(tmp_path):
    """The same seed gives the same trained head, history and metrics; and the run is one straight
    line: no stage calls back into a module still on the stack, train.py is entered once, the
    ask/tell strategies (trinity.trainer) never call the objective."""
    import json

    from conftest import load_script
    from safetensors.numpy import load_file
    ct = load_script("call_trace")
    runs = []
    for k in range(2):
        report = ct.trace(ct.tiny_route_run(tmp_path / f"r{k}"))
        ck = tmp_path / f"r{k}"
        metrics = json.loads((ck / "metrics.json").read_text())
        metrics.pop("seconds")
        history = [{k2: v for k2, v in h.items() if k2 != "seconds"} for h in json.loads((ck / "history.json").read_text())]
        runs.append((load_file(str(ck / "router.safetensors"))["head"], metrics, history, report))
    (h0, m0, hist0, r0), (h1, m1, hist1, _) = runs
    np.testing.assert_array_equal(h0, h1)
    assert m0 == m1 and hist0 == hist1 and m0["test"]["n"] == 8 and "validation" in m0
    assert r0["callbacks"] == 0, r0["callback_edges"]
    assert r0["visits"]["trinity.train"] == 1
    assert not [e for e in r0["module_edges"] if e.startswith("trinity.trainer ->")]   # strategies: ask/tell only
    assert "trinity.optimizers -> trinity.fitness" in r0["module_edges"]              # the loop joins the two


def test_svf_mode_trains_offsets_and_head(tiny, tmp_path):
    from trinity.train import train_route
    ds = toy_dataset(16)
    cfg = route_cfg("svf.enabled=true", "train.mode=svf", "train.iterations=2", "train.popsize=4")
    before = tiny.features(["user: hello"]).numpy().copy()
    m = train_route(cfg, ds.split("train"), None, out=tmp_path / "svf", coordinator=tiny)
    from safetensors.numpy import load_file
    t = load_file(str(tmp_path / "svf" / "router.safetensors"))
    assert t["svf_offsets"].size == tiny.svf.n_params and np.any(t["svf_offsets"] != 0)
    assert "train" in m
    tiny.svf.restore()
    np.testing.assert_allclose(tiny.features(["user: hello"]).numpy(), before, atol=1e-5)


def test_warm_start_from_a_checkpoint(tiny, tmp_path):
    """train.init_from: a head-only checkpoint starts a head-only or SVF run (offsets at 0); with a
    vanishing step the search stays there. Mismatched workers, heads or SVF are refused."""
    from safetensors.numpy import load_file

    from routers.errors import CheckpointError
    from trinity.train import train_route
    ds = toy_dataset(16)
    train_route(route_cfg(), ds.split("train"), None, out=tmp_path / "a", coordinator=tiny)
    head_a = load_file(str(tmp_path / "a" / "router.safetensors"))["head"]
    still = ("train.sigma0=1e-12", "train.iterations=1", f"train.init_from={tmp_path / 'a'}")
    train_route(route_cfg(*still), ds.split("train"), None, out=tmp_path / "b", coordinator=tiny)
    np.testing.assert_allclose(load_file(str(tmp_path / "b" / "router.safetensors"))["head"], head_a, atol=1e-9)
    try:
        m = train_route(route_cfg("svf.enabled=true", "train.mode=svf", "train.popsize=4", "data.validation_fraction=0.25",
                                  *still), ds.split("train"), None, out=tmp_path / "c", coordinator=tiny)
        t = load_file(str(tmp_path / "c" / "router.safetensors"))
        np.testing.assert_allclose(t["head"], head_a, atol=1e-9)
        assert np.abs(t["svf_offsets"]).max() < 1e-9 and "train" in m
        import json
        assert "validation" in json.loads((tmp_path / "c" / "history.json").read_text())[0]   # SVF-mode early stopping
        # the SVF checkpoint's head saw SVF features: a head-only run may not start from it
        before = tiny.features(["user: hello"]).numpy().copy()
        tiny.svf.apply(np.linspace(-0.2, 0.2, tiny.svf.n_params))  # enable_svf must factor the original W
        train_route(route_cfg("svf.enabled=true", "train.mode=svf", "train.popsize=4", "train.iterations=1"),
                    ds.split("train"), None, out=tmp_path / "d", coordinator=tiny)
        tiny.svf.restore()
        np.testing.assert_allclose(tiny.features(["user: hello"]).numpy(), before, atol=1e-5)
    finally:
        tiny.svf.restore()
        tiny.svf = None
    with pytest.raises(CheckpointError, match="trained on SVF-modified features"):
        train_route(route_cfg(f"train.init_from={tmp_path / 'd'}"), ds.split("train"), None, coordinator=tiny)
    with pytest.raises(CheckpointError, match="head .* differs"):
        train_route(route_cfg("head.kind=lowrank", "head.rank=1", f"train.init_from={tmp_path / 'a'}"),
                    ds.split("train"), None, coordinator=tiny)
    other = ds.select_models(["words", "math"])
    with pytest.raises(CheckpointError, match="same workers in the same order"):
        train_route(route_cfg(f"train.init_from={tmp_path / 'a'}"), other.split("train"), None, coordinator=tiny)


def test_route_prices_give_the_checkpoint_real_costs(tiny, tmp_path):
    """data.prices prices a cost-less dataset (as `baton eval --prices`), so the checkpoint's mean
    costs, and the cost-quality curve `baton eval` draws from them, are real."""
    import json

    from routers.errors import ConfigError
    from trinity.config import apply_overrides
    from trinity.train import load_routing_data, train_route
    rows = [{"question": f"question number {i} " + "word " * (i % 7), "scores": {"math": float(i % 2), "words": 1.0}}
            for i in range(30)]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.json").write_text(json.dumps(rows[:24]))
    (tmp_path / "d" / "test.json").write_text(json.dumps(rows[24:]))
    (tmp_path / "prices.json").write_text(json.dumps({"math": {"input_price": 1.0, "output_price": 2.0},
                                                      "words": {"input_price": 10.0, "output_price": 20.0}}))
    cfg = route_cfg(f"data.train={tmp_path / 'd'}", f"data.prices={tmp_path / 'prices.json'}")
    train, test = load_routing_data(cfg)
    train_route(cfg, train, test, out=tmp_path / "ck", coordinator=tiny)
    mc = json.loads((tmp_path / "ck" / "config.json").read_text())["mean_cost"]
    assert mc[1] == pytest.approx(10 * mc[0]) and mc[0] > 0        # priced by tokens, words 10x dearer
    plain = route_cfg(f"data.train={tmp_path / 'd'}")
    train_route(plain, *load_routing_data(plain), out=tmp_path / "ck0", coordinator=tiny)
    assert not any(json.loads((tmp_path / "ck0" / "config.json").read_text())["mean_cost"])   # no prices: no costs
    with pytest.raises(ConfigError, match="embedded dataset carries its recorded costs"):
        load_routing_data(apply_overrides(TrinityConfig(), ["data.prices=x.json"]))


class FakePool:
    """Worker 'good' answers with the item's answer, 'bad' says nothing useful; verifiers accept."""

    names = ["good", "bad"]

    def __init__(self, items):
        self.answers = {it.id: it.answer for it in items}

    async def call(self, worker, messages, **params):
        role = params.get("role")
        if role == "verifier":
            text = "VERDICT: ACCEPT"
        elif role == "thinker":
            text = "[thinker] think harder <suggested_role>worker</suggested_role>"
        else:
            text = f"answer {self.answers[params['item_id']]}" if worker == "good" else "no idea"
        return WorkerReply(text=text, worker=worker, model=worker, input_tokens=10, output_tokens=5,
                           cost=1e-4 if worker == "good" else 1e-5, latency_s=0.0)


def test_episode_objective_runs_population_and_grades(tiny):
    from routers.tasks.base import TaskItem
    from trinity.config import FitnessConfig, ProtocolConfig
    from trinity.episodes import EpisodeObjective
    from trinity.heads import make_head
    from trinity.optimizers import optimize
    from trinity.config import TrainConfig
    items = [TaskItem(id=f"q{i}", prompt=f"what is {i} + 1?", answer=str(i + 1), task="toy", category="toy")
             for i in range(6)]
    grade = lambda text, it: float(text == f"answer {it.answer}")  # noqa: E731
    head = make_head("linear", 2, tiny.d)
    obj = EpisodeObjective(items, FakePool(items), tiny, head, ["good", "bad"], ProtocolConfig(max_turns=2),
                           fitness=FitnessConfig(turn_bonus=0.1), repeats=2, seed=0, grader=grade)
    X = np.zeros((3, obj.n_params))
    W = np.zeros((5, tiny.d))
    F = tiny.features(["user: what is 1 + 1?"]).numpy()[0]
    W[0] = 50 * F / (F @ F)                 # agent 'good'
    W[3] = 50 * F / (F @ F)                 # role 'worker'
    X[2] = W.reshape(-1)
    res = obj.evaluate(X, 0, [0, 1, 2])
    assert res[2].accuracy > res[0].accuracy
    assert res[2].worker_hist.get("good", 0) > 0 and sum(res[2].role_hist.values()) >= 6
    assert res[0].fitness == obj.evaluate(X[:1], 0, [0])[0].fitness  # seeded per candidate
    out = optimize(obj, TrainConfig(iterations=2, popsize=4, repeats=1, sigma0=0.5, wandb=False))
    assert len(out.history) == 2 and out.history[0]["roles"]


@pytest.mark.slow
def test_accelerate_two_processes_match_one(tmp_path, monkeypatch):
    """`accelerate launch --multi_gpu --num_processes 2 scripts/train_trinity.py` on CPU: each rank evaluates half
    the population; the gathered run equals a single-process run with the same seed."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from routers.data import save_jsonl
    from trinity.config import load_config
    from trinity.train import run
    repo = Path(__file__).resolve().parents[1]
    data = tmp_path / "toy.jsonl"
    save_jsonl(toy_dataset(24), data)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"""
coordinator: {{model: tiny, max_tokens: 24}}
head: {{kind: selection, roles: false}}
train: {{popsize: 6, iterations: 3, repeats: 2, sigma0: 0.1, wandb: false, seed: 5}}
data: {{task: route, train: {data}}}
""")
    env = {**os.environ, "BATON_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    launcher = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no",
                           str(repo / "scripts" / "train_trinity.py"), "--config", str(cfg_file),
                           "--out", str(tmp_path / "two")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sharded over 2 processes" in proc.stdout + proc.stderr
    monkeypatch.setenv("BATON_CACHE", env["BATON_CACHE"])
    run(load_config(cfg_file), out=tmp_path / "one")
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    assert [h["best_fitness"] for h in two] == [h["best_fitness"] for h in one]
    from safetensors.numpy import load_file
    np.testing.assert_array_equal(load_file(str(tmp_path / "two" / "router.safetensors"))["head"],
                                  load_file(str(tmp_path / "one" / "router.safetensors"))["head"])
