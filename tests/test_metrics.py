"""Every metric against numbers worked out by hand in the comments."""

import numpy as np
import pytest

from routers import metrics as M

NAN = float("nan")


def test_accuracy_cost_counts_nan_scores_as_zero_and_reports_them():
    scores = np.array([[1.0, 0.0], [NAN, 1.0], [0.0, 1.0], [1.0, NAN]])
    costs = np.array([[1.0, 10.0], [1.0, 10.0], [2.0, 20.0], [1.0, 10.0]])
    r = M.accuracy_cost(scores, costs, np.array([0, 0, 1, 1]))
    # chosen scores 1, NaN->0, 1, NaN->0 -> 2/4; chosen costs 1, 1, 20, 10 -> 32/4
    assert r == {"accuracy": 0.5, "cost": 8.0, "missing": 2}
    with pytest.raises(ValueError, match="outside"):
        M.accuracy_cost(scores, costs, np.array([0, 0, 2, 1]))
    with pytest.raises(ValueError, match="integer"):
        M.accuracy_cost(scores, costs, np.array([0.0, 0, 1, 1]))


def test_best_single_prefers_the_cheaper_model_on_a_tie():
    scores = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=float)
    costs = np.array([[5, 3, 1]] * 4, dtype=float)
    # accuracies 0.5, 0.5, 0.5: all tie -> cheapest (model 2, cost 1)
    assert M.best_single(scores, costs) == {"index": 2, "accuracy": 0.5, "cost": 1.0}
    scores[3, 0] = 1.0  # model 0 now 0.75
    assert M.best_single(scores, costs)["index"] == 0


def test_oracle_takes_the_cheapest_correct_model_and_the_cheapest_when_none_is_right():
    scores = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0], [NAN, 0, 1]], dtype=float)
    costs = np.array([[3, 2, 1], [3, 2, 1], [3, 2, 1], [3, 2, 5]], dtype=float)
    # q0: models 0,1 right -> 1 (cost 2); q1: 1,2 right -> 2 (cost 1); q2: none -> cheapest 2;
    # q3: only model 2 right even though it is the dearest on this query -> 2 (cost 5)
    o = M.oracle(scores, costs)
    assert o["choice"].tolist() == [1, 2, 2, 2]
    assert o["accuracy"] == 0.75 and o["cost"] == (2 + 1 + 1 + 5) / 4


def test_random_is_the_exact_expectation():
    scores = np.array([[1, 0], [1, 1], [0, NAN]], dtype=float)
    costs = np.array([[1, 3], [1, 3], [2, 6]], dtype=float)
    r = M.random_expected(scores, costs)
    # model means: (1+1+0)/3, (0+1+0)/3 -> (2/3 + 1/3)/2 = 0.5; costs 4/3, 4 -> 8/3
    assert r["accuracy"] == pytest.approx(0.5) and r["cost"] == pytest.approx(8 / 3)


