"""Baseline routers on a synthetic pool where the right model depends on the query's topic."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from routers.baselines.base import Router
from routers.data.schema import RoutingDataset
from routers.errors import CheckpointError, ConfigError, DataError
from routers.registry import BASELINES, baseline_class, load_checkpoint

TOPICS = {
    "math": "integral derivative equation algebra sum number prime",
    "code": "python function compile loop variable array bug",
    "history": "empire war king century treaty revolution dynasty",
}
FILLER = "the a of please explain why what is how does this that some".split()
MODELS = ["cheap-math", "mid-code", "pricey-history"]
PRICE = np.array([1.0, 2.0, 4.0]) * 1e-4
ENC = "hashing:256"
LEARNED = ["knn", "mlp", "mf", "sw-elo", "cascade"]


def make_dataset(n: int = 600, seed: int = 0, responses: bool = False) -> RoutingDataset:
    """Model j is right 90% of the time on its own topic, 30% elsewhere (the priciest 40%): best single
    is the priciest at ~0.57, topic routing ~0.9."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    cats, prompts, scores, resp = [], [], [], []
    for i in range(n):
        t = rng.integers(3)
        words = rng.choice(TOPICS[topics[t]].split(), 3).tolist() + rng.choice(FILLER, 4).tolist()
        rng.shuffle(words)
        prompts.append(f"q{i} " + " ".join(words))
        cats.append(topics[t])
        p = np.where(np.arange(3) == t, 0.9, [0.3, 0.3, 0.4])
        s = (rng.random(3) < p).astype(float)
        scores.append(s)
        # a response says nothing of its own correctness (no "correct"/"mistaken" words): the cascade's
        # scorer must learn from the query and answer text as a real one would, not read the label
        resp.append([f"the answer to q{i} is option {'ABCD'[rng.integers(4)]}" for _ in s])
    splits = ["train"] * int(n * 0.6) + ["validation"] * int(n * 0.2)
    splits += ["test"] * (n - len(splits))
    return RoutingDataset(ids=[str(i) for i in range(n)], prompts=prompts, categories=cats, splits=splits,
                          models=list(MODELS), scores=np.array(scores), costs=np.tile(PRICE, (n, 1)),
                          responses=resp if responses else None, name="synthetic")


@pytest.fixture(scope="module")
def data():
    ds = make_dataset(responses=True)
    return ds.split("train"), ds.split("validation"), ds.split("test")


@pytest.fixture(scope="module")
def fitted(data):
    train, val, test = data
    out = {}
    for name in LEARNED + ["best-single", "oracle", "random"]:
        r = baseline_class(name)(encoder=ENC) if name in LEARNED else baseline_class(name)()
        r.fit(train, val)
        out[name] = r
    out["oracle"].fit_oracle(test)
    out["cascade"].attach_responses(test)
    return out


def accuracy(router: Router, test: RoutingDataset, lam: float = 0.0) -> float:
    ch = router.route(test.prompts, lam, test.categories)
    return float(test.scores[np.arange(len(test)), ch].mean())


def test_registry_paths_resolve():
    for name in BASELINES:
        cls = baseline_class(name)
        assert issubclass(cls, Router) and cls.name == name


@pytest.mark.parametrize("name", LEARNED)
def test_learned_router_beats_best_single(fitted, data, name):
    test = data[2]
    best = accuracy(fitted["best-single"], test)
    acc = accuracy(fitted[name], test)
    assert acc >= best + 0.15, (name, acc, best)
    q = fitted[name].predict_quality(test.prompts)
    assert q.shape == (len(test), 3) and np.all((q >= 0) & (q <= 1))


def test_simple_routers(fitted, data):
    train, _, test = data
    best_col = int(np.argmax(train.scores.mean(0)))
    assert set(fitted["best-single"].route(test.prompts)) == {best_col}
    oracle_acc = accuracy(fitted["oracle"], test)
    assert oracle_acc == pytest.approx(float(test.scores.max(1).mean()))
    assert oracle_acc > accuracy(fitted["knn"], test)
    with pytest.raises(DataError, match="fit_oracle"):
        fitted["oracle"].predict_quality(["never seen"])
    # random: reproducible per prompt whatever the batch, and usable unfitted
    r = baseline_class("random")(models=MODELS, seed=3)
    a = r.route(test.prompts)
    b = np.concatenate([r.route(test.prompts[:7]), r.route(test.prompts[7:])])
    assert np.array_equal(a, b) and len(set(a.tolist())) == 3
    assert sorted(r.rank("hello")) == sorted(MODELS)


