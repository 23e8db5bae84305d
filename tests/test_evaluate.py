"""evaluate() end to end on synthetic data with tiny routers of our own, and `baton eval` on a native JSONL."""

import json
from pathlib import Path

import numpy as np
import pytest

from routers import metrics as M
from routers.baselines.base import Router
from routers.data.schema import RoutingDataset
from routers.errors import ConfigError
from routers.evaluate import evaluate, lam_grid

MODELS = ["cheap", "mid", "dear"]
PRICE = np.array([1e-4, 1e-3, 1e-2])
KEYS = {"accuracy", "cost", "aiq", "apgr", "cpt50", "cpt80", "gap_closed", "accuracy_ci", "p_vs_best_single"}


class CategoryRouter(Router):
    """Learns the mean score of each model per category: the best possible router on `synthetic`."""
    name = "test-category"

    def _fit(self, train, validation):
        cats = sorted(set(train.categories))
        s = np.nan_to_num(train.scores, nan=0.0)
        self.table = {c: s[[k == c for k in train.categories]].mean(axis=0).tolist() for c in cats}

    def predict_quality(self, prompts, categories=None):
        return np.array([self.table.get(c, [0.5] * len(self.models)) for c in categories])

    def _save_state(self, path):
        (path / "table.json").write_text(json.dumps(self.table))

    def _load_state(self, path):
        self.table = json.loads((path / "table.json").read_text())


class ConstantRouter(Router):
    """Always predicts the same quality per model (here: prefers `mid`)."""
    name = "test-constant"

    def predict_quality(self, prompts, categories=None):
        return np.tile([0.2, 0.6, 0.5], (len(prompts), 1))


def synthetic(n=300, seed=0) -> RoutingDataset:
    """Category a: everyone right; b: only mid right (dear 60%); c: only dear right."""
    rng = np.random.default_rng(seed)
    cats = rng.choice(["a", "b", "c"], n)
    scores = np.zeros((n, 3))
    scores[cats == "a"] = 1
    scores[cats == "b", 1] = 1
    scores[cats == "b", 2] = rng.random((cats == "b").sum()) < 0.6
    scores[cats == "c", 2] = 1
    costs = PRICE * rng.uniform(0.5, 1.5, (n, 1))
    splits = np.where(np.arange(n) % 3 == 0, "test", "train").tolist()
    prompts = [f"question {i} about {c}" for i, c in enumerate(cats)]
    return RoutingDataset(ids=[f"q{i}" for i in range(n)], prompts=prompts, categories=cats.tolist(), splits=splits, models=list(MODELS), scores=scores,
                          costs=costs, name="synthetic")


def test_evaluate_end_to_end_on_synthetic_data():
    ds = synthetic()
    train, test = ds.split("train"), ds.split("test")
    res = evaluate({"category": CategoryRouter(), "constant": ConstantRouter()}, train, test, n_boot=300)
    json.dumps(res, allow_nan=False)  # strict JSON: NaN became null

    S, C = test.scores, test.cost_matrix()
    assert res["best_single"]["model"] == "dear"
    assert res["best_single"]["accuracy"] == pytest.approx(S[:, 2].mean())
    assert res["oracle"]["accuracy"] == 1.0
    assert res["random"]["accuracy"] == pytest.approx(S.mean())
    assert [p["model"] for p in res["single_models"]] == MODELS
    assert res["weak_model"] == "cheap" and res["strong_model"] == "dear"

    cat = res["routers"]["category"]
    assert KEYS <= set(cat)
    # lam=0: a -> cheap (all tie, cost tiebreak), b -> mid, c -> dear: every query right
    assert cat["accuracy"] == 1.0 and cat["gap_closed"] == pytest.approx(1.0)
    assert cat["p_vs_best_single"] == 0.0
    lo, hi = cat["accuracy_ci"]
    assert lo <= cat["accuracy"] <= hi
    assert cat["cost_ci"][0] <= cat["cost"] <= cat["cost_ci"][1]
    expected = {m: float(np.mean([c == k for c in test.categories])) for m, k in zip(MODELS, "abc")}
    assert cat["share"] == pytest.approx(expected)
    # the curve ends with everything on the cheapest model, and cost falls as lam grows
    curve = cat["curve"]
    assert curve[0]["lam"] == 0.0 and curve[-1]["call_share"] == 0.0
    assert curve[-1]["cost"] == pytest.approx(C[:, 0].mean())
    assert all(b["cost"] <= a["cost"] + 1e-15 for a, b in zip(curve, curve[1:]))
    # the knowledgeable router beats the constant one on every summary
    const = res["routers"]["constant"]
    assert const["share"]["mid"] == 1.0 and const["accuracy"] == pytest.approx(S[:, 1].mean())
    assert cat["aiq"] > const["aiq"] and cat["apgr"] > const["apgr"]
    assert 0 <= cat["cpt50"] <= cat["cpt80"] <= 1
    # AIQ uses the shared max cost: the dearest single model or router hull
    assert res["aiq_max_cost"] == pytest.approx(max(C.mean(axis=0).max(), max(p["cost"] for p in curve)))


