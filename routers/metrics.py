"""Routing metrics over dense (n_queries, n_models) score and cost matrices. Pure numpy.

Conventions shared by every function here:
- `scores[i, j]` in [0, 1] is model j's score on query i; NaN means "not recorded". A routing that
  picks a NaN cell counts it as 0 (a wrong answer, never skipped) and reports how many such cells it
  hit as `missing` (`routers.accounting`, the one rule).
- `costs[i, j]` is dollars; NaN means unknown, and every cost that sums over an unknown cell is
  NaN (unknown), never a zero-filled guess (`routers.accounting`).
- `choice` is an int array (n,) of model indices, one per query.
- `cost` is the mean dollars per query (RouterBench plots total cost; every metric below that uses
  cost is invariant to that scaling).

Peers, for the exact definitions cited below: RouterBench (withmartian/routerbench,
`evaluation/AIQ.py`: `get_non_descreasing_convex_hull_of`, `calc_AIQ`) and RouteLLM
(lm-sys/RouteLLM, `routellm/evals/evaluate.py`: `pct_call_metric`, `apgr_metric`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Iterable

import numpy as np

from routers.accounting import decision_costs, mean_cost, score_chosen


def _matrices(scores, costs) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n_queries, n_models), got shape {s.shape}")
    c = np.full(s.shape, np.nan) if costs is None else np.asarray(costs, dtype=np.float64)
    if c.shape != s.shape:
        raise ValueError(f"costs shape {c.shape} != scores shape {s.shape}")
    return s, c


def _choice(choice, n: int, m: int) -> np.ndarray:
    ch = np.asarray(choice)
    if ch.shape != (n,) or not np.issubdtype(ch.dtype, np.integer):
        raise ValueError(f"choice must be {n} integer model indices, got dtype {ch.dtype} shape {ch.shape}")
    if n and (ch.min() < 0 or ch.max() >= m):
        raise ValueError(f"choice has model indices outside [0, {m})")
    return ch


# -- one routing ------------------------------------------------------------------------------
def chosen(scores, costs, choice) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-query (score, cost) of the chosen models, NaN scores as 0, unknown costs NaN, and the
    count of NaN scores hit."""
    s, c = _matrices(scores, costs)
    ch = _choice(choice, *s.shape)
    rows = np.arange(len(ch))
    sc, missing = score_chosen(s[rows, ch])
    return sc, c[rows, ch], missing


def accuracy_cost(scores, costs, choice) -> dict:
    """Accuracy (mean chosen score; NaN counts 0, see `missing`) and mean cost per query of a routing."""
    sc, co, missing = chosen(scores, costs, choice)
    n = len(sc)
    return {"accuracy": float(sc.mean()) if n else float("nan"),
            "cost": float(co.mean()) if n else float("nan"), "missing": missing}


def share(choice, n_models: int) -> np.ndarray:
    """Fraction of queries routed to each model (RouterEval's routing distribution)."""
    ch = np.asarray(choice)
    return np.bincount(ch, minlength=n_models) / max(len(ch), 1)


# -- reference routings -----------------------------------------------------------------------
def single_models(scores, costs) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, mean cost) of always choosing each model; NaN scores count 0 as in any routing, a
    model with any unknown cost has unknown (NaN) mean cost."""
    s, c = _matrices(scores, costs)
    return score_chosen(s)[0].mean(axis=0), mean_cost(c, axis=0)


def best_single(scores, costs) -> dict:
    """The model with the highest mean score on the evaluated split; a tie goes to the cheaper one.

    The evaluated (test) split is used on purpose, as RouteLLM and RouterBench do: it is the strongest
    fixed choice a router has to beat, not a choice a user could make without the labels."""
    acc, cost = single_models(scores, costs)
    order = np.lexsort((cost, -np.round(acc, 12)))
    j = int(order[0])
    return {"index": j, "accuracy": float(acc[j]), "cost": float(cost[j])}


def cheapest_model(scores, costs) -> int | None:
    """The model with the lowest mean cost (tie: the more accurate one): RouteLLM's "weak" model.
    None when any model's cost is unknown: an unpriced model might be the cheapest."""
    acc, cost = single_models(scores, costs)
    if np.isnan(cost).any():
        return None
    return int(np.lexsort((-np.round(acc, 12), np.round(cost, 15)))[0])


def oracle_choice(scores, costs) -> np.ndarray:
    """Per query, the cheapest model with the best score on that query (for 0/1 scores: the cheapest
    correct model). A query no model gets right routes to the cheapest model, as RouterBench's
    oracle does with `no_model_correct`. Costs are compared per query; ties go to the lower index."""
    s, c = _matrices(scores, costs)
    s0 = score_chosen(s)[0]
    best = s0 == s0.max(axis=1, keepdims=True)
    return np.argmin(np.where(best, decision_costs(c), np.inf), axis=1)


