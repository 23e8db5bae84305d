"""What episode training spends on worker calls, the budget that stops it (`train.max_spend_usd`),
and the dry run `baton train trinity --estimate`.

Only episode training (`data.task: episode`) calls workers; route mode replays recorded scores and
costs and spends nothing.

- `SpendMeter` wraps the pool the objective calls. Per call it counts a response-cache hit (free:
  `WorkerReply.cached`) or a live call and its dollars: the reply's cost, or for a worker the pool
  file gives no price `train.unpriced_cost_usd` per call, else unknown (never 0).
- `SpendGuard`, passed to `trinity.optimizers.optimize`, adds to every generation's row the
  cumulative spend, the generation's spend, calls and cache hit rate, and the projected total
  spend; between generations it stops the search when spend so far plus the projected next
  generation would pass the budget. Projection: the first generation's upper bound (`Projection`),
  then the larger of the last generation's spend and the mean so far. A stop never leaves a partial
  generation, and the rows are part of the trainer state saved after every generation, so
  `--resume` with a larger budget continues the path of an uninterrupted run, spend included.
  The final evaluation is paid from the same budget: skipped (checkpoint written unevaluated)
  when its projected cost would pass it.
- `Projection` / `estimate(cfg)`: worker calls, upper bound G x P x B x R x K for training plus
  (n_eval + n_test) x K for the final evaluation; with a response cache a tighter bound, since the
  first turn's call is the same for every candidate and repeat of an item (a generation asks them
  concurrently, so all of them miss there; a later generation misses only on a (worker, role) pair
  not yet asked, at most workers x roles such generations); and dollars with every reply
  `protocol.max_tokens` long, at the dearest worker's prices (upper bound) and at the mean prices.
  `estimate` loads neither the coordinator nor any worker.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from routers.accounting import known_dollars
from routers.errors import ConfigError
from routers.pool.base import estimate_tokens, messages_tokens
from trinity.config import TrinityConfig

ROUTE_NOTE = ("data.task route replays recorded scores and costs: no worker calls, nothing spent "
              "(train.max_spend_usd applies to episode training)")


# -- prices ---------------------------------------------------------------------------------------
def unpriced(cfg: TrinityConfig, pool=None) -> list[str]:
    """Workers without a price: named in the pool file without input_price/output_price, or (a pool
    given in memory, no file) priced 0 for both or not priced at all; an explicit 0 in a file is free."""
    if cfg.data.pool is not None:
        from routers.pool.config import unpriced_workers
        return unpriced_workers(cfg.data.pool)
    prices = getattr(pool, "prices", None)
    return [n for n in pool.names if prices is None or tuple(prices(n)) == (0.0, 0.0)]


def per_call_prices(names: list[str], prices: dict[str, tuple[float, float]], unpriced_names: list[str],
                    unpriced_cost: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """($/M input, $/M output, fixed $ per call) per worker; an unpriced worker is charged
    `unpriced_cost` per call, or NaN (unknown) without it."""
    ip = np.array([0.0 if n in unpriced_names else prices[n][0] for n in names])
    op = np.array([0.0 if n in unpriced_names else prices[n][1] for n in names])
    fixed = np.array([(np.nan if unpriced_cost is None else unpriced_cost) if n in unpriced_names else 0.0
                      for n in names])
    return ip, op, fixed


def refuse_unpriced_budget(cfg: TrinityConfig, names: list[str]) -> None:
    if cfg.train.max_spend_usd is not None and names and cfg.train.unpriced_cost_usd is None:
        src = f" in {cfg.data.pool}" if cfg.data.pool else ""
        raise ConfigError(f"train.max_spend_usd: no price for worker(s) {', '.join(names)}{src}, so their spend "
                          "is unknown (never counted as $0); give them input_price/output_price in the pool file "
                          "or pass train.unpriced_cost_usd=<dollars per call>")


# -- projection -----------------------------------------------------------------------------------
@dataclass
class Projection:
    """Worker calls and dollars a run may spend (see the module docstring); None: unknown."""
    batch: int                             # items a generation
    generation_calls: list[int]            # upper bound per training generation
    generation_usd: list[float | None]     # upper bound per generation (dearest worker, max_tokens replies)
    calls: int                             # upper bound, training + final evaluation
    cached_calls: int | None               # bound with the pool's response cache (None: no cache)
    usd: float | None                      # upper bound, dearest worker
    cached_usd: float | None
    mean_price_usd: float | None           # the same calls at the pool's mean prices
    eval_calls: int
    eval_usd: float | None

    @classmethod
    def of(cls, cfg: TrinityConfig, train_items: list, eval_items: list, test_items: list, popsize: int,
           workers: list[str], prices: dict[str, tuple[float, float]], unpriced_names: list[str],
           cached: bool) -> "Projection":
        from trinity.fitness import minibatch
        P, R, K, G = int(popsize), cfg.train.repeats, cfg.protocol.max_turns, cfg.train.iterations
        out_tok = cfg.protocol.max_tokens
        roles = list(cfg.protocol.roles) if cfg.head.roles else ["worker"]   # a roles-free head: Worker turns
        ip, op, fixed = per_call_prices(workers, prices, unpriced_names, cfg.train.unpriced_cost_usd)

        def item_costs(items: list) -> tuple[np.ndarray, np.ndarray]:
            """(n, K) dollars of the call at turn t, dearest worker and mean prices."""
            base = np.array([max(messages_tokens([{"content": getattr(cfg.protocol, f"{r}_prompt")},
                                                  {"content": it.prompt}]) for r in roles) for it in items], float)
            cue = max(estimate_tokens(f"Continue as the {r.capitalize()}.") + 4 for r in roles)
            t = np.arange(K, dtype=float)
            tok_in = base[:, None] + t[None, :] * (out_tok + 4) + (t[None, :] > 0) * cue   # (n, K)
            per = (tok_in[..., None] * ip + out_tok * op) / 1e6 + fixed                   # (n, K, W)
            return per.max(-1), per.mean(-1)

        dear, mean = item_costs(train_items)
        batches = [minibatch(len(train_items), cfg.train.batch_size, cfg.train.seed, g) for g in range(G)]
        gen_calls = [P * R * K * len(b) for b in batches]
        gen_usd = [known_dollars(P * R * float(dear[b].sum())) for b in batches]
        e_dear = [item_costs(its) for its in (eval_items, test_items) if its]
        eval_calls = (len(eval_items) + len(test_items)) * K
        eval_usd = known_dollars(sum(float(d.sum()) for d, _ in e_dear))
        eval_mean = known_dollars(sum(float(m.sum()) for _, m in e_dear))
        usd = None if eval_usd is None or None in gen_usd else sum(gen_usd) + eval_usd
        n_asked = np.zeros(len(train_items))
        for b in batches:
            n_asked[b] += 1
        mean_usd = known_dollars(P * R * float((n_asked[:, None] * mean).sum()))
        mean_usd = None if mean_usd is None or eval_mean is None else mean_usd + eval_mean
        cached_calls = cached_usd = None
        if cached:   # first-turn calls: all P*R of an item's first generation, then P*R in at most W*roles more
            later = np.minimum(np.maximum(n_asked - 1, 0), len(workers) * len(roles))
            first = (n_asked > 0) * (1 + later) * P * R
            rest = n_asked * P * R
            cached_calls = int(first.sum() + (rest * (K - 1)).sum()) + eval_calls
            cu = known_dollars(float((first * dear[:, 0]).sum() + (rest[:, None] * dear[:, 1:]).sum()))
            cached_usd = None if cu is None or eval_usd is None else cu + eval_usd
        return cls(batch=len(batches[0]) if batches else 0, generation_calls=gen_calls, generation_usd=gen_usd,
                   calls=sum(gen_calls) + eval_calls, cached_calls=cached_calls, usd=usd, cached_usd=cached_usd,
                   mean_price_usd=mean_usd,
                   eval_calls=eval_calls, eval_usd=eval_usd)


def estimate(cfg: TrinityConfig) -> dict[str, Any]:
    """The dry run of `cfg`: worker calls and projected dollars (module docstring), from the pool
    file's prices and the task items; no coordinator is loaded and no worker is called."""
    if cfg.data.task == "route":
        return {"task": "route", "worker_calls": 0, "usd": 0.0, "note": ROUTE_NOTE}
    if cfg.data.pool is None:
        raise ConfigError("data.pool: data.task 'episode' needs a pool YAML")
    if cfg.train.popsize is None:
        raise ConfigError("train.popsize: null (pycma's default 4 + 3 ln n depends on the coordinator's parameter "
                          "count, which --estimate does not load the coordinator to learn); set train.popsize=N")
    if cfg.train.optimizer not in ("sep-cma-es", "random-search", "two-stage"):
        raise ConfigError(f"train.optimizer: --estimate counts episode generations of the search methods, "
                          f"not {cfg.train.optimizer!r}")
    from routers.pool.config import read_pool_config
    from trinity.data import episode_items, final_eval_items
    pool_cfg = read_pool_config(cfg.data.pool)
    workers = [w["name"] for w in pool_cfg["workers"]]
    prices = {w["name"]: (w["input_price"], w["output_price"]) for w in pool_cfg["workers"]}
    names = unpriced(cfg)
    train_items, test_items = episode_items(cfg)
    p = Projection.of(cfg, train_items, final_eval_items(cfg, train_items), test_items, cfg.train.popsize, workers,
                      prices, names, cached=bool(pool_cfg.get("cache")))
    return {"task": "episode", "pool": cfg.data.pool, "workers": workers, "unpriced_workers": names,
            "unpriced_cost_usd": cfg.train.unpriced_cost_usd,
            "generations": cfg.train.iterations, "popsize": cfg.train.popsize, "repeats": cfg.train.repeats,
            "max_turns": cfg.protocol.max_turns, "train_items": len(train_items), "test_items": len(test_items),
            "batch": p.batch,
            "worker_calls": p.calls, "eval_calls": p.eval_calls, "worker_calls_with_cache": p.cached_calls,
            "response_cache": pool_cfg.get("cache"), "reply_tokens": cfg.protocol.max_tokens,
            "usd": p.usd, "usd_with_cache": p.cached_usd, "usd_at_mean_prices": p.mean_price_usd,
            "first_generation_usd": p.generation_usd[0] if p.generation_usd else 0.0,
            "max_spend_usd": cfg.train.max_spend_usd}


