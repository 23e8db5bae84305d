"""TRINITY training side: config, fitness, sep-CMA-ES (optimum, determinism, resume), optimizers."""

from __future__ import annotations

import numpy as np
import pytest

from routers.errors import ConfigError, DataError
from trinity.config import FitnessConfig, TrainConfig, apply_overrides, load_config
from trinity.fitness import FitnessResult, SelectionObjective, normalized_entropy
from trinity.heads import make_head
from trinity.optimizers import optimize
from trinity.trainer import STATE_FILE


class Shifted:
    """Synthetic objective: maximize -||x - target||^2 (optimum 0 at target)."""

    def __init__(self, n=12):
        self.n_params = n
        self.target = np.linspace(-0.5, 0.5, n)

    def x0(self):
        return np.zeros(self.n_params)

    def evaluate(self, X, generation, indices):
        return [FitnessResult(fitness=-float(((x - self.target) ** 2).sum()), accuracy=0.0, cost=0.0) for x in X]


def routing_problem(n=400, d=8, L=4, seed=0):
    """Queries whose best worker is a linear function of the features (learnable), plus noise."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, d)).astype(np.float32)
    A = rng.standard_normal((L, d))
    best = (F @ A.T).argmax(1)
    scores = (rng.random((n, L)) < 0.2).astype(float)
    scores[np.arange(n), best] = 1.0
    costs = np.tile(np.linspace(1e-3, 4e-3, L), (n, 1))
    return F, scores, costs, [f"w{j}" for j in range(L)]


def cfg(**kw):
    base = dict(iterations=30, sigma0=0.3, wandb=False, seed=3, repeats=4)
    base.update(kw)
    return TrainConfig(**base)


# -- config ------------------------------------------------------------------------------------
def test_overrides_are_typed_and_errors_name_the_key(tmp_path):
    c = load_config(None, ["train.iterations=7", "fitness.cost_weight=0.5", "protocol.roles=[worker, verifier]"])
    assert c.train.iterations == 7 and c.fitness.cost_weight == 0.5 and c.protocol.roles == ["worker", "verifier"]
    with pytest.raises(ConfigError, match="train.iterations: expected an integer"):
        apply_overrides(c, ["train.iterations=many"])
    with pytest.raises(ConfigError, match="unknown config key train.itrations"):
        apply_overrides(c, ["train.itrations=3"])
    with pytest.raises(ConfigError, match="head.kind"):
        apply_overrides(c, ["head.kind=wide"])
    with pytest.raises(ConfigError, match="protocol.roles.*must include 'worker'"):
        apply_overrides(c, ["protocol.roles=[thinker]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  sigma: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key train.sigma"):
        load_config(bad)


def test_shipped_configs_load():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "configs" / "trinity"
    files = sorted(root.glob("*.yaml")) + sorted(root.glob("ablations/*.yaml"))
    assert {"demo.yaml", "paper.yaml", "route.yaml"} <= {f.name for f in files}
    for f in files:
        load_config(f)
    # an ablation states only its change; everything else comes from its base
    paper, no_thinker = load_config(root / "paper.yaml"), load_config(root / "ablations" / "no_thinker.yaml")
    assert no_thinker.protocol.roles == ["worker", "verifier"]
    assert no_thinker.train == paper.train and no_thinker.coordinator == paper.coordinator


# -- CMA-ES --------------------------------------------------------------------------------------
def test_sep_cmaes_reaches_optimum_of_synthetic_objective():
    obj = Shifted()
    res = optimize(obj, cfg(iterations=150, sigma0=0.3))
    assert np.abs(res.x - obj.target).max() < 1e-3
    assert res.history[-1]["best_fitness"] > -1e-5 > res.history[0]["best_fitness"]


def test_same_seed_same_result_other_seed_differs():
    a = optimize(Shifted(), cfg(iterations=10))
    b = optimize(Shifted(), cfg(iterations=10))
    c = optimize(Shifted(), cfg(iterations=10, seed=4))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_sep_cmaes_ask_tell_by_hand_equals_optimize():
    """The strategy is plain ask/tell (pycma style): a loop written by hand follows optimize's path."""
    from trinity.trainer import SepCMAES
    obj, c = Shifted(), cfg(iterations=8)
    opt = SepCMAES(c, obj.n_params, obj.x0())
    while not opt.done:
        X = opt.ask()
        opt.tell(X, obj.evaluate(X, opt.generation, range(len(X))))
        opt.end_generation()
    by_hand = opt.result(selected=False)
    res = optimize(Shifted(), c)
    np.testing.assert_array_equal(by_hand.x, res.x)
    assert [h["best_fitness"] for h in by_hand.history] == [h["best_fitness"] for h in res.history]
    assert by_hand.evaluations == res.evaluations == 8 * len(X)