def test_metrics_recomputed_from_the_curve_match():
    ds = synthetic(seed=1)
    res = evaluate({"category": CategoryRouter()}, ds.split("train"), ds.split("test"), n_boot=100)
    r = res["routers"]["category"]
    x = [p["call_share"] for p in r["curve"]]
    y = [p["accuracy"] for p in r["curve"]]
    weak_acc = res["single_models"][0]["accuracy"]
    assert r["apgr"] == pytest.approx(M.apgr(x, y, weak_acc, res["best_single"]["accuracy"]))
    pts = [(p["cost"], p["accuracy"]) for p in r["curve"]]
    assert r["aiq"] == pytest.approx(M.aiq(pts, max_cost=res["aiq_max_cost"]))


def test_explicit_lams_and_the_default_grid():
    ds = synthetic(n=90)
    res = evaluate({"c": CategoryRouter()}, ds.split("train"), ds.split("test"), lams=[1.0, 1e6], n_boot=50)
    assert [p["lam"] for p in res["routers"]["c"]["curve"]] == [0.0, 1.0, 1e6]
    # two models, one query: quality (0.2, 0.9), cost (1, 3) -> switches at lam = 0.7/2 = 0.35
    g = lam_grid(np.array([[0.2, 0.9]]), np.array([[1.0, 3.0]]))
    assert g[0] == 0.0 and 0.35 in g and g.max() == pytest.approx(3.5) and np.all(np.diff(g) > 0)
    assert g[1] == pytest.approx(0.035)
    assert lam_grid(np.ones((4, 2)), np.zeros((4, 2))).tolist() == [0.0]


def test_a_loaded_checkpoint_is_not_refit_and_unknown_models_are_refused(tmp_path):
    ds = synthetic(n=120)
    train, test = ds.split("train"), ds.split("test")
    r = CategoryRouter().fit(train)
    r.fitted = True
    r.fit = None  # calling fit would raise TypeError
    res = evaluate({"r": r}, train.subset(np.zeros(len(train), bool)), test, n_boot=50)
    assert res["routers"]["r"]["accuracy"] == 1.0

    other = CategoryRouter().fit(train.select_models(["cheap", "mid"]))
    other.models = ["cheap", "gpt-9"]
    other.fitted = True
    with pytest.raises(ConfigError, match="gpt-9"):
        evaluate({"other": other}, train, test, n_boot=10)


class PayAllCheaper(CategoryRouter):
    """Like a cascade: reaching model j pays for every model up to j."""

    def realized_cost(self, choice, costs):
        return np.cumsum(costs, axis=1)[np.arange(len(choice)), choice]


def test_cost_is_what_the_router_pays():
    ds = synthetic(n=120)
    test = ds.split("test")
    res = evaluate({"plain": CategoryRouter(), "cascade": PayAllCheaper()}, ds.split("train"), test, n_boot=20)
    plain, casc = res["routers"]["plain"], res["routers"]["cascade"]
    assert casc["accuracy"] == plain["accuracy"] and casc["share"] == plain["share"]
    C = test.cost_matrix()
    choice = np.array(["abc".index(k) for k in test.categories])  # a -> cheap, b -> mid, c -> dear
    assert plain["cost"] == pytest.approx(C[np.arange(len(test)), choice].mean())
    assert casc["cost"] == pytest.approx(np.cumsum(C, axis=1)[np.arange(len(test)), choice].mean())
    assert casc["cost"] > plain["cost"]