def _usd(x: float | None) -> str:
    return "?" if x is None else f"${x:,.4f}"


def format_estimate(e: dict[str, Any]) -> str:
    if e["task"] == "route":
        return f"estimate: 0 worker calls, $0: {e['note']}"
    lines = [f"estimate for {e['pool']} ({len(e['workers'])} workers), before any worker call:",
             f"  worker calls (upper bound): {e['worker_calls']:,} = {e['generations']} generations x popsize "
             f"{e['popsize']} x batch {e['batch']} x repeats {e['repeats']} x max_turns {e['max_turns']}, plus "
             f"{e['eval_calls']:,} for the final evaluation ({e['max_turns']} turns on the evaluated training and "
             f"{e['test_items']} test items)"]
    if e["worker_calls_with_cache"] is not None:
        lines.append(f"  with the response cache {e['response_cache']}: at most {e['worker_calls_with_cache']:,} live "
                     "calls (first-turn calls repeat across candidates and generations)")
    else:
        lines.append("  the pool has no response cache (set `cache:` in the pool file): every call is live")
    cached = "" if e["usd_with_cache"] is None else f", {_usd(e['usd_with_cache'])} with the cache"
    lines.append(f"  projected cost, every reply {e['reply_tokens']} tokens: upper bound {_usd(e['usd'])} (dearest "
                 f"worker){cached}; {_usd(e['usd_at_mean_prices'])} at the pool's mean prices; first generation "
                 f"{_usd(e['first_generation_usd'])}")
    if e["unpriced_workers"]:
        how = (f"charged ${e['unpriced_cost_usd']:g} per call (train.unpriced_cost_usd)" if e["unpriced_cost_usd"]
               is not None else "cost unknown ('?'); pass train.unpriced_cost_usd=<dollars per call> or price them")
        lines.append(f"  unpriced workers: {', '.join(e['unpriced_workers'])}: {how}")
    if e["max_spend_usd"] is not None:
        lines.append(f"  train.max_spend_usd: ${e['max_spend_usd']:g}")
    return "\n".join(lines)