def test_knn_tunes_k_on_validation(fitted):
    k = fitted["knn"].params["k"]
    assert k in (5, 10, 20, 50, 100) and len(fitted["knn"].params["k_validation_accuracy"]) == 5


@pytest.mark.parametrize("name", LEARNED + ["best-single", "oracle", "random"])
def test_save_load_round_trip(fitted, data, tmp_path, name):
    test = data[2]
    r = fitted[name]
    r.save(tmp_path / name)
    r2 = load_checkpoint(tmp_path / name)
    assert type(r2) is type(r) and r2.models == r.models and r2.fitted
    if name == "oracle":
        r2.fit_oracle(test)
    if name == "cascade":
        r2.attach_responses(test)
    np.testing.assert_array_equal(r2.predict_quality(test.prompts), r.predict_quality(test.prompts))
    np.testing.assert_array_equal(r2.predict_cost(test.prompts), r.predict_cost(test.prompts))
    for lam in (0.0, 1e3):
        np.testing.assert_array_equal(r2.route(test.prompts, lam), r.route(test.prompts, lam))


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        baseline_class("knn").load(tmp_path)
    baseline_class("random")(models=MODELS).save(tmp_path / "r")
    with pytest.raises(CheckpointError, match="router_type 'random', expected 'knn'"):
        baseline_class("knn").load(tmp_path / "r")


@pytest.mark.parametrize("name", ["knn", "mlp", "mf", "sw-elo", "best-single", "cascade"])
def test_lam_sweep_lowers_cost(fitted, data, name):
    r, test = fitted[name], data[2]
    C = test.cost_matrix()
    costs, accs = [], []
    for lam in (0.0, 100.0, 300.0, 1e3, 3e3, 1e4, 1e6):
        ch = r.route(test.prompts, lam)
        costs.append(float(r.realized_cost(ch, C).mean()))
        accs.append(float(test.scores[np.arange(len(ch)), ch].mean()))
    assert all(a >= b - 1e-15 for a, b in zip(costs, costs[1:])), costs
    assert costs[-1] < costs[0], costs
    assert costs[-1] == pytest.approx(PRICE[0])  # at a huge price of cost only the cheapest model is left


def test_cascade_fixture_carries_no_label_in_its_responses():
    ds = make_dataset(n=200, responses=True)
    words = {w for row in ds.responses for r in row for w in r.lower().split()}
    assert not words & {"correct", "mistaken", "wrong", "right", "confident", "unsure"}