def oracle(scores, costs) -> dict:
    """Accuracy/cost of `oracle_choice`: the ceiling any router on this pool can reach."""
    ch = oracle_choice(scores, costs)
    return {**accuracy_cost(scores, costs, ch), "choice": ch}


def random_expected(scores, costs) -> dict:
    """Exact expected accuracy and cost of a uniformly random choice per query (no sampling):
    the mean over queries of the mean over models, NaN scores counting 0."""
    acc, cost = single_models(scores, costs)
    return {"accuracy": float(acc.mean()), "cost": float(cost.mean())}


def gap_closed(router_acc: float, best_single_acc: float, oracle_acc: float) -> float:
    """(router - best single) / (oracle - best single): 0 = no better than one fixed model, 1 = oracle.
    NaN when the oracle is no better than the best single model (nothing to close)."""
    gap = oracle_acc - best_single_acc
    return float((router_acc - best_single_acc) / gap) if gap > 1e-12 else float("nan")


# -- cost-quality curve -----------------------------------------------------------------------
@dataclass
class Curve:
    """A router swept over its trade-off knob: one row per lam."""
    lam: np.ndarray       # (k,)
    cost: np.ndarray      # (k,) mean $ per query
    accuracy: np.ndarray  # (k,)
    choices: np.ndarray   # (k, n) chosen model per query
    paid: np.ndarray      # (k, n) $ paid per query

    def points(self) -> np.ndarray:
        """(k, 2) [cost, quality] points, the input of `aiq`."""
        return np.column_stack([self.cost, self.accuracy])

    def call_share(self, weak: int) -> np.ndarray:
        """(k,) fraction of queries not routed to model `weak`: RouteLLM's "% strong model calls"."""
        return (self.choices != weak).mean(axis=1) if self.choices.shape[1] else np.zeros(len(self.lam))


def sweep(route: Callable[[float], np.ndarray], lams: Iterable[float], scores, costs,
          paid: Callable[[np.ndarray], np.ndarray] | None = None) -> Curve:
    """Evaluate `route(lam) -> choice` at each lam: the router's cost-quality curve.

    `paid(choice) -> (n,)` gives the dollars actually spent per query when a router pays for more
    than the chosen answer (a cascade pays for each answer it rejected); default: the chosen cell."""
    s, c = _matrices(scores, costs)
    n, m = s.shape
    lams = np.asarray(list(lams), dtype=np.float64)
    rows = np.arange(n)
    s0 = score_chosen(s)[0]
    # filled lam by lam: no (lams x n) temporaries beyond the two arrays the curve keeps
    choices = np.empty((len(lams), n), dtype=np.int32 if m < 2 ** 31 else np.intp)
    spent, accuracy = np.empty((len(lams), n)), np.empty(len(lams))
    for i, lam in enumerate(lams):
        choices[i] = ch = _choice(route(float(lam)), n, m)
        got = c[rows, ch] if paid is None else np.asarray(paid(ch), float)
        if got.shape != (n,):
            raise ValueError(f"paid() returned shape {got.shape}, expected ({n},)")
        spent[i] = got
        accuracy[i] = s0[rows, ch].mean() if n else np.nan
    return Curve(lam=lams, cost=spent.mean(axis=1), accuracy=accuracy, choices=choices, paid=spent)