# -- metering -------------------------------------------------------------------------------------
class SpendMeter:
    """The pool as the objective sees it (`names`, `call`, the rest passed through), counting calls,
    cache hits and live dollars since the last `take`."""

    def __init__(self, pool, unpriced_names: list[str] = (), unpriced_cost: float | None = None):
        self.pool, self.unpriced, self.unpriced_cost = pool, set(unpriced_names), unpriced_cost
        self._calls, self._hits, self._usd = 0, 0, []

    @property
    def names(self) -> list[str]:
        return list(self.pool.names)

    def __getattr__(self, name: str):
        if name == "pool":
            raise AttributeError(name)
        return getattr(self.pool, name)

    async def call(self, name: str, messages, **params):
        reply = await self.pool.call(name, messages, **params)
        self._calls += 1
        if getattr(reply, "cached", False):
            self._hits += 1
        elif name in self.unpriced:
            self._usd.append(np.nan if self.unpriced_cost is None else float(self.unpriced_cost))
        else:
            self._usd.append(float(reply.cost))
        return reply

    def take(self) -> tuple[int, int, float | None]:
        """(calls, cache hits, live dollars) since the last take; dollars None when any is unknown.
        Summed exactly (fsum), so the order replies came back in does not change the figure."""
        calls, hits, usd = self._calls, self._hits, self._usd
        self._calls, self._hits, self._usd = 0, 0, []
        return calls, hits, known_dollars(math.fsum(usd))   # a NaN (unknown) term makes the sum unknown