def test_gap_closed():
    assert M.gap_closed(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert M.gap_closed(0.5, 0.6, 0.8) == pytest.approx(-0.5)
    assert np.isnan(M.gap_closed(0.6, 0.6, 0.6))


def test_aiq_on_a_three_point_hull():
    # A(1,.4) B(2,.7) E(2.5,.6) C(3,.8) D(4,.75): E is under the chord B-C (0.75), D comes after
    # the peak C and is lower -> hull A, B, C.
    pts = [(3, 0.8), (1, 0.4), (2.5, 0.6), (4, 0.75), (2, 0.7)]
    hull = M.nondecreasing_convex_hull(pts)
    assert hull.tolist() == [[1, 0.4], [2, 0.7], [3, 0.8]]
    # own max cost 3: area (0.4+0.7)/2 + (0.7+0.8)/2 = 1.3 -> 1.3/3
    assert M.aiq(pts) == pytest.approx(1.3 / 3)
    # shared max cost 4 (another router spends more): + 0.8 * 1 flat -> 2.1/4
    assert M.aiq(pts, max_cost=4) == pytest.approx(2.1 / 4)
    with pytest.raises(ValueError, match="below"):
        M.aiq(pts, max_cost=2)


def test_hull_equals_the_max_over_bracketing_chords_on_random_points():
    """RouterBench raises each point to the best chord above it: check that definition directly."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = np.column_stack([rng.permutation(12).astype(float), rng.random(12)])
        hull = M.nondecreasing_convex_hull(p)
        xs = p[:, 0]
        for x in xs:
            lift = max([y for xx, y in p if xx == x] + [
                np.interp(x, [x1, x2], [y1, y2])
                for x1, y1 in p for x2, y2 in p if x1 < x < x2])
            if x <= hull[-1, 0]:
                assert np.interp(x, hull[:, 0], hull[:, 1]) == pytest.approx(lift)
        assert np.all(np.diff(hull[:, 1]) >= 0)
        assert hull[0, 0] == xs.min()


def _two_model_case():
    # weak W (cheap) right on q0-q4; strong S (dear) right on q0-q2 and q5-q9: W 0.5, S 0.8
    w = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], float)
    s = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], float)
    scores = np.column_stack([w, s])
    costs = np.column_stack([np.full(10, 1.0), np.full(10, 10.0)])
    # a RouteLLM-style sweep: all weak; 5 strong calls (q0-q2 neutral, q5-q6 gained); all strong
    half = np.zeros(10, int)
    half[[0, 1, 2, 5, 6]] = 1
    choices = {0.0: np.ones(10, int), 1.0: half, 2.0: np.zeros(10, int)}
    return scores, costs, choices


def test_apgr_and_cpt_reduce_to_routellm_numbers_with_two_models():
    scores, costs, choices = _two_model_case()
    curve = M.sweep(lambda lam: choices[lam], [0.0, 1.0, 2.0], scores, costs)
    weak = M.cheapest_model(scores, costs)
    best = M.best_single(scores, costs)
    assert weak == 0 and best["index"] == 1
    x = curve.call_share(weak)
    assert x.tolist() == [1.0, 0.5, 0.0] and curve.accuracy.tolist() == [0.8, 0.7, 0.5]
    weak_acc, strong_acc = 0.5, best["accuracy"]
    # RouteLLM in percent: points (0,50) (50,70) (100,80); AUC = trapz over x/100 =
    # 0.5*(50+70)/2 + 0.5*(70+80)/2 = 67.5; weak AUC 50, strong AUC 80 -> (67.5-50)/(80-50) = 7/12
    assert M.apgr(x, curve.accuracy, weak_acc, strong_acc) == pytest.approx(7 / 12)
    # CPT(50%): target 65 between (0,50) and (50,70) -> 50*15/20 = 37.5% of calls
    assert M.cpt(x, curve.accuracy, weak_acc, strong_acc, 0.5) == pytest.approx(0.375)
    # CPT(80%): target 74 between (50,70) and (100,80) -> 50 + 50*4/10 = 70%
    assert M.cpt(x, curve.accuracy, weak_acc, strong_acc, 0.8) == pytest.approx(0.70)
    # same numbers as RouteLLM's np.interp(target, accuracy, share) on this monotone curve
    order = np.argsort(x)
    assert np.interp(0.74, curve.accuracy[order], x[order]) == pytest.approx(0.70)
    # never reaching the target -> NaN, not a clamped 100%
    assert np.isnan(M.cpt([0, 1], [0.5, 0.6], 0.5, 0.8, 0.8))
    assert np.isnan(M.apgr([0, 1], [0.5, 0.8], 0.5, 0.5))


def test_a_curve_that_does_not_span_all_shares_is_completed():
    # points (.2,.6) (.5,.7), weak .5, strong .8 -> (0,.5) (.2,.6) (.5,.7) (1,.7)
    # AUC = .2*(.5+.6)/2 + .3*(.6+.7)/2 + .5*.7 = .11 + .195 + .35 = .655 -> (.655-.5)/.3
    x, y = [0.5, 0.2], [0.7, 0.6]
    assert M.apgr(x, y, 0.5, 0.8) == pytest.approx(0.155 / 0.3)
    # CPT50: target .65 between (.2,.6) and (.5,.7) -> .2 + .3*.05/.1 = .35; CPT80 (.74) never reached
    assert M.cpt(x, y, 0.5, 0.8, 0.5) == pytest.approx(0.35)
    assert np.isnan(M.cpt(x, y, 0.5, 0.8, 0.8))
    # CPT20: target .56 on the completed first segment (0,.5)-(.2,.6) -> .12
    assert M.cpt(x, y, 0.5, 0.8, 0.2) == pytest.approx(0.12)


def test_aiq_of_the_curve_uses_cost_not_call_share():
    scores, costs, choices = _two_model_case()
    curve = M.sweep(lambda lam: choices[lam], [0.0, 1.0, 2.0], scores, costs)
    # costs: all weak 1, half 5.5, all strong 10; hull (1,.5) (5.5,.7) (10,.8)
    # area 4.5*(.5+.7)/2 + 4.5*(.7+.8)/2 = 2.7 + 3.375 = 6.075 -> /10
    assert curve.cost.tolist() == [10.0, 5.5, 1.0]
    assert M.aiq(curve.points()) == pytest.approx(0.6075)


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 2000):
        v = (rng.random(n) < 0.6).astype(float)
        lo, hi = M.bootstrap_ci(v, n_boot=1000, seed=0)
        assert lo <= v.mean() <= hi
        widths.append(hi - lo)
    # the width of a mean's interval scales ~ 1/sqrt(n): 2000/50 = 40 -> ~6x narrower
    assert widths[1] < widths[0] / 4
    # seeded: same result twice; (n, k) input gives one interval per column
    v = rng.random(30)
    assert np.array_equal(M.bootstrap_ci(v, seed=3), M.bootstrap_ci(v, seed=3))
    two = M.bootstrap_ci(np.column_stack([v, 2 * v]), seed=3)
    assert two.shape == (2, 2) and np.allclose(two[1], 2 * two[0])


def test_paired_bootstrap_p_value():
    rng = np.random.default_rng(2)
    base = (rng.random(300) < 0.5).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:60]] = 1.0  # strictly better on 60 queries, never worse
    assert M.paired_bootstrap_p(better, base, n_boot=1000, seed=0) == 0.0
    assert M.paired_bootstrap_p(base, base, n_boot=1000, seed=0) == 1.0
    # better on 5 queries and worse on 5 others: mean difference 0, not significant
    mixed = base.copy()
    mixed[np.flatnonzero(base == 0)[:5]] = 1.0
    mixed[np.flatnonzero(base == 1)[:5]] = 0.0
    assert M.paired_bootstrap_p(mixed, base, n_boot=1000, seed=0) > 0.5


def test_share_and_sweep_shapes():
    assert M.share(np.array([0, 2, 2, 2]), 3).tolist() == [0.25, 0.0, 0.75]
    scores = np.array([[1, 0], [0, 1]], float)
    curve = M.sweep(lambda lam: np.array([0, 0]) if lam > 0 else np.array([0, 1]), [0, 1], scores, None)
    assert curve.accuracy.tolist() == [1.0, 0.5] and np.isnan(curve.cost).all()  # no costs: unknown, not 0
    # a router that pays $1 per query whatever it picks
    curve = M.sweep(lambda lam: np.array([0, 1]), [0], scores, None, paid=lambda ch: np.ones(2))
    assert curve.cost.tolist() == [1.0] and curve.paid.tolist() == [[1.0, 1.0]]


def test_bootstrap_counts_method_is_the_gather_bootstrap():
    """Large n switches to per-resample counts (one matrix product for all columns): the same resamples,
    so the same means as gathering them, to rounding, on a mid-size case forced through both."""
    rng = np.random.default_rng(4)
    n = 3000
    v = np.column_stack([(rng.random(n) < 0.6).astype(float), rng.random(n) * 1e-3, rng.random(n)])
    gather = M.bootstrap_means(v, n_boot=400, seed=7, method="gather")
    counts = M.bootstrap_means(v, n_boot=400, seed=7, method="counts")
    assert np.array_equal(gather[:, 0], counts[:, 0])           # 0/1 scores: sums are exact either way
    assert np.allclose(gather, counts, rtol=1e-12, atol=0)
    assert not np.allclose(gather, M.bootstrap_means(v, n_boot=400, seed=8, method="counts"))  # seeded
    with pytest.raises(ValueError, match="method"):
        M.bootstrap_means(v, method="poisson")


def test_bootstrap_table_is_bootstrap_ci_and_paired_p_in_one_pass(monkeypatch):
    rng = np.random.default_rng(5)
    n = 2000
    a, b = (rng.random(n) < 0.7).astype(float), (rng.random(n) < 0.6).astype(float)
    cost = rng.random(n)
    cols = {"a": a, "b": b, ("a", "cost"): cost}
    pairs = {"a-b": ("a", "b"), "b-a": ("b", "a"), "a-a": ("a", "a")}
    exact = M.bootstrap_table(cols, pairs, n_boot=300, seed=1)    # n x n_boot small: call by call, bit for bit
    ci = M.bootstrap_ci(np.column_stack([a, b, cost]), n_boot=300, seed=1)
    assert exact[0]["a"] == ci[0].tolist() and exact[0][("a", "cost")] == ci[2].tolist()
    assert exact[1]["a-b"] == M.paired_bootstrap_p(a, b, n_boot=300, seed=1) and exact[1]["a-a"] == 1.0
    monkeypatch.setattr(M, "GATHER_MAX_CELLS", 0)                  # force the one-pass counts method
    fast = M.bootstrap_table(cols, pairs, n_boot=300, seed=1)
    for k in cols:
        assert np.allclose(fast[0][k], exact[0][k], rtol=1e-12)
    assert fast[1] == exact[1] and fast[1]["a-b"] < 0.01


def test_route_grid_is_route_at_every_lam():
    from routers.baselines.simple import BestSingleRouter, RandomRouter

    rng = np.random.default_rng(6)
    q, c = rng.random((3000, 7)), rng.random((3000, 7)) * 1e-3
    q[:, 2], c[:, 2] = q[:, 4], c[:, 4]                          # exact ties: same tiebreak as route
    lams = np.r_[0.0, np.geomspace(1e-2, 1e4, 30)]
    r = RandomRouter(models=list("abcdefg"))
    want = np.stack([r.route(["x"] * len(q), lam, quality=q, cost=c) for lam in lams])
    assert np.array_equal(r.route_grid(lams, q, c, block=128), want)
    same = np.tile(q[0], (50, 1)), np.tile(c[0], (50, 1))         # one prediction for all rows
    assert np.array_equal(BestSingleRouter().route_grid(lams, *same),
                          np.stack([r.route(["x"] * 50, lam, quality=same[0], cost=same[1]) for lam in lams]))
    from routers.baselines.cascade import CascadeRouter
    assert CascadeRouter().route_grid(lams, q, c) is None        # its own route (a threshold table): per lam
