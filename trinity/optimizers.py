"""The optimizer stage: the methods compared in the paper's Table 2, on the same objective and
budget, behind one entry point, `optimize`, that picks one by `TrainConfig.optimizer`.

The search methods are ask/tell strategies (`trinity.trainer`) driven by one loop here, which is
the only place that joins a strategy to the objective:
    while not opt.done: X = opt.ask(); mean = opt.tell(X, objective fitness of X); opt.end_generation(...)
- sep-cma-es: `trinity.trainer.SepCMAES` (the method; resumable).
- random-search: `trinity.trainer.RandomSearch` (same number of fitness evaluations as CMA-ES).
- reinforce: policy gradient on the head's softmax with a mean baseline, Adam; per iteration it
  samples as many episodes as one CMA-ES generation does (popsize x repeats per query).
- sft: cross-entropy of the head on per-query best-worker labels (ties to the better mean score,
  then the cheaper worker; queries where all workers score the same are left out).
- two-stage: SFT on soft targets softmax(score / tau) with a KL loss, then sep-CMA-ES from there
  (the Fugu recipe).

Selection is the same for all (`Selector`, `TrainConfig.select`): with held-out training queries
(`data.validation_fraction` > 0) and `select: best-validation`, every optimizer offers its current
point after each step (a CMA-ES generation's mean, random search's best so far, a REINFORCE
iteration, an SFT epoch) and the best-scoring one is returned; with `select: last` (or no held-out
queries) every optimizer returns its last point. The selection score is never the reported one:
`trinity.train` reports validation accuracy on a second held-out half that selection did not see.

The gradient methods need a differentiable head: they train the linear head (head.kind = linear)
on the cached features of a `SelectionObjective`; the flat layout is W (outputs x d), row-major,
agent rows first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from routers.errors import ConfigError
from trinity.config import TrainConfig, default_popsize
from trinity.fitness import Objective, SelectionObjective
from trinity.trainer import Distributed, RandomSearch, RunLogger, SepCMAES, TrainResult


class Selector:
    """The one rule that picks which point of a run is returned (see the module docstring)."""

    def __init__(self, validate, rule: str = "best-validation"):
        self.validate = validate if rule == "best-validation" else None
        self.rule = rule if validate is not None else "last"
        self.x, self.step, self.score, self.trace = None, None, -np.inf, []

    def offer(self, step: int, x: np.ndarray) -> float | None:
        if self.validate is None:
            self.x, self.step = np.asarray(x, np.float64).copy(), step
            return None
        s = float(self.validate(x))
        self.trace.append({"step": step, "selection": s})
        if s > self.score:
            self.x, self.step, self.score = np.asarray(x, np.float64).copy(), step, s
        return s

    def summary(self) -> dict:
        return {"rule": self.rule, "step": self.step, "selection_score": None if self.validate is None else self.score}


def _popsize(cfg: TrainConfig, n: int) -> int:
    return int(cfg.popsize) if cfg.popsize is not None else default_popsize(n)


def _linear_dims(objective: SelectionObjective) -> tuple[int, int, int]:
    if not isinstance(objective, SelectionObjective):
        raise ConfigError("train.optimizer: gradient optimizers (reinforce, sft, two-stage) train the head on "
                          "cached features (data.task: route, train.mode: head)")
    d = objective.features.shape[1]
    kind = getattr(objective.head, "kind", "linear")
    if kind not in ("linear", "selection") or objective.n_params % d:
        raise ConfigError(f"train.optimizer: gradient optimizers need head.kind: linear (got a {kind} head "
                          f"with {objective.n_params} parameters for d={d})")
    return objective.n_params // d, d, len(objective.workers)


def _torch_head(objective: SelectionObjective, x0: np.ndarray):
    import torch
    n_out, d, _ = _linear_dims(objective)
    W = torch.nn.Parameter(torch.tensor(np.asarray(x0, np.float32).reshape(n_out, d)))
    return W, torch.tensor(objective.features)


def _flat(W) -> np.ndarray:
    return W.detach().numpy().astype(np.float64).reshape(-1)


def supervised(objective: SelectionObjective, cfg: TrainConfig, soft: bool, x0: np.ndarray | None = None,
               select: Selector | None = None) -> TrainResult:
    """Full-batch Adam on the agent logits: cross-entropy to the best worker (soft=False) or
    KL(softmax(score/tau) || policy) (soft=True)."""
    import torch
    torch.manual_seed(cfg.seed)
    _, _, L = _linear_dims(objective)
    W, F = _torch_head(objective, objective.x0() if x0 is None else x0)
    S = torch.tensor(objective.scores, dtype=torch.float32)
    C = torch.tensor(objective.costs, dtype=torch.float32)
    if soft:
        target = torch.softmax(S / cfg.tau, dim=-1)
        keep = torch.ones(len(S), dtype=torch.bool)
    else:
        # ties go to the worker with the better mean training score, then the cheaper one;
        # queries where every worker scores the same carry no label and are left out
        util = S + 1e-4 * S.mean(0) - 1e-6 * C
        target = torch.nn.functional.one_hot(util.argmax(-1), L).float()
        keep = (S.max(-1).values > S.min(-1).values)
    opt = torch.optim.Adam([W], lr=cfg.lr)
    history = []
    for epoch in range(cfg.epochs):
        logp = torch.log_softmax(F[keep] @ W[:L].T, dim=-1)
        loss = -(target[keep] * logp).sum(-1).mean()   # = KL(target || p) + const for soft targets
        opt.zero_grad()
        loss.backward()
        opt.step()
        row = {"epoch": epoch, "loss": float(loss.detach())}
        if select is not None:
            row["validation"] = select.offer(epoch, _flat(W))
        history.append(row)
    x = select.x if select is not None and select.x is not None else _flat(W)
    fit = objective.evaluate(x[None], 0, [0])[0]
    return TrainResult(x=x, best_x=x, best_fitness=fit.fitness, history=history, evaluations=0)


def reinforce(objective: SelectionObjective, cfg: TrainConfig, x0: np.ndarray | None = None,
              select: Selector | None = None) -> TrainResult:
    """REINFORCE with a per-query mean baseline; reward = score - cost_weight * cost."""
    import torch
    torch.manual_seed(cfg.seed)
    _, _, L = _linear_dims(objective)
    W, F = _torch_head(objective, objective.x0() if x0 is None else x0)
    S = torch.tensor(objective.scores, dtype=torch.float32)
    R_all = S - objective.cfg.cost_weight * torch.tensor(objective.costs, dtype=torch.float32)
    samples = _popsize(cfg, objective.n_params) * cfg.repeats
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam([W], lr=cfg.lr)
    history = []
    for g in range(cfg.iterations):
        rows = torch.as_tensor(objective.batch(g))
        logp = torch.log_softmax(F[rows] @ W[:L].T, dim=-1)             # (N, L)
        a = torch.multinomial(logp.detach().exp(), samples, replacement=True, generator=gen)  # (N, K)
        r = R_all[rows].gather(1, a)
        adv = r - r.mean(1, keepdim=True)
        loss = -(adv * logp.gather(1, a)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        row = {"generation": g, "mean_reward": float(r.mean())}
        if select is not None:
            row["validation"] = select.offer(g, _flat(W))
        history.append(row)
    x = select.x if select is not None and select.x is not None else _flat(W)
    fit = objective.evaluate(x[None], 0, [0])[0]
    return TrainResult(x=x, best_x=x, best_fitness=fit.fitness, history=history,
                       evaluations=cfg.iterations * _popsize(cfg, objective.n_params))


def optimize(objective: Objective, cfg: TrainConfig, *, out_dir: str | Path | None = None, resume: bool = False,
             run_config: dict[str, Any] | None = None, name: str = "trinity", validate=None,
             x0: np.ndarray | None = None, stop_after: int | None = None,
             on_generation: Callable[[dict[str, Any]], None] | None = None, guard=None) -> TrainResult:
    """Train with `cfg.optimizer`; every optimizer gets the same objective, budget and selection rule.
    `validate(x) -> score` (held-out training queries) drives `Selector` by `cfg.select`; `x0`
    (default `objective.x0()`) is where every optimizer starts (a warm start, `train.init_from`).
    `resume` continues sep-CMA-ES from `out_dir`; `stop_after` ends a search after that many
    generations in this call (to test resume); `on_generation(row)` sees each log row. `guard`
    (`trinity.spend.SpendGuard`) may end the search between generations (a spend budget) and adds
    its fields to each row, before the row is logged and saved.
    The returned result carries `selection` (rule, step, selection score)."""
    if x0 is not None and np.asarray(x0).size != objective.n_params:
        raise ConfigError(f"train.init_from: {np.asarray(x0).size} starting values for {objective.n_params} parameters")
    sel = Selector(validate, getattr(cfg, "select", "best-validation"))
    if cfg.optimizer in ("reinforce", "sft"):   # gradient methods: one call on the objective's arrays
        res = (reinforce(objective, cfg, x0=x0, select=sel) if cfg.optimizer == "reinforce"
               else supervised(objective, cfg, soft=False, x0=x0, select=sel))
        res.selection = sel.summary()
        return res
    if cfg.optimizer not in ("sep-cma-es", "random-search", "two-stage"):
        raise ConfigError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}")
    stage1 = supervised(objective, cfg, soft=True, x0=x0) if cfg.optimizer == "two-stage" else None
    start = objective.x0() if x0 is None else np.asarray(x0, dtype=np.float64)
    start = stage1.x if stage1 is not None else start
    dist = Distributed()
    if cfg.optimizer == "random-search":
        opt, log_name, log_on = RandomSearch(cfg, objective.n_params, start), "random-search", True
    else:
        opt = SepCMAES(cfg, objective.n_params, start, out_dir, resume=resume, is_main=dist.is_main)
        log_name, log_on = name, dist.is_main
    logger = RunLogger(cfg, cfg.iterations, opt.generation, None if out_dir is None else Path(out_dir), run_config,
                       log_name, enabled=log_on, desc=opt.desc)
    if dist.world > 1 and dist.is_main:
        print(f"{opt.desc}: population sharded over {dist.world} processes", flush=True)
    done_here = 0
    if guard is not None:
        guard.resume(opt.history)
    try:
        while not opt.done and (stop_after is None or done_here < stop_after):
            if guard is not None and guard.stop_before(opt.generation):
                break
            X = opt.ask()
            mine = dist.shard(len(X))            # each process scores its slice of the population
            point = opt.tell(X, dist.gather_results(objective.evaluate(X[mine], opt.generation, mine.tolist())))
            row = opt.end_generation(sel.offer(opt.generation, point), point,
                                     None if guard is None else guard.generation_row(opt.generation))
            logger.log(row)
            if on_generation is not None and dist.is_main:
                on_generation(row)
            done_here += 1
    finally:
        logger.close()
    if isinstance(opt, RandomSearch):
        res = opt.result(selected=False)
        res.x = sel.x if sel.x is not None else res.x
        res.selection = sel.summary()
        return res
    res = opt.result(selected=sel.validate is not None)
    res.selection = _cma_selection(res, sel)
    if stage1 is not None:
        res.history = [{"stage": "sft", **h} for h in stage1.history] + res.history
    return res


def _cma_selection(res: TrainResult, sel: Selector) -> dict:
    """The CMA-ES trainer's own record of the same rule: the generation whose mean scored best."""
    vals = [(h.get("generation"), h["validation"]) for h in res.history if h.get("validation") is not None]
    if sel.validate is None or not vals:
        return {"rule": "last", "step": len(res.history) - 1, "selection_score": None}
    step, score = max(vals, key=lambda t: t[1])
    return {"rule": sel.rule, "step": step, "selection_score": float(score)}