class Replaying(CategoryRouter):
    def attach_responses(self, data):
        self.attached = list(data.prompts)


def test_a_replaying_router_is_handed_the_test_responses():
    ds = synthetic(n=60)
    r = Replaying()
    evaluate({"r": r}, ds.split("train"), ds.split("test"), n_boot=10)
    assert r.attached == ds.split("test").prompts


def test_unrecorded_scores_of_the_chosen_model_count_as_wrong():
    ds = synthetic(n=120)
    test = ds.split("test")
    c_rows = [i for i, k in enumerate(test.categories) if k == "c"]
    test.scores[c_rows[:3], 2] = np.nan  # dear (the only right model on c) not recorded on 3 queries
    res = evaluate({"c": CategoryRouter()}, ds.split("train"), test, n_boot=20)
    r = res["routers"]["c"]
    assert r["missing"] == 3 and r["accuracy"] == pytest.approx(1 - 3 / len(test))
    assert res["oracle"]["accuracy"] == pytest.approx(1 - 3 / len(test))


def test_plot_is_written(tmp_path):
    from routers.plots import plot_cost_quality

    ds = synthetic(n=60)
    res = evaluate({"c": CategoryRouter()}, ds.split("train"), ds.split("test"), n_boot=20)
    out = plot_cost_quality(res, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 5000
    labels = [t.get_text() for t in out.texts]
    assert labels == MODELS


def write_native_jsonl(ds: RoutingDataset, path: Path) -> Path:
    """The native format, written by hand: one object per query with per-model results."""
    with open(path, "w") as f:
        for i in range(len(ds)):
            f.write(json.dumps({"id": ds.ids[i], "prompt": ds.prompts[i], "category": ds.categories[i],
                                "split": ds.splits[i],
                                "results": {m: {"score": float(ds.scores[i, j]), "cost": float(ds.costs[i, j])}
                                            for j, m in enumerate(ds.models)}}) + "\n")
    return path


@pytest.fixture
def test_routers(monkeypatch):
    from routers import registry
    monkeypatch.setitem(registry.BASELINES, "test-category", "test_evaluate:CategoryRouter")
    monkeypatch.setitem(registry.BASELINES, "test-constant", "test_evaluate:ConstantRouter")


def test_baton_eval_on_a_native_jsonl(tmp_path, capsys, test_routers):
    from routers.cli import main

    data = write_native_jsonl(synthetic(n=150), tmp_path / "data.jsonl")
    ckpt = CategoryRouter().fit(synthetic(n=150).split("train")).save(tmp_path / "ckpt")
    rc = main(["eval", "--data", str(data), "--routers", f"test-constant,saved={ckpt}",
               "--json", str(tmp_path / "m.json"), "--plot", str(tmp_path / "p.png"), "--bootstrap", "100"])
    assert rc == 0
    out = capsys.readouterr().out
    for text in ("test-constant", "saved", "best single: dear", "oracle", "random", "APGR"):
        assert text in out
    res = json.loads((tmp_path / "m.json").read_text())
    assert set(res["routers"]) == {"test-constant", "saved"}
    assert res["n_test"] == 50 and res["n_train"] == 100
    assert res["routers"]["saved"]["accuracy"] == 1.0
    assert (tmp_path / "p.png").is_file()


def test_baton_eval_user_errors(tmp_path, capsys, test_routers):
    from routers.cli import main

    ds = synthetic(n=30)
    only_train = ds.subset([i for i, s in enumerate(ds.splits) if s == "train"])
    data = write_native_jsonl(only_train, tmp_path / "train_only.jsonl")
    assert main(["eval", "--data", str(data), "--routers", "test-constant"]) == 2
    assert "no 'test' rows" in capsys.readouterr().err
    full = write_native_jsonl(ds, tmp_path / "full.jsonl")
    assert main(["eval", "--data", str(full), "--routers", "test-constant,nope"]) == 2
    assert "unknown router 'nope'" in capsys.readouterr().err
    # --train with only train rows + --data with only test rows: both used whole
    test_only = write_native_jsonl(ds.split("test"), tmp_path / "test_only.jsonl")
    assert main(["eval", "--data", str(test_only), "--train", str(data), "--routers", "test-category",
                 "--bootstrap", "20", "--json", str(tmp_path / "m.json")]) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["n_test"] == 10 and res["n_train"] == 20


def test_the_reference_baselines_land_on_the_sanity_rows():
    """The oracle baseline (handed the test split) reaches the oracle row; best-single matches it."""
    from routers.baselines.simple import BestSingleRouter, OracleRouter, RandomRouter

    ds = synthetic(n=150, seed=3)
    res = evaluate({"oracle": OracleRouter(), "best": BestSingleRouter(), "random": RandomRouter()},
                   ds.split("train"), ds.split("test"), n_boot=50)
    r = res["routers"]
    assert r["oracle"]["accuracy"] == res["oracle"]["accuracy"] == 1.0
    assert r["oracle"]["cost"] == pytest.approx(res["oracle"]["cost"])
    assert r["best"]["accuracy"] == res["best_single"]["accuracy"] and r["best"]["gap_closed"] == 0.0
    assert r["best"]["p_vs_best_single"] == 1.0
    assert r["random"]["accuracy"] < res["best_single"]["accuracy"]


class CostBlind(CategoryRouter):
    """Knows quality but predicts every model costs the same (a route checkpoint trained without prices)."""
    def predict_cost(self, prompts, categories=None):
        return np.zeros((len(prompts), len(self.models)))


def test_a_cost_blind_router_is_flagged_not_passed_off_as_a_curve(capsys):
    ds = synthetic(n=120)
    res = evaluate({"blind": CostBlind(), "plain": CategoryRouter()}, ds.split("train"), ds.split("test"), n_boot=20)
    blind = res["routers"]["blind"]
    assert len(blind["curve"]) == 1 and "one point" in blind["note"]
    assert "note" not in res["routers"]["plain"] and len(res["routers"]["plain"]["curve"]) > 1
    assert "router 'blind' predicts the same cost for every model" in capsys.readouterr().err


def test_large_test_sets_keep_the_same_results_and_json(monkeypatch):
    """The paths taken at scale (a sampled lam grid, counts bootstrap, per-query columns written by the
    C encoder) give what the exact paths give, here forced on a small set."""
    import routers.evaluate as E
    from routers.evaluate import dump_json

    ds = synthetic(n=600)
    train, test = ds.split("train"), ds.split("test")
    exact = evaluate({"c": CategoryRouter(), "k": ConstantRouter()}, train, test, n_boot=200, progress=False)
    assert json.loads(dump_json(exact)) == json.loads(json.dumps(exact))      # same document, faster to write
    monkeypatch.setattr(M, "GATHER_MAX_CELLS", 0)
    fast = evaluate({"c": CategoryRouter(), "k": ConstantRouter()}, train, test, n_boot=200, progress=False)
    for name in ("c", "k"):
        a, b = exact["routers"][name], fast["routers"][name]
        assert a["p_vs_best_single"] == b["p_vs_best_single"] and a["p_vs_best_baseline"] == b["p_vs_best_baseline"]
        assert np.allclose(a["accuracy_ci"], b["accuracy_ci"], rtol=1e-12)
        assert np.allclose(a["cost_ci"], b["cost_ci"], rtol=1e-12)
    # above GRID_MAX_ROWS queries the grid is the one of evenly spaced queries, first and last included
    q, c = np.random.default_rng(0).random((500, 4)), np.random.default_rng(1).random((500, 4))
    rows = np.linspace(0, 499, 50).round().astype(int)
    want = lam_grid(q[rows], c[rows])
    monkeypatch.setattr(E, "GRID_MAX_ROWS", 50)
    assert np.array_equal(lam_grid(q, c), want) and rows[0] == 0 and rows[-1] == 499
    assert not np.array_equal(want, lam_grid(q[:50], c[:50]))
