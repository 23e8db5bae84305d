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
from routers.baselines.base import Router
from routers.data.schema import RoutingDataset
from routers.errors import ConfigError, DataError

N_LAMS = 40  # quantile points of a router's curve (see lam_grid)


# -- the lam grid -----------------------------------------------------------------------------
def lam_grid(quality: np.ndarray, cost: np.ndarray, n_points: int = N_LAMS) -> np.ndarray:
    """lam values that trace a router's whole curve from its own predictions.

    Query i switches from model k to a dearer model j once lam < (q_ij - q_ik) / (c_ij - c_ik).
    The grid is 0, `n_points` quantiles of those switch points (points spread over the routings,
    like RouteLLM's quantile thresholds), and 20 log-spaced values from a tenth of the smallest to
    ten times the largest (past it every query goes to its cheapest predicted model). The log part
    also covers routers whose `route` maps lam through its own table (the cascade's thresholds)."""
    q, c = np.asarray(quality, float), np.asarray(cost, float)
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


def evaluate(routers: dict[str, Router], train: RoutingDataset, test: RoutingDataset, *,
             lams=None, n_boot: int = 1000, seed: int = 0, validation: RoutingDataset | None = None) -> dict:
    """Fit, route and score each router; returns a JSON-ready dict.

    Layout: `routers[name]` has accuracy, cost, aiq, apgr, cpt50, cpt80, gap_closed, accuracy_ci,
    p_vs_best_single, plus cost_ci, missing, share {model: fraction}, curve [{lam, cost, accuracy,
    call_share}], fit_s, route_s. Top level: best_single, oracle, random, single_models (each model
    as a point), weak/strong models (the APGR/CPT endpoints), aiq_max_cost and the settings.
    Routers are nested under `routers` so a router named "oracle" cannot collide with the oracle row.

    - Routers not yet `fitted` are fit on `train` (and `validation`, for routers that tune on it);
      a loaded checkpoint (fitted=True) is used as is.
    - cost is the dollars actually paid per query (`Router.realized_cost`: a cascade pays for every
      model it called), accuracy counts unrecorded (NaN) scores of the chosen model as 0 (`missing`).
    - lam=0 gives the headline row; `lams` (default: `lam_grid` of each router's predictions) the curve.
    - AIQ's shared maximum cost (RouterBench: the largest hull cost of the routers compared) also
      counts every single model's cost, so a router's AIQ depends on the others only when one of
      them spends more than the dearest model (a cascade can); it is written as aiq_max_cost.
    - accuracy_ci / cost_ci: 95% percentile bootstrap over test queries; p_vs_best_single: paired
      bootstrap on the per-query score difference with the best single model (same resamples).
    - A router with `fit_oracle` (the oracle baseline) is given the test split: it is a ceiling by design.
      A router with `attach_responses` (the cascade) is given the test responses and costs, not the
      scores: what calling the models would have returned.
    """
    if len(test) == 0:
        raise DataError("the test split is empty", file=test.name)
    if not routers:
        raise ConfigError("no routers to evaluate")
    S, C = test.scores, test.cost_matrix()
    models = list(test.models)
    single_acc, single_cost = M.single_models(S, C)
    best = M.best_single(S, C)
    oracle = M.oracle(S, C)
    weak = M.cheapest_model(S, C)
    best_q, _, _ = M.chosen(S, C, np.full(len(test), best["index"]))
    best["accuracy"] = float(best_q.mean())  # summed as a router's is: an identical routing gives gap 0.0
    prompts, cats = list(test.prompts), list(test.categories)

    out_routers: dict[str, dict] = {}
    curves: dict[str, M.Curve] = {}
    for name, router in tqdm(routers.items(), desc="evaluate", unit="router"):
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
        grid = lam_grid(q, c) if lams is None else np.unique(np.r_[0.0, np.asarray(lams, float)])
        to_router = np.zeros(len(models), dtype=int)
        to_router[cols] = np.arange(len(cols))
        curve = M.sweep(lambda lam: cols[router.route(prompts, lam, cats, quality=q, cost=c)], grid, S, C,
                        paid=lambda ch: _realized_cost(router, to_router[ch], C[:, cols]))
        curves[name] = curve

        head = int(np.flatnonzero(curve.lam == 0)[0])
        choice0 = curve.choices[head]
        sc, _, missing = M.chosen(S, C, choice0)
        co = curve.paid[head]
        ci = M.bootstrap_ci(np.column_stack([sc, co]), n_boot=n_boot, seed=seed)
        x = curve.call_share(weak)
        acc = float(sc.mean())
        out_routers[name] = {
            "accuracy": acc, "cost": float(co.mean()),
            "aiq": None,  # filled below with the shared max cost
            "apgr": M.apgr(x, curve.accuracy, single_acc[weak], best["accuracy"]),
            "cpt50": M.cpt(x, curve.accuracy, single_acc[weak], best["accuracy"], 0.5),
            "cpt80": M.cpt(x, curve.accuracy, single_acc[weak], best["accuracy"], 0.8),
            "gap_closed": M.gap_closed(acc, best["accuracy"], oracle["accuracy"]),
            "accuracy_ci": ci[0].tolist(),
            "p_vs_best_single": M.paired_bootstrap_p(sc, best_q, n_boot=n_boot, seed=seed),
            "cost_ci": ci[1].tolist(), "missing": missing,
            "share": dict(zip(models, M.share(choice0, len(models)).tolist())),
            "curve": [{"lam": float(l), "cost": float(cc), "accuracy": float(a), "call_share": float(s)}
                      for l, cc, a, s in zip(curve.lam, curve.cost, curve.accuracy, x)],
            "fit_s": fit_s, "route_s": route_s,
        }
        if len(c) and not np.any(np.ptp(c, axis=1) > 0) and np.nanmax(C[:, cols], initial=0.0) > 0:
            # a cost-blind router: no lam moves it, so its "curve" is its lam=0 point and AIQ/APGR
            # read that point alone; say so rather than let the numbers pass as a trade-off
            note = ("predicts the same cost for every model, so its cost-quality curve is one point "
                    "(a TRINITY route checkpoint trained without prices: retrain with data.prices=...)")
            out_routers[name]["note"] = note
            print(f"evaluate: router {name!r} {note}", file=sys.stderr)

    max_cost = max([float(single_cost.max())] +
                   [float(M.nondecreasing_convex_hull(cv.points())[-1, 0]) for cv in curves.values()])
    for name, cv in curves.items():
        out_routers[name]["aiq"] = M.aiq(cv.points(), max_cost=max_cost)

    return _jsonable({
        "dataset": test.name, "n_train": len(train), "n_test": len(test), "models": models,
        "best_single": _entry(best["accuracy"], best["cost"], model=models[best["index"]]),
        "oracle": _entry(oracle["accuracy"], oracle["cost"], missing=oracle["missing"],
                         share=dict(zip(models, M.share(oracle["choice"], len(models)).tolist()))),
        "random": M.random_expected(S, C),
        "single_models": [_entry(a, c, model=m) for m, a, c in zip(models, single_acc, single_cost)],
        "weak_model": models[weak], "strong_model": models[best["index"]],
        "aiq_max_cost": max_cost, "n_boot": n_boot, "seed": seed,
        "routers": out_routers,
    })