class SpendGuard:
    """The budget between generations and each generation's spend row (module docstring)."""

    def __init__(self, meter: SpendMeter, budget: float | None, *, iterations: int, first_generation_usd: float | None,
                 eval_usd: float | None, episodes_per_generation: int, eval_episodes: int):
        self.meter, self.budget, self.iterations = meter, budget, int(iterations)
        self.first_usd, self.eval_upper, self.episodes = first_generation_usd, eval_usd, int(episodes_per_generation)
        self.eval_episodes = int(eval_episodes)
        self.spent: float | None = 0.0
        self.gens: list[float | None] = []
        self.stopped: dict[str, Any] | None = None

    def resume(self, history: list[dict[str, Any]]) -> None:
        """Spend so far from the saved rows of a resumed run (a row without spend: unknown)."""
        self.gens = [h.get("generation_spend_usd") for h in history]
        self.spent = history[-1].get("spend_usd") if history else 0.0
        self.meter.take()

    def next_generation_usd(self) -> float | None:
        if not self.gens:
            return self.first_usd
        if any(g is None for g in self.gens):
            return None
        return max(self.gens[-1], float(np.mean(self.gens)))

    def evaluation_usd(self, episodes: int) -> float | None:
        """Projected dollars of `episodes` argmax episodes: per-episode training spend (the larger of
        the last generation's and the mean), or the upper bound before any generation ran."""
        nxt = self.next_generation_usd()
        if not self.gens or nxt is None:
            return self.eval_upper if not self.gens else None
        return nxt / max(self.episodes, 1) * episodes

    def _over(self, projected: float | None) -> bool:
        if self.budget is None:
            return False
        if self.spent is None or projected is None:
            raise ConfigError("train.max_spend_usd: the spend so far is unknown (a worker without a price, or a "
                              "trainer state saved without spend); pass train.unpriced_cost_usd or start a new --out")
        return self.spent + projected > self.budget

    def stop_before(self, generation: int) -> bool:
        """True: the next generation's projected spend would pass the budget (nothing of it has run)."""
        nxt = self.next_generation_usd()
        if not self._over(nxt):
            return False
        if not self.gens:
            raise ConfigError(f"train.max_spend_usd: ${self.budget:g} does not cover the first generation (projected "
                              f"up to {_usd(nxt)}: every reply protocol.max_tokens long at the dearest worker's "
                              "prices); raise it, or lower train.popsize/batch_size/repeats or protocol.max_tokens "
                              "(see --estimate)")
        self.stopped = {"reason": "train.max_spend_usd", "before_generation": int(generation),
                        "spent_usd": self.spent, "next_generation_usd": nxt, "budget_usd": self.budget}
        print(f"train.max_spend_usd: stopped before generation {generation}: spent {_usd(self.spent)}, the next "
              f"generation is projected at {_usd(nxt)}, budget ${self.budget:g}; the trainer state is saved: "
              "raise train.max_spend_usd and --resume to continue", flush=True)
        return True

    def generation_row(self, generation: int) -> dict[str, Any]:
        """Spend fields of the generation that just ran (cumulative $, this generation's $, calls,
        cache hit rate, projected total $ of the run including the final evaluation)."""
        calls, hits, usd = self.meter.take()
        self.gens.append(usd)
        self.spent = None if self.spent is None or usd is None else self.spent + usd
        nxt, ev = self.next_generation_usd(), self.evaluation_usd(self.eval_episodes)
        left = self.iterations - generation - 1
        total = None if None in (self.spent, nxt, ev) else self.spent + left * nxt + ev
        return {"spend_usd": self.spent, "generation_spend_usd": usd, "worker_calls": calls,
                "cache_hit_rate": hits / calls if calls else 0.0, "projected_total_usd": total}

    def refuses_evaluation(self, episodes: int) -> str | None:
        """Why the final evaluation of `episodes` argmax episodes does not run (training was stopped,
        or its projection would pass the budget), or None: it runs."""
        if self.stopped is not None:
            return "not run: training stopped by train.max_spend_usd (raise it and --resume)"
        proj = self.evaluation_usd(episodes)
        if not self._over(proj):
            return None
        why = (f"not run: its projected {_usd(proj)} on top of the {_usd(self.spent)} spent would pass "
               f"train.max_spend_usd ${self.budget:g} (raise it and --resume)")
        print(f"train.max_spend_usd: final evaluation {why}", flush=True)
        return why

    def summary(self) -> dict[str, Any]:
        """Spend of the run so far (training plus evaluation), for metrics.json."""
        calls, hits, usd = self.meter.take()
        if calls:
            self.spent = None if self.spent is None or usd is None else self.spent + usd
        return {"usd": self.spent, "budget_usd": self.budget, "generations": len(self.gens),
                "evaluation_usd": usd if calls else 0.0, "evaluation_calls": calls,
                "evaluation_cache_hit_rate": hits / calls if calls else None, "stopped": self.stopped}