def test_resume_equals_uninterrupted(tmp_path):
    F, S, C, W = routing_problem()
    make = lambda: SelectionObjective(make_head("selection", len(W), F.shape[1]), F, S, W, costs=C,  # noqa: E731
                                      repeats=4, batch_size=100, seed=3)
    full = optimize(make(), cfg(iterations=12), out_dir=tmp_path / "full")
    part = optimize(make(), cfg(iterations=12), out_dir=tmp_path / "cut", stop_after=5)
    assert len(part.history) == 5 and (tmp_path / "cut" / STATE_FILE).is_file()
    # a fresh trainer (as in a new process) picks up the saved state
    resumed = optimize(make(), cfg(iterations=12), out_dir=tmp_path / "cut", resume=True)
    np.testing.assert_array_equal(resumed.x, full.x)
    assert [h["best_fitness"] for h in resumed.history] == [h["best_fitness"] for h in full.history]
    with pytest.raises(ConfigError, match="another training config"):
        optimize(make(), cfg(iterations=12, sigma0=0.5), out_dir=tmp_path / "cut", resume=True)


# -- fitness ----------------------------------------------------------------------------------
def test_selection_fitness_terms():
    F, S, C, W = routing_problem(n=50)
    head = make_head("selection", len(W), F.shape[1])
    x = np.zeros(head.n_params)
    x.reshape(len(W), -1)[0] = 0.0
    obj = SelectionObjective(head, F, S, W, costs=C, sampling="expected",
                             fitness=FitnessConfig(cost_weight=100.0, diversity_bonus=0.5))
    r = obj.evaluate(x[None], 0, [0])[0]           # zero head = uniform choice
    assert r.accuracy == pytest.approx(S.mean(), abs=1e-5)
    assert r.cost == pytest.approx(C.mean(), rel=1e-5)
    assert r.diversity == pytest.approx(1.0)
    assert r.fitness == pytest.approx(r.accuracy + 0.5 - 100 * r.cost, abs=1e-5)
    assert normalized_entropy([5, 0, 0]) == 0.0
    with pytest.raises(DataError, match="missing scores"):
        S2 = S.copy(); S2[3, 1] = np.nan  # noqa: E702
        SelectionObjective(head, F, S2, W)


def test_sampled_fitness_is_seeded_per_candidate():
    F, S, C, W = routing_problem(n=80)
    head = make_head("selection", len(W), F.shape[1])
    X = np.random.default_rng(0).standard_normal((3, head.n_params))
    obj = SelectionObjective(head, F, S, W, repeats=8, seed=1)
    all3 = [r.fitness for r in obj.evaluate(X, 5, [0, 1, 2])]
    one = obj.evaluate(X[2:], 5, [2])[0].fitness     # same candidate evaluated alone (another shard)
    assert one == all3[2]


# -- optimizers --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sep-cma-es", "random-search", "reinforce", "sft", "two-stage"])
def test_each_optimizer_learns_the_routing_problem(name):
    F, S, C, W = routing_problem(n=300)
    head = make_head("selection", len(W), F.shape[1])
    obj = SelectionObjective(head, F, S, W, costs=C, repeats=4, seed=0)
    uniform = obj.evaluate(head.init_flat()[None], 0, [0])[0].accuracy
    res = optimize(obj, cfg(optimizer=name, iterations=40, sigma0=0.3, lr=0.05, epochs=100, popsize=16))
    acc = obj.evaluate_argmax(res.x, F, S)["accuracy"]
    assert acc > uniform + 0.2, (name, acc, uniform)


def test_gradient_optimizers_refuse_nonlinear_heads():
    F, S, C, W = routing_problem(n=50)
    head = make_head("lowrank", len(W), F.shape[1], n_roles=0, rank=2)
    obj = SelectionObjective(head, F, S, W)
    with pytest.raises(ConfigError, match="head.kind: linear"):
        optimize(obj, cfg(optimizer="sft"))


def test_validation_early_stopping_returns_best_generation_mean():
    obj = Shifted()
    other = obj.target[::-1].copy()                       # held-out optimum differs from the training one
    score = lambda x: -float(((x - other) ** 2).sum())    # noqa: E731
    res = optimize(obj, cfg(iterations=40), validate=score)
    vals = [h["validation"] for h in res.history]
    assert score(res.x) == pytest.approx(max(vals))
    assert int(np.argmax(vals)) < len(vals) - 1           # it stopped early: later means fit train, not validation


@pytest.mark.parametrize("name", ["sep-cma-es", "random-search", "reinforce", "sft"])
def test_every_optimizer_returns_its_best_point_on_held_out_queries_by_one_rule(name):
    """Fair method selection: the same rule picks the returned point for every optimizer, and the
    point returned is the best the selection score saw over the run (not the last one)."""
    F, S, C, W = routing_problem(n=300)
    head = make_head("selection", len(W), F.shape[1])
    obj = SelectionObjective(head, F[:200], S[:200], W, costs=C[:200], repeats=4, seed=0)
    select = lambda x: obj.evaluate_argmax(x, F[200:], S[200:])["accuracy"]  # noqa: E731
    c = cfg(optimizer=name, iterations=15, lr=0.05, epochs=15, popsize=8)
    res = optimize(obj, c, validate=select)
    assert res.selection["rule"] == "best-validation"
    seen = [h["validation"] for h in res.history if h.get("validation") is not None]
    assert len(seen) == 15 and select(res.x) == pytest.approx(max(seen)) == pytest.approx(res.selection["selection_score"])
    last = optimize(obj, cfg(optimizer=name, iterations=15, lr=0.05, epochs=15, popsize=8, select="last"),
                    validate=select)
    assert last.selection["rule"] == "last" and last.selection["selection_score"] is None