def nondecreasing_convex_hull(points) -> np.ndarray:
    """RouterBench's non-decreasing convex hull of (cost, quality) points, sorted by cost.

    RouterBench raises every point to the upper concave envelope of the set (max over chords that
    bracket it), then drops each point lower than its predecessor. The same set of points is the
    upper hull (monotone chain) cut after its highest point; the trapezoid area is identical.
    Points sharing a cost keep the highest quality (RouterBench's handling of ties is order-dependent).
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p = p[np.all(np.isfinite(p), axis=1)]
    if not len(p):
        raise ValueError("no finite (cost, quality) points")
    p = p[np.lexsort((-p[:, 1], p[:, 0]))]
    p = p[np.r_[True, np.diff(p[:, 0]) > 0]]  # per cost, the best quality (sorted first)
    hull: list[np.ndarray] = []
    for q in p:
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            if (a[0] - o[0]) * (q[1] - o[1]) - (a[1] - o[1]) * (q[0] - o[0]) >= 0:
                hull.pop()  # a lies on or under the chord o-q
            else:
                break
        hull.append(q)
    h = np.array(hull)
    return h[h[:, 1] >= np.maximum.accumulate(h[:, 1])]


def aiq(points, max_cost: float | None = None) -> float:
    """Average Improvement in Quality, exactly as RouterBench's `calc_AIQ`: the non-decreasing convex
    hull, extended flat to `max_cost` (RouterBench: the largest hull cost among the routers compared;
    default: this hull's own), trapezoid area divided by `max_cost`. The area starts at the hull's
    cheapest point, not at cost 0, as in RouterBench. NaN when any point's cost is unknown (NaN):
    a curve with an unknown cost has no area (`routers.accounting`)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if np.isnan(pts[:, 0]).any() or (max_cost is not None and np.isnan(max_cost)):
        return float("nan")
    h = nondecreasing_convex_hull(pts)
    top = float(h[-1, 0]) if max_cost is None else float(max_cost)
    if top < h[-1, 0] - 1e-15:
        raise ValueError(f"max_cost {top} is below the hull's largest cost {h[-1, 0]}")
    if top <= 0:
        return float("nan")
    h = np.vstack([h, [top, h[-1, 1]]])
    return float(np.trapezoid(h[:, 1], h[:, 0]) / top)


def _completed_curve(call_share, accuracy, weak_acc: float) -> tuple[np.ndarray, np.ndarray]:
    """Sort by call share and complete the curve to span [0, 1], as RouteLLM's sweeps always do:
    start at (0, weak accuracy) (everything to the weak model) where the curve starts later, and
    stay flat after its largest share (a budget of more strong calls than the router uses changes
    nothing, the convention of RouteLLM's optimal curve and of AIQ's flat extension)."""
    x, y = np.asarray(call_share, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    if x.shape != y.shape or not len(x):
        raise ValueError(f"call_share and accuracy must be non-empty and equal length, got {x.shape}, {y.shape}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if x[0] > 0:
        x, y = np.r_[0.0, x], np.r_[weak_acc, y]
    if x[-1] < 1:
        x, y = np.r_[x, 1.0], np.r_[y, y[-1]]
    return x, y


def apgr(call_share, accuracy, weak_acc: float, strong_acc: float) -> float:
    """Average Performance Gap Recovered, RouteLLM's `apgr_metric` generalized to K models.

    x = share of calls NOT routed to the weak model; weak = the cheapest model, strong = the best
    single model. With K=2 x is RouteLLM's "% strong model calls". RouteLLM sorts the points by x
    and computes (AUC - weak AUC) / (strong AUC - weak AUC) with trapezoids over x in [0, 1]; a lam
    sweep need not reach x = 0 or 1, so the curve is first completed to [0, 1] (`_completed_curve`);
    a curve that spans [0, 1] gives RouteLLM's number exactly. NaN when strong == weak."""
    if abs(strong_acc - weak_acc) < 1e-12:
        return float("nan")
    x, y = _completed_curve(call_share, accuracy, weak_acc)
    span = x[-1] - x[0]
    auc = np.trapezoid(y, x)
    return float((auc - weak_acc * span) / ((strong_acc - weak_acc) * span))


def cpt(call_share, accuracy, weak_acc: float, strong_acc: float, frac: float) -> float:
    """Call-Performance Threshold CPT(frac), RouteLLM's `pct_call_metric` generalized to K models:
    the share of calls not routed to the weak (cheapest) model needed to reach
    weak + frac * (strong - weak) accuracy, by linear interpolation along the completed curve
    (see `apgr`). RouteLLM uses np.interp(target, accuracy, share), which assumes accuracy rises with
    share; the first crossing is used here, the same on such curves and well defined on others.
    Returns a fraction in [0, 1] (RouteLLM prints percent); NaN if the curve never reaches the target."""
    x, y = _completed_curve(call_share, accuracy, weak_acc)
    target = weak_acc + frac * (strong_acc - weak_acc)
    if y[0] >= target:
        return float(x[0])
    up = np.flatnonzero((y[:-1] < target) & (y[1:] >= target))
    if not len(up):
        return float("nan")
    i = up[0]
    return float(x[i] + (target - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))


# -- bootstrap --------------------------------------------------------------------------------
# Up to this many gathered cells (n_boot x n) the resample means are computed by gathering the
# resampled values (the original method, bit for bit); above it, from per-resample counts (below).
GATHER_MAX_CELLS = 50_000_000


def bootstrap_means(values, n_boot: int = 1000, seed: int = 0, method: str = "auto") -> np.ndarray:
    """(n_boot, k) means of `values` (n,) or (n, k) over query resamples with replacement.

    The resample indices depend only on (n, n_boot, seed), so calls with the same seed on the same
    queries are paired: the accuracy CI, the cost CI and the p-value of one evaluation all use the
    same resamples. Pass every column at once (`evaluate` does): the resampling is the cost, the
    columns nearly free.

    Two ways to the same resample means, both with memory bounded by ~1M cells per chunk whatever n:
    - "gather" (n_boot x n <= GATHER_MAX_CELLS under "auto"): mean of values[indices] per resample.
    - "counts" (larger): each resample's indices -> how often each query was drawn (bincount), and
      the means are counts @ values / n, one matrix product for all k columns; the gather's
      n_boot x n x k random reads become n_boot x n counter increments. The same indices, so the
      same statistic; only the order of floating-point summation differs (~1e-15 relative; exactly
      equal for 0/1 scores)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    n, k = v.shape
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of queries")
    if method == "auto":
        method = "gather" if n_boot * n <= GATHER_MAX_CELLS else "counts"
    if method not in ("gather", "counts"):
        raise ValueError(f"method must be 'auto', 'gather' or 'counts', got {method!r}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, k))
    chunk = max(1, 1_000_000 // (n * k if method == "gather" else n))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))  # chunking does not change the stream: same indices either way
        if method == "gather":
            out[start:start + b] = v[idx].mean(axis=1)
        else:
            idx += (np.arange(b) * n)[:, None]
            counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
            out[start:start + b] = (counts @ v) / n
    return out


def _percentile_ci(means: np.ndarray, level: float) -> np.ndarray:
    """(k, 2) percentile interval per column of bootstrap means (n_boot, k)."""
    a = (1 - level) / 2
    return np.quantile(means, [a, 1 - a], axis=0).T


def _two_sided_p(means: np.ndarray) -> float:
    """p of a paired bootstrap from the resample means of the per-query differences (see
    `paired_bootstrap_p`)."""
    return float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))


def bootstrap_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> np.ndarray:
    """Percentile bootstrap interval of the mean: (2,) for (n,) values, (k, 2) for (n, k)."""
    v = np.asarray(values, dtype=np.float64)
    ci = _percentile_ci(bootstrap_means(v, n_boot, seed), level)
    return ci[0] if v.ndim == 1 else ci


def paired_bootstrap_p(a, b, n_boot: int = 1000, seed: int = 0) -> float:
    """Two-sided paired bootstrap p-value of mean(a) != mean(b) over the same queries.

    d = a - b per query; the means of d over `n_boot` query resamples give
    p = min(1, 2 * min(P*(mean d <= 0), P*(mean d >= 0))), the smallest level at which the
    percentile bootstrap interval of the mean difference excludes 0. p = 1 for identical routers,
    p = 0 means below 1/n_boot."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return _two_sided_p(bootstrap_means(d, n_boot, seed)[:, 0])


def bootstrap_table(columns: dict[Hashable, np.ndarray], pairs: dict[Hashable, tuple[Hashable, Hashable]],
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95
                    ) -> tuple[dict[Hashable, list[float]], dict[Hashable, float]]:
    """Every interval and paired p-value of one evaluation from ONE pass of resamples.

    `columns` name -> per-query values (n,): the percentile interval of each mean. `pairs`
    name -> (a, b) column names: the paired p-value of mean(a) != mean(b). Same resamples (same
    seed), same statistics as `bootstrap_ci` / `paired_bootstrap_p` call by call. Where the "counts"
    method applies (large n) the n x n_boot resampling is done once for all columns instead of once per
    router and comparison; below that, call by call as before, so results there are bit for bit those
    of `bootstrap_ci` on the (n, k) columns and `paired_bootstrap_p` per pair."""
    names = list(columns)
    values = np.column_stack([np.asarray(columns[c], np.float64) for c in names])
    diffs = [values[:, names.index(a)] - values[:, names.index(b)] for a, b in pairs.values()]
    if n_boot * len(values) > GATHER_MAX_CELLS:
        means = bootstrap_means(np.column_stack([values] + [d[:, None] for d in diffs]), n_boot, seed)
        ci_means, d_means = means[:, :len(names)], [means[:, len(names) + i] for i in range(len(diffs))]
    else:
        ci_means = bootstrap_means(values, n_boot, seed)
        d_means = [bootstrap_means(d, n_boot, seed)[:, 0] for d in diffs]
    ci = _percentile_ci(ci_means, level)
    return {c: ci[i].tolist() for i, c in enumerate(names)}, {p: _two_sided_p(m) for p, m in zip(pairs, d_means)}