def make_guard(cfg: TrinityConfig, pool, n_params: int, train_items: list, eval_items: list, test_items: list):
    """(metered pool, guard) for `train_episode` (`n_params`: the searched vector's length, for the
    default population): prices from the pool, unpriced workers refused under a budget unless priced
    by `train.unpriced_cost_usd`, the first generation's projection. Under sharding: (pool, None)."""
    from trinity.config import default_popsize
    names = unpriced(cfg, pool)
    refuse_unpriced_budget(cfg, names)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if cfg.train.max_spend_usd is not None:
            raise ConfigError("train.max_spend_usd: not supported with the population sharded over processes "
                              "(each process sees only its own calls); run one process")
        return pool, None
    workers = list(pool.names)
    get = getattr(pool, "prices", None)
    prices = {n: (tuple(get(n)) if get is not None else (0.0, 0.0)) for n in workers}
    P = int(cfg.train.popsize) if cfg.train.popsize is not None else default_popsize(n_params)
    proj = Projection.of(cfg, train_items, eval_items, test_items, P, workers, prices, names,
                         cached=getattr(pool, "cache", None) is not None)
    meter = SpendMeter(pool, names, cfg.train.unpriced_cost_usd)
    guard = SpendGuard(meter, cfg.train.max_spend_usd, iterations=cfg.train.iterations,
                       first_generation_usd=proj.generation_usd[0] if proj.generation_usd else 0.0,
                       eval_usd=proj.eval_usd, episodes_per_generation=P * cfg.train.repeats * max(proj.batch, 1),
                       eval_episodes=len(eval_items) + len(test_items))
    return meter, guard


__all__ = ["SpendMeter", "SpendGuard", "Projection", "estimate", "format_estimate", "make_guard", "unpriced",
           "ROUTE_NOTE"]