def _jsonable(x: Any) -> Any:
    """Plain Python for json.dumps: numpy scalars/arrays converted, NaN/inf as None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


# -- baton eval ------------------------------------------------------------------------------
def build_routers(spec: str, encoder: str | None = None) -> dict[str, Router]:
    """Routers from the --routers list: baseline names, or name=CHECKPOINT_DIR (loaded, marked fitted)."""
    from routers import registry

    out: dict[str, Router] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if "=" in item:
            name, path = (s.strip() for s in item.split("=", 1))
            router = registry.load_checkpoint(path)
            if not callable(getattr(router, "predict_quality", None)):
                raise ConfigError(f"checkpoint {path} ({type(router).__name__}) is not an evaluable router "
                                  "(no predict_quality)")
            router.fitted = True
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


def _accepts(cls, param: str) -> bool:
    sig = inspect.signature(cls.__init__).parameters
    return param in sig or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values())


def _split_or_all(ds: RoutingDataset, split: str) -> RoutingDataset:
    part = ds.split(split)
    return part if len(part) else ds


def _fmt(v, pct=False) -> str:
    if v is None:
        return "-"
    v = round(v, 3 if not pct else 4) + 0.0  # no "-0.000"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def print_table(result: dict) -> None:
    """One rich table: a row per router, then the sanity rows (best single, oracle, random)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{result['dataset']}: {result['n_test']} test queries, {len(result['models'])} models "
                    f"(weak {result['weak_model']}, strong {result['strong_model']})")
    for col in ("router", "accuracy [95% CI]", "cost $/query", "AIQ", "APGR", "CPT50", "CPT80",
                "gap closed", "p vs best"):
        t.add_column(col, justify="left" if col == "router" else "right")
    for name, r in result["routers"].items():
        lo, hi = r["accuracy_ci"]
        t.add_row(name, f"{_fmt(r['accuracy'])} [{_fmt(lo)}, {_fmt(hi)}]", f"{r['cost']:.3g}", _fmt(r["aiq"]),
                  _fmt(r["apgr"]), _fmt(r["cpt50"], True), _fmt(r["cpt80"], True), _fmt(r["gap_closed"]),
                  _fmt(r["p_vs_best_single"]))
    t.add_section()
    for label, row in (("best single: " + result["best_single"]["model"], result["best_single"]),
                       ("oracle", result["oracle"]), ("random (expected)", result["random"])):
        t.add_row(label, _fmt(row["accuracy"]), f"{row['cost']:.3g}", *["-"] * 6)
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(t)
    for name, r in result["routers"].items():
        if r["missing"]:
            console.print(f"note: {name} chose {r['missing']} (query, model) pairs with no recorded score; "
                          "they count as wrong")


def cli_eval(args) -> int:
    """`baton eval`: load --data (and --train), build --routers, evaluate, print, write --json/--plot."""
    from routers.data import load_dataset

    def load(spec):
        return load_dataset(spec, format=args.format, prices=args.prices, trust_pickle=args.trust_pickle,
                            seed=args.seed)

    data = load(args.data)
    test = _split_or_all(data, "test")
    source = load(args.train) if args.train else data
    validation = source.split("validation")
    if args.train:
        train = _split_or_all(source, "train")
    else:
        train = data.split("train")
        if len(test) == len(data):
            raise DataError("has no 'test' rows; evaluating on all rows would score the routers on their "
                            "own training data: pass --train with a separate training set", file=args.data)
    if sorted(train.models) != sorted(test.models) and len(train):
        raise DataError(f"training data has models {train.models} but the test data has {test.models}",
                        file=args.train or args.data)
    if len(train) and train.models != test.models:
        train, validation = train.select_models(test.models), validation.select_models(test.models)

    routers = build_routers(args.routers, encoder=args.encoder)
    result = evaluate(routers, train, test, n_boot=args.bootstrap, seed=args.seed, validation=validation)
    print_table(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"metrics -> {args.json}")
    if args.plot:
        from routers.plots import plot_cost_quality
        plot_cost_quality(result, args.plot)
        print(f"plot -> {args.plot}")
    return 0
