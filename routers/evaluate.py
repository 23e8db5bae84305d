"""Evaluate routers on a routing dataset's test split: the numbers every peer reports, in one place.

`evaluate` fits each router on the training split, routes the test split at lam=0 (the headline
row), sweeps lam for the cost-quality curve, and computes the metrics of `routers.metrics` against
the sanity rows (best single model, oracle, random). `cli_eval` is the `baton eval` command.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from routers import metrics as M
from routers.accounting import mean_cost, unpriced_models
from routers.baselines.base import Router
from routers.data.schema import RoutingDataset
from routers.errors import ConfigError, DataError

N_LAMS = 40  # quantile points of a router's curve (see lam_grid)
GRID_MAX_ROWS = 100_000  # lam_grid reads the switch points of at most this many queries (evenly spaced)


# -- the lam grid -----------------------------------------------------------------------------
def lam_grid(quality: np.ndarray, cost: np.ndarray, n_points: int = N_LAMS) -> np.ndarray:
    """lam values that trace a router's whole curve from its own predictions.

    Query i switches from model k to a dearer model j once lam < (q_ij - q_ik) / (c_ij - c_ik).
    The grid is 0, `n_points` quantiles of those switch points (points spread over the routings,
    like RouteLLM's quantile thresholds), and 20 log-spaced values from a tenth of the smallest to
    ten times the largest (past it every query goes to its cheapest predicted model). The log part
    also covers routers whose `route` maps lam through its own table (the cascade's thresholds).
    Above `GRID_MAX_ROWS` queries the switch points are read from that many evenly spaced queries:
    the grid only places the curve's points (each is still scored on every query), and n x m^2
    switch points of a million queries would cost more than the whole evaluation."""
    q, c = np.asarray(quality, float), np.asarray(cost, float)
    if len(q) > GRID_MAX_ROWS:
        rows = np.linspace(0, len(q) - 1, GRID_MAX_ROWS).round().astype(np.intp)
        q, c = q[rows], c[rows]
    found = []
    step = max(1, 2_000_000 // max(q.shape[1] ** 2, 1))
    for s in range(0, len(q), step):
        dq = q[s:s + step, :, None] - q[s:s + step, None, :]
        dc = c[s:s + step, :, None] - c[s:s + step, None, :]
        ok = (dc > 0) & (dq > 0)
        found.append(dq[ok] / dc[ok])
    sw = np.concatenate(found) if found else np.zeros(0)
    sw = sw[np.isfinite(sw) & (sw > 0)]
    if not len(sw):
        return np.zeros(1)
    inner = np.quantile(sw, np.linspace(0, 1, n_points))
    outer = np.geomspace(sw.min() / 10, sw.max() * 10, 20)
    return np.unique(np.concatenate([[0.0], inner, outer]))


# -- evaluation -------------------------------------------------------------------------------
def _is_fitted(router: Router) -> bool:
    """A loaded checkpoint is marked `fitted`; routers are refit otherwise (fit is what sets `models`)."""
    return bool(getattr(router, "fitted", False))


def _column_map(name: str, router: Router, test: RoutingDataset) -> np.ndarray:
    missing = [m for m in router.models if m not in test.models]
    if not router.models or missing:
        raise ConfigError(f"router {name!r} routes to models {missing or router.models} that the test data "
                          f"{test.name!r} lacks (it has {test.models})")
    return np.array([test.models.index(m) for m in router.models])


def _realized_cost(router: Router, choice: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Dollars paid per query: the router's own accounting where it has one (a cascade pays for every
    model it called), else the chosen cell."""
    fn = getattr(router, "realized_cost", None)
    return fn(choice, costs) if fn is not None else costs[np.arange(len(choice)), choice]


def _entry(acc: float, cost: float, **extra) -> dict:
    return {"accuracy": float(acc), "cost": float(cost), **extra}


def _is_episodic(router: Any) -> bool:
    """A `ServingRouter` (multi-turn TRINITY, a Conductor) is scored by running its episodes."""
    from routers.serving_router import ServingRouter
    return isinstance(router, ServingRouter)


def evaluate(routers: dict[str, Any], train: RoutingDataset, test: RoutingDataset, *,
             lams=None, n_boot: int = 1000, seed: int = 0, validation: RoutingDataset | None = None,
             pool=None, progress: bool = True) -> dict:
    """Fit, route and score each router on the same test questions; returns a JSON-ready dict.

    Two kinds of router land in one table:
    - a `Router` (baselines, TRINITY selection heads) picks one model per query and is scored on
      the recorded cells; lam=0 gives the headline row, `lams` (default: `lam_grid` of its
      predictions) its cost-quality curve;
    - a `ServingRouter` (multi-turn TRINITY, the Conductor) answers each test question through
      `ServingRouter.answer` against `pool`, as `baton serve` does, graded by the task graders
      (`routers.episode_eval`); its curve is its one operating point.

    Layout: `routers[name]` has accuracy, cost, aiq, apgr, cpt50, cpt80, gap_closed, accuracy_ci,
    cost_ci, p_vs_best_single, p_vs_best_baseline (and which baseline that is), missing, share,
    curve, kind ("recorded" | "episodes"), fit_s, route_s; episodes add turns and orchestration
    tokens. `per_query` holds every router's per-question score and cost, keyed by test id order.
    Top level: best_single, oracle, random, single_models, weak/strong models, aiq_max_cost,
    unpriced_models and the settings.

    - Missing scores and unknown costs follow `routers.accounting`: a missing score chosen is 0 and
      counted; a cost that touches an unknown one is unknown (None), and so are AIQ/APGR/CPT.
    - Routers not yet `fitted` are fit on `train` (and `validation`, for routers that tune on it);
      a loaded checkpoint (fitted=True) is used as is.
    - AIQ's shared maximum cost (RouterBench: the largest hull cost of the routers compared) also
      counts every single model's cost; it is written as aiq_max_cost.
    - accuracy_ci / cost_ci: 95% percentile bootstrap over test queries; p-values: paired bootstrap
      on per-query score differences (same resamples for every router). The best baseline is the
      most accurate baseline router on this test split other than the oracle (and than the router
      itself): the strongest simple competitor, chosen after the fact, so the comparison is
      conservative for the router being tested.
    - A router with `fit_oracle` (the oracle baseline) is given the test split: it is a ceiling by design.
      A router with `attach_responses` (the cascade) is given the test responses and costs, not the
      scores: what calling the models would have returned.
    """
    if len(test) == 0:
        raise DataError("the test split is empty", file=test.name)
    if not routers:
        raise ConfigError("no routers to evaluate")
    episodic = [n for n, r in routers.items() if _is_episodic(r)]
    if episodic and pool is None:
        raise ConfigError(f"router(s) {', '.join(episodic)} run multi-step episodes and are scored by answering "
                          "the test questions against a pool: pass --pool (e.g. configs/pools/simulated.yaml)")
    S, C = test.scores, test.cost_matrix()
    models = list(test.models)
    unpriced = unpriced_models(test.costs, models)
    single_acc, single_cost = M.single_models(S, C)
    best = M.best_single(S, C)
    oracle = M.oracle(S, C)
    weak = M.cheapest_model(S, C)
    best_q, _, _ = M.chosen(S, C, np.full(len(test), best["index"]))
    best["accuracy"] = float(best_q.mean())  # summed as a router's is: an identical routing gives gap 0.0
    prompts, cats = list(test.prompts), list(test.categories)

    out_routers: dict[str, dict] = {}
    points: dict[str, np.ndarray] = {}
    per_query: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, router in tqdm(routers.items(), desc="evaluate", unit="router", disable=not progress):
        if _is_episodic(router):
            from routers.episode_eval import score_episodes
            t0 = time.perf_counter()
            # a router trained at several lams (a TRINITY frontier) runs its episodes at each: a curve
            grid = sorted({0.0, *(getattr(router, "lam_values", None) or [])})
            sweep = [score_episodes(router, test, pool, progress=progress, lam=lam) for lam in grid]
            ep = sweep[0]  # lam = 0: the headline row
            sc, co = ep.score, ep.cost
            row = {"kind": "episodes", "missing": 0, "fit_s": 0.0, "route_s": time.perf_counter() - t0,
                   "turns": float(ep.turns.mean()), "orchestration_tokens": float(ep.orchestration_tokens.mean()),
                   "failed_episodes": sum(e is not None for e in ep.errors),
                   "share": _worker_share(ep.workers, models)}
            x = np.full(len(grid), np.nan)  # the share of calls off the weak model is per step, not per query
            curve_pts = np.array([[_mean(e.cost), float(e.score.mean())] for e in sweep])
            row["curve"] = [{"lam": lam, "cost": c, "accuracy": a, "call_share": None}
                            for lam, (c, a) in zip(grid, curve_pts)]
        else:
            sc, co, row, curve, x = _score_recorded(name, router, train, test, validation, S, C, prompts, cats,
                                                    lams, weak)
            curve_pts = curve.points()
        per_query[name] = (sc, co)
        points[name] = curve_pts
        acc = float(sc.mean())
        ok_x = weak is not None and np.isfinite(x).all()
        out_routers[name] = {
            "accuracy": acc, "cost": _mean(co), "aiq": None,  # AIQ filled below with the shared max cost
            "apgr": M.apgr(x, curve_pts[:, 1], single_acc[weak], best["accuracy"]) if ok_x else None,
            "cpt50": M.cpt(x, curve_pts[:, 1], single_acc[weak], best["accuracy"], 0.5) if ok_x else None,
            "cpt80": M.cpt(x, curve_pts[:, 1], single_acc[weak], best["accuracy"], 0.8) if ok_x else None,
            "gap_closed": M.gap_closed(acc, best["accuracy"], oracle["accuracy"]),
            "accuracy_ci": None, "cost_ci": None, "p_vs_best_single": None,  # one bootstrap pass, below
            **row,
        }

    # AIQ is an area under a cost-quality curve: an episode router with one operating point (not
    # trained at several lams) gets none, and does not stretch the shared maximum cost for the others
    curves = {n: p for n, p in points.items() if out_routers[n]["kind"] == "recorded" or len(p) > 1}
    costs_known = [float(np.max(p[:, 0])) for p in curves.values() if np.isfinite(p[:, 0]).all()]
    max_cost = float("nan") if unpriced or len(costs_known) < len(curves) else max(
        [float(single_cost.max())] + [float(M.nondecreasing_convex_hull(p)[-1, 0]) for p in curves.values()])
    for name, p in points.items():
        if name not in curves:
            out_routers[name]["note"] = "one operating point (episodes are not swept over lam): no AIQ"
        elif np.isfinite(max_cost):
            out_routers[name]["aiq"] = M.aiq(p, max_cost=max_cost)
    baselines = [n for n, r in routers.items() if not _is_episodic(r) and not getattr(r, "from_checkpoint", False)
                 and not hasattr(r, "fit_oracle")]
    columns: dict = {"best single": best_q}
    pairs: dict = {}
    for name, r in out_routers.items():
        columns[name, "score"], columns[name, "cost"] = per_query[name]
        pairs[name, "single"] = ((name, "score"), "best single")
        rivals = [b for b in baselines if b != name]
        r["best_baseline"] = max(rivals, key=lambda k: out_routers[k]["accuracy"]) if rivals else None
        if rivals:
            pairs[name, "baseline"] = ((name, "score"), (r["best_baseline"], "score"))
    # every interval and p-value from the same resamples, in one pass where n is large (M.bootstrap_table)
    cis, ps = M.bootstrap_table(columns, pairs, n_boot=n_boot, seed=seed)
    for name, r in out_routers.items():
        r["accuracy_ci"], r["cost_ci"] = cis[name, "score"], cis[name, "cost"]
        r["p_vs_best_single"] = ps[name, "single"]
        r["p_vs_best_baseline"] = ps.get((name, "baseline"))

    return _jsonable({
        "dataset": test.name, "n_train": len(train), "n_test": len(test), "models": models,
        "best_single": _entry(best["accuracy"], best["cost"], model=models[best["index"]]),
        "oracle": _entry(oracle["accuracy"], _mean(M.chosen(S, C, oracle["choice"])[1]), missing=oracle["missing"],
                         share=dict(zip(models, M.share(oracle["choice"], len(models)).tolist()))),
        "random": M.random_expected(S, C),
        "single_models": [_entry(a, c, model=m) for m, a, c in zip(models, single_acc, single_cost)],
        "weak_model": None if weak is None else models[weak], "strong_model": models[best["index"]],
        "unpriced_models": unpriced, "unpriced_cost": test.meta.get("unpriced_cost"),
        "aiq_max_cost": max_cost, "n_boot": n_boot, "seed": seed,
        "test_rule": test.meta.get("test_rule"),
        "routers": out_routers,
        "per_query": {"ids": list(test.ids),
                      **{n: {"score": sc, "cost": co} for n, (sc, co) in per_query.items()}},
    })


def _mean(x) -> float:
    """Mean dollars, unknown (NaN) if any term is: the accounting rule."""
    return float(mean_cost(x))


def _worker_share(workers: list[list[str]], models: list[str]) -> dict[str, float]:
    """Fraction of episodes whose final answer came from each worker."""
    last = [w[-1] for w in workers if w]
    return {m: last.count(m) / max(len(workers), 1) for m in sorted(set(models) | set(last))}


def _score_recorded(name, router, train, test, validation, S, C, prompts, cats, lams, weak):
    """Fit (unless loaded), route the test split over lam, and read the chosen recorded cells."""
    models = list(test.models)
    t0 = time.perf_counter()
    if not _is_fitted(router):
        if len(train) == 0:
            raise DataError(f"router {name!r} needs fitting but the training split is empty", file=train.name)
        router.fit(train, validation if validation is not None and len(validation) else None)
    if hasattr(router, "fit_oracle"):
        router.fit_oracle(test)
    if hasattr(router, "attach_responses"):  # a cascade replays the recorded answers it "calls"
        router.attach_responses(test)
    fit_s = time.perf_counter() - t0
    cols = _column_map(name, router, test)

    t0 = time.perf_counter()
    q = np.asarray(router.predict_quality(prompts, cats), float)
    c = np.asarray(router.predict_cost(prompts, cats), float)
    route_s = time.perf_counter() - t0
    if q.shape != (len(test), len(cols)) or c.shape != q.shape:
        raise ValueError(f"router {name!r} predicted quality {q.shape} / cost {c.shape} for "
                         f"{len(test)} queries x {len(cols)} models")
    own = getattr(router, "lam_values", None)  # a router trained at fixed lams (a TRINITY frontier) is swept there
    if lams is None:
        lams = own
    grid = lam_grid(q, c) if lams is None else np.unique(np.r_[0.0, np.asarray(lams, float)])
    to_router = np.zeros(len(models), dtype=int)
    to_router[cols] = np.arange(len(cols))
    C_router = C[:, cols]
    at_grid = router.route_grid(grid, q, c) if hasattr(router, "route_grid") else None  # all lams, one pass
    lam_row = {float(l): i for i, l in enumerate(grid)}
    route = (lambda lam: cols[router.route(prompts, lam, cats, quality=q, cost=c)]) if at_grid is None else \
        (lambda lam: cols[at_grid[lam_row[lam]]])
    curve = M.sweep(route, grid, S, C, paid=lambda ch: _realized_cost(router, to_router[ch], C_router))
    head = int(np.flatnonzero(curve.lam == 0)[0])
    choice0 = curve.choices[head]
    sc, _, missing = M.chosen(S, C, choice0)
    co = curve.paid[head]
    x = curve.call_share(weak) if weak is not None else np.full(len(curve.lam), np.nan)
    row = {"kind": "recorded", "missing": missing,
           "share": dict(zip(models, M.share(choice0, len(models)).tolist())),
           "curve": [{"lam": float(l), "cost": float(cc), "accuracy": float(a), "call_share": float(s)}
                     for l, cc, a, s in zip(curve.lam, curve.cost, curve.accuracy, x)],
           "fit_s": fit_s, "route_s": route_s}
    known = C[:, cols][np.isfinite(C[:, cols])]
    if len(c) and not np.any(np.ptp(c, axis=1) > 0) and known.size and known.max() > 0:
        # a cost-blind router: no lam moves it, so its "curve" is its lam=0 point and AIQ/APGR
        # read that point alone; say so rather than let the numbers pass as a trade-off
        note = ("predicts the same cost for every model, so its cost-quality curve is one point "
                "(a TRINITY route checkpoint trained without prices: retrain with data.prices=...)")
        row["note"] = note
        print(f"evaluate: router {name!r} {note}", file=sys.stderr)
    return sc, co, row, curve, x


def _jsonable(x: Any) -> Any:
    """Plain Python for json.dumps: numpy scalars/arrays converted, NaN/inf as None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiub":  # per-query columns: one pass, not a call per value
        out = x.tolist()
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            out = [v if math.isfinite(v) else None for v in out] if x.ndim == 1 else _jsonable(out)
        return out
    if isinstance(x, (list, tuple)) and all(type(v) is str for v in x):
        return list(x)
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def dump_json(result: dict) -> str:
    """`evaluate`'s result as JSON, indented, with each per-query list on one line: json's C encoder
    writes those (millions of numbers at scale); the indented encoder is pure Python."""
    mark = "\x00per_query"
    text = json.dumps({**result, "per_query": mark}, indent=1)
    return text.replace(json.dumps(mark), json.dumps(result.get("per_query")), 1)


# -- baton eval ------------------------------------------------------------------------------
def build_routers(spec: str, encoder: str | None = None, pool=None) -> dict[str, Any]:
    """Routers from the --routers list: baseline names, or name=CHECKPOINT (a folder or a Hub repo id;
    loaded, marked fitted).

    A checkpoint that answers in one step (a TRINITY selection head, a fitted baseline) is scored on
    recorded data; one that runs episodes (multi-turn TRINITY, a Conductor) is loaded as the server
    loads it and scored against `pool`."""
    from routers import registry

    out: dict[str, Any] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if "=" in item:
            name, path = (s.strip() for s in item.split("=", 1))
            from routers.checkpoint import pretrained_dir
            path = str(pretrained_dir(path))  # a folder, or a Hub repo id (downloaded / read from the cache)
            router = registry.load_checkpoint(path)
            if _runs_episodes(router):
                if pool is None:
                    raise ConfigError(f"--routers {name}={path}: this checkpoint runs multi-step episodes; "
                                      "pass --pool (the pool it routes over) to score them")
                from routers.serve.loading import load_serving_router
                router = load_serving_router(f"{name}={path}", pool)
            elif not callable(getattr(router, "predict_quality", None)):
                raise ConfigError(f"checkpoint {path} ({type(router).__name__}) is not an evaluable router "
                                  "(no predict_quality)")
            else:
                router.fitted = True
            router.from_checkpoint = True
        else:
            name = item
            try:
                cls = registry.baseline_class(name)
            except ImportError as e:
                raise ConfigError(f"router {name!r} ({registry.BASELINES[name]}) cannot be imported: {e}") from None
            kw = {"encoder": encoder} if encoder and _accepts(cls, "encoder") else {}
            router = cls(**kw)
        if name in out:
            raise ConfigError(f"router name {name!r} given twice in --routers")
        out[name] = router
    if not out:
        raise ConfigError("--routers is empty")
    return out


def _runs_episodes(router: Any) -> bool:
    """Multi-turn TRINITY (a head with roles) and any `ServingRouter` (a Conductor)."""
    if _is_episodic(router):
        return True
    head = getattr(getattr(router, "trinity", None), "head", None)
    return bool(getattr(head, "n_roles", 0))


def _accepts(cls, param: str) -> bool:
    sig = inspect.signature(cls.__init__).parameters
    return param in sig or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())


def _fmt(v, pct=False) -> str:
    if v is None:
        return "-"
    v = round(v, 3 if not pct else 4) + 0.0  # no "-0.000"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def _cost(v) -> str:
    return "?" if v is None else f"{v:.3g}"


def print_table(result: dict) -> None:
    """One rich table: a row per router, then the sanity rows (best single, oracle, random)."""
    from rich.console import Console
    from rich.table import Table

    weak = result["weak_model"] or "? (unpriced models)"
    t = Table(title=f"{result['dataset']}: {result['n_test']} test queries, {len(result['models'])} models "
                    f"(weak {weak}, strong {result['strong_model']})",
              caption=f"test set: {result.get('test_rule') or 'as given'}")
    for col in ("router", "scored on", "accuracy [95% CI]", "cost $/query", "AIQ", "APGR", "CPT50", "CPT80",
                "gap closed", "p vs best single", "p vs best baseline"):
        t.add_column(col, justify="left" if col in ("router", "scored on") else "right")
    for name, r in result["routers"].items():
        lo, hi = r["accuracy_ci"]
        pb = "-" if r.get("p_vs_best_baseline") is None else f"{_fmt(r['p_vs_best_baseline'])} ({r['best_baseline']})"
        t.add_row(name, r.get("kind", "recorded"), f"{_fmt(r['accuracy'])} [{_fmt(lo)}, {_fmt(hi)}]", _cost(r["cost"]),
                  _fmt(r["aiq"]), _fmt(r["apgr"]), _fmt(r["cpt50"], True), _fmt(r["cpt80"], True),
                  _fmt(r["gap_closed"]), _fmt(r["p_vs_best_single"]), pb)
    t.add_section()
    for label, row in (("best single: " + result["best_single"]["model"], result["best_single"]),
                       ("oracle", result["oracle"]), ("random (expected)", result["random"])):
        t.add_row(label, "recorded", _fmt(row["accuracy"]), _cost(row["cost"]), *["-"] * 7)
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=220)
    console.print(t)
    if result.get("unpriced_models"):
        console.print(f"note: no price for {', '.join(result['unpriced_models'])}: costs that include them are "
                      "unknown ('?'), and AIQ/APGR/CPT are not computed; pass --prices or --unpriced-cost X")
    if result.get("unpriced_cost") is not None:
        console.print(f"note: unpriced models were charged ${result['unpriced_cost']:g} per call (--unpriced-cost)")
    for name, r in result["routers"].items():
        if r["missing"]:
            console.print(f"note: {name} chose {r['missing']} (query, model) pairs with no recorded score; "
                          "they count as wrong")
        if r.get("failed_episodes"):
            console.print(f"note: {name}: {r['failed_episodes']} episodes failed; they count as wrong")


def _check_writable(path: str | None, flag: str) -> None:
    """Fail before the evaluation, not after it, when an output path cannot be written."""
    if not path:
        return
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        existed = p.exists()
        with p.open("a"):
            pass
        if not existed:
            p.unlink()
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None


def split_for_eval(data: RoutingDataset, source: RoutingDataset | None, *, data_spec: str,
                   train_spec: str | None = None, allow_overlap: bool = False, drop_overlap: bool = False):
    """(train, validation, test) by the rule `baton eval` states in its header.

    - --train given: every row of --data is a test question (the user gave a test file); --train's
      'validation' rows (if any) tune, all its other rows fit.
    - one dataset: its 'test' split is scored, 'train'/'validation' fit; the splits are the
      publisher's labels, or a seeded prompt-hash split where the file has none.
    Prompts present on both sides are refused (leakage) unless `allow_overlap` (scored, with a
    warning) or `drop_overlap` (those test questions are left out, and the header says how many)."""
    from routers.data.overlap import overlapping

    if source is not None:
        test = data
        is_val = np.array([sp == "validation" for sp in source.splits], dtype=bool)
        train, validation = source.subset(~is_val), source.subset(is_val)
        rule = f"every row of --data ({len(test)} questions); fitted on --train ({len(train)} rows)"
    else:
        test, train, validation = data.split("test"), data.split("train"), data.split("validation")
        if not len(test):
            raise DataError("has no 'test' rows; evaluating on all rows would score the routers on their "
                            "own training data: pass --train with a separate training set", file=data_spec)
        rule = (f"the 'test' split of --data ({len(test)} of {len(data)} questions; publisher's split labels, "
                f"or a seeded prompt-hash split where the file has none)")
    if sorted(train.models) != sorted(test.models) and len(train):
        raise DataError(f"training data has models {train.models} but the test data has {test.models}",
                        file=train_spec or data_spec)
    if len(train) and train.models != test.models:
        train, validation = train.select_models(test.models), validation.select_models(test.models)
    leaked = sorted(set(overlapping(train.prompts, test.prompts)) | set(overlapping(validation.prompts, test.prompts)))
    if leaked:
        msg = (f"{len(leaked)} of {len(test)} test prompts also appear in the training data (normalized text), "
               f"e.g. row {leaked[0]}: {str(test.prompts[leaked[0]])[:80]!r}")
        if drop_overlap:
            test = test.subset(np.setdiff1d(np.arange(len(test)), leaked))
            print(f"warning: {msg}; those test questions are left out (--drop-overlap)", file=sys.stderr)
            rule += f"; {len(leaked)} test questions also in the training data left out (--drop-overlap)"
        elif not allow_overlap:
            raise DataError(msg + "; a router can look their answers up. Remove them, or pass --drop-overlap "
                            "(score the rest) or --allow-overlap", file=data_spec)
        else:
            print(f"warning: {msg} (--allow-overlap)", file=sys.stderr)
            rule += f"; {len(leaked)} test prompts overlap training (--allow-overlap)"
    test.meta["test_rule"] = rule
    test.meta["overlap"] = len(leaked)
    return train, validation, test


def cli_eval(args) -> int:
    """`baton eval`: load --data (and --train), build --routers, evaluate, print, write --json/--plot."""
    from routers.accounting import fill_unpriced
    from routers.data import load_dataset

    if args.bootstrap < 1:
        raise ConfigError(f"--bootstrap {args.bootstrap}: need at least 1 resample (1000 is the default)")
    _check_writable(args.json, "--json")
    _check_writable(args.plot, "--plot")

    def load(spec):
        ds = load_dataset(spec, format=args.format, prices=args.prices, trust_pickle=args.trust_pickle,
                          seed=args.seed, models=getattr(args, "models", None))
        return ds if args.unpriced_cost is None else fill_unpriced(ds, args.unpriced_cost)

    data = load(args.data)
    source = load(args.train) if args.train else None
    train, validation, test = split_for_eval(data, source, data_spec=args.data, train_spec=args.train,
                                             allow_overlap=args.allow_overlap, drop_overlap=args.drop_overlap)
    pool = None
    if args.pool:
        from routers.pool.config import load_pool
        pool = load_pool(args.pool)
    routers = build_routers(args.routers, encoder=args.encoder, pool=pool)
    try:
        result = evaluate(routers, train, test, n_boot=args.bootstrap, seed=args.seed, validation=validation,
                          pool=pool)
    finally:
        if pool is not None:
            import asyncio
            asyncio.run(pool.aclose())
    print_table(result)
    if args.json:
        Path(args.json).write_text(dump_json(result))
        print(f"metrics -> {args.json}")
    if args.plot:
        from routers.plots import plot_cost_quality
        plot_cost_quality(result, args.plot)
        print(f"plot -> {args.plot}")
    return 0