def test_cascade_pays_for_every_call(fitted, data):
    r, test = fitted["cascade"], data[2]
    assert [r.models[j] for j in r._order] == MODELS  # cheapest first
    C = test.cost_matrix()
    ch = np.array([0, 1, 2] * (len(test) // 3) + [2] * (len(test) % 3))
    np.testing.assert_allclose(r.realized_cost(ch, C), np.cumsum(PRICE)[ch])
    r.params["threshold"] = 1.01  # never stop early: every model called, the last answer kept
    try:
        ch = r.route(test.prompts)
        assert set(ch.tolist()) == {2}
        assert r.realized_cost(ch, C).mean() == pytest.approx(PRICE.sum())
        r.params["threshold"] = 0.0  # accept the first answer
        assert set(r.route(test.prompts).tolist()) == {0}
    finally:
        r.params["threshold"] = None
    table = r.params["threshold_table"]
    assert r.threshold_for(0.0) == max(table, key=lambda t: (t["accuracy"], -t["cost"]))["threshold"]
    with pytest.raises(DataError, match="attach_responses"):
        r.predict_quality(["a prompt it never saw"])


def test_cascade_without_responses_warns_and_uses_query(data):
    from dataclasses import replace
    train, val, test = data
    strip = lambda d: replace(d, responses=None)  # noqa: E731
    r = baseline_class("cascade")(encoder=ENC)
    with pytest.warns(UserWarning, match="no responses"):
        r.fit(strip(train), strip(val))
    assert r.params["use_responses"] is False
    r.attach_responses(strip(test))
    assert r.predict_quality(test.prompts).shape == (len(test), 3)


def test_rules_router(tmp_path):
    from routers.baselines.rules import RulesRouter
    spec = {"default": "pricey-history", "models": MODELS, "rules": [
        {"name": "code", "model": "mid-code", "keywords": ["python", "function"]},
        {"name": "math", "model": "cheap-math", "regex": r"\bintegral|prime\b"},
        {"name": "short", "model": "cheap-math", "max_chars": 5},
        {"name": "by-cat", "model": "mid-code", "categories": ["code"]}]}
    r = RulesRouter(rules=spec)
    prompts = ["write a Python loop", "an integral please", "hi", "the king and his war", "zzzzzz"]
    cats = [None, None, None, None, "code"]
    assert [r.models[j] for j in r.route(prompts, 0.0, cats)] == \
        ["mid-code", "cheap-math", "cheap-math", "pricey-history", "mid-code"]
    assert r.choose("a python function") == ("mid-code", "code")
    assert r.rank("the king")[0] == "pricey-history"
    r.save(tmp_path / "rules")
    assert load_checkpoint(tmp_path / "rules").choose("an integral") == ("cheap-math", "math")
    acc = accuracy(r.fit(make_dataset(90).split("train")), make_dataset(90).split("test"))
    assert 0 <= acc <= 1


@pytest.mark.parametrize("bad, match", [
    ({"rules": []}, "'default'"),
    ({"default": "a", "rules": [{"name": "r1", "model": "a"}]}, r"rule 0 \('r1'\): no condition"),
    ({"default": "a", "rules": [{"name": "r1", "model": "a", "keywords": "x"}]}, r"rule 0 \('r1'\): field 'keywords'"),
    ({"default": "a", "rules": [{"model": "a", "regex": "("}]}, r"rule 0: field 'regex' is not a valid"),
    ({"default": "a", "rules": [{"name": "x", "model": "a", "keywords": ["k"]},
                                {"name": "len", "model": "a", "min_chars": -1}]}, r"rule 1 \('len'\): field 'min_chars'"),
    ({"default": "a", "rules": [{"name": "r", "model": "b", "keywords": ["k"]}], "models": ["a"]},
     r"rule 0 \('r'\): field 'model' 'b' is not in models"),
    ({"default": "a", "rules": [{"name": "r", "modle": "a"}]}, r"rule 0 \('r'\): unknown field\(s\) \['modle'\]"),
])
def test_rules_validation_errors(bad, match):
    from routers.baselines.rules import RulesRouter
    with pytest.raises(ConfigError, match=match):
        RulesRouter(rules=bad)


def test_rules_example_yaml(tmp_path):
    from pathlib import Path

    from routers.baselines.rules import RulesRouter
    r = RulesRouter.from_yaml(Path(__file__).resolve().parents[1] / "configs/rules/example.yaml")
    assert r.choose("def f(x): return x  # python")[0] == "codegemma-7b"
    assert r.choose("how many apples")[0] == "qwen2.5-7b-instruct"
    (tmp_path / "bad.yaml").write_text("default: [x\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        RulesRouter.from_yaml(tmp_path / "bad.yaml")


def test_single_choice_serving(fitted, data):
    from routers.baselines.serving import SingleChoice
    from routers.pool.base import WorkerReply
    calls = []

    async def call(candidates, messages, params):
        calls.append((candidates, params))
        return WorkerReply(text="42", worker=candidates[0], model=candidates[0], input_tokens=5,
                           output_tokens=1, cost=1e-4, latency_s=0.01)

    sr = SingleChoice(fitted["knn"], name="knn")
    prompt = next(p for p, c in zip(data[2].prompts, data[2].categories) if c == "code")
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    ep = asyncio.run(sr.answer(msgs, call))
    assert len(calls) == 1 and calls[0][1] == {"role": "worker"}
    assert calls[0][0] == fitted["knn"].rank(prompt) and calls[0][0][0] == "mid-code"
    assert ep.answer == "42" and len(ep.steps) == 1 and ep.steps[0].worker == "mid-code"
    assert ep.orchestration_input_tokens == len(prompt.split()) and ep.orchestration_latency_s > 0
    assert ep.cost == pytest.approx(1e-4)
