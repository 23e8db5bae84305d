"""The Conductor's ablations at CPU scale, measured as workflow families (no policy is trained).

Training a policy per ablation does not fit on a 2-core machine, and a tiny policy cannot write
subtasks anyway. Each ablation instead restricts the workflows a policy may write, and two policies
over that family are scored through the one episode evaluator (`routers.evaluate.evaluate` with a
pool, as `baton eval --pool` does):

- best: a table policy. Per question domain (`routers.pool.simulated.domain_of`: gsm8k or an MMLU
  group) it runs the family's workflow with the highest mean score on the selection questions (the
  training split; ties to the cheaper), which is what GRPO on that family could at best converge to
  if it identifies the domain from the question (the table is given the domain label);
- random: a uniformly random workflow of the family per question (seeded by the question id), what
  a policy that learned nothing writes.

Families (each workflow's instructions name the question's domain, `DOMAIN_PHRASES`):
  solo(w)         one step: "Solve this <domain> question step by step ..."
  verify(w1, w2)  w1 solves; w2 reads Agent 0's answer and is told to verify it, re-solving if wrong
  refine(w1, w2)  w1 solves; w2 reads Agent 0's answer and solves the question itself
Ablations: full (all three over every worker pair), single_step (solo only: routing without a
topology), no_subtasks (the full family executed without instructions, `execute(use_subtasks=False)`),
one_worker (every step by one worker, chosen on the selection questions), random_pool (each question
sees a random 2-3 worker subset, the table falls back down its ranking to a workflow inside it),
no_coordination (the full family on the pool without coordination effects: a control). No few-shot
changes only the policy's prompt: it needs a policy and is not measured here.

Caveat (see the pool file): a worker verifying its own answer is as good a verifier as on anyone's,
so one_worker (solve then self-verify) is optimistic compared with real models.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conductor.executor import execute
from conductor.workflow import Workflow
from routers.errors import ConfigError
from routers.pool.base import Message
from routers.pool.simulated import domain_of
from routers.serving_router import CallFn, Episode, ServingRouter, last_user_text, pool_call
from routers.tasks.base import Task, TaskItem

# how an instruction names each domain (words of configs/pools/simulated_coordination.yaml's domains)
DOMAIN_PHRASES = {
    "gsm8k": "arithmetic word problem",
    "mmlu/stem": "STEM (natural science, engineering, mathematics)",
    "mmlu/humanities": "humanities (history, law, philosophy)",
    "mmlu/social_sciences": "social science (economics, psychology, politics)",
    "mmlu/other": "professional knowledge (medicine, business)",
}
SHAPES = ("solo", "verify", "refine")


def _phrase(domain: str) -> str:
    return DOMAIN_PHRASES.get(domain, "question's subject")


def make_workflow(shape: str, workers: tuple[str, ...], domain: str) -> Workflow:
    """One family member for a domain: `shape` in SHAPES over `workers` (1 for solo, 2 otherwise)."""
    p = _phrase(domain)
    solve = f"Solve this {p} question step by step and give the final answer."
    if shape == "solo":
        return Workflow([workers[0]], [solve], [[]])
    second = {"verify": f"Verify Agent 0's answer to this {p} question; if it is wrong, solve it yourself "
                        "and give the final answer.",
              "refine": f"Read Agent 0's answer, then solve this {p} question yourself and give the final answer."}
    if shape not in second:
        raise ConfigError(f"unknown workflow shape {shape!r}; expected one of {SHAPES}")
    return Workflow(list(workers), [solve, second[shape]], [[], [0]])


def family(workers: list[str], shapes: tuple[str, ...] = SHAPES, *, one_worker: bool = False) -> list[tuple]:
    """(shape, workers) members: solo over each worker; two-step shapes over ordered pairs (the same
    worker twice included), or only same-worker pairs when `one_worker`."""
    out = []
    for s in shapes:
        if s == "solo":
            out += [(s, (w,)) for w in workers]
        else:
            pairs = [(w, w) for w in workers] if one_worker else list(itertools.product(workers, repeat=2))
            out += [(s, p) for p in pairs]
    return out


@dataclass
class Ranked:
    """A family's members ranked per domain on the selection questions by the Conductor's reward
    shape, accuracy - cost_weight * dollars (ties to the cheaper): rows (member, accuracy, cost)."""
    by_domain: dict[str, list[tuple[tuple, float, float]]] = field(default_factory=dict)
    cost_weight: float = 0.0

    def __post_init__(self):
        for rows in self.by_domain.values():
            rows.sort(key=lambda x: (-(x[1] - self.cost_weight * x[2]), x[2]))

    def restrict(self, members: list[tuple]) -> "Ranked":
        keep = set(members)
        return Ranked({d: [r for r in rows if r[0] in keep] for d, rows in self.by_domain.items()}, self.cost_weight)

    def reweigh(self, cost_weight: float) -> "Ranked":
        return Ranked({d: list(rows) for d, rows in self.by_domain.items()}, cost_weight)

    def best(self, domain: str, allowed: set[str] | None = None) -> tuple:
        for member, _, _ in self.by_domain[domain]:
            if allowed is None or set(member[1]) <= allowed:
                return member
        raise ConfigError(f"no workflow of the family fits the workers {sorted(allowed or [])}")


async def _score_member(pool, member, items: list[TaskItem], use_subtasks: bool, rollouts: int,
                        tasks: dict[str, Task], concurrency: int = 64):
    from routers.tasks.registry import get_task

    call, sem = pool_call(pool), asyncio.Semaphore(concurrency)
    grader = {t: tasks.get(t) or get_task(t) for t in {it.task for it in items}}

    async def one(it: TaskItem, k: int):
        async with sem:  # nonce k: the k-th independent rollout of the same workflow
            ep = await execute(make_workflow(member[0], member[1], domain_of(it)), it.prompt, call,
                               item_id=it.id, use_subtasks=use_subtasks, params={"nonce": k} if k else None)
            return grader[it.task].grade(ep.answer, it), ep.cost
    out = await asyncio.gather(*(one(it, k) for it in items for k in range(rollouts)))
    return [tuple(np.mean(out[i * rollouts:(i + 1) * rollouts], axis=0)) for i in range(len(items))]


def rank_family(pool, members: list[tuple], items: list[TaskItem], *, use_subtasks: bool = True,
                rollouts: int = 1, tasks: dict[str, Task] | None = None) -> Ranked:
    """Score every member on `items` (the selection questions), `rollouts` independent draws per
    question (the pool's `nonce`), and rank it per domain (accuracy only; `Ranked.reweigh` adds cost).
    `tasks` grades suites outside the task registry (as `Pool.register` takes them)."""
    pool.register(items, tasks=tasks)
    domains = sorted({domain_of(it) for it in items})

    async def all_members():
        return [await _score_member(pool, m, items, use_subtasks, rollouts, tasks or {}) for m in members]
    results = asyncio.run(all_members())
    ranked = Ranked()
    for d in domains:
        idx = [i for i, it in enumerate(items) if domain_of(it) == d]
        rows = [(m, float(np.mean([r[i][0] for i in idx])), float(np.mean([r[i][1] for i in idx])))
                for m, r in zip(members, results)]
        ranked.by_domain[d] = rows
    return Ranked(ranked.by_domain)


class FamilyRouter(ServingRouter):
    """A workflow-family policy as a `ServingRouter`: "best" runs the ranked table's top workflow for
    the question's domain (within the question's worker subset, if any), "random" a uniformly random
    member (within the subset). No language model: orchestration tokens are 0."""

    def __init__(self, name: str, members: list[tuple], domains: dict[str, str], *, ranked: Ranked | None = None,
                 use_subtasks: bool = True, subset: tuple[int, int] | None = None, seed: int = 0):
        self.name, self.members, self.domains, self.ranked = name, members, domains, ranked
        self.workers = sorted({w for m in members for w in m[1]})
        self.use_subtasks, self.subset, self.seed = use_subtasks, subset, seed

    def _allowed(self, question: str) -> set[str] | None:
        if self.subset is None:
            return None
        rng = random.Random(f"{self.seed}:subset:{question}")
        return set(rng.sample(self.workers, rng.randint(*self.subset)))

    def choose(self, question: str) -> tuple[Workflow, tuple]:
        domain = self.domains.get(question)
        if domain is None:
            raise ConfigError(f"{self.name}: the question is not in this policy's domain index "
                              f"({len(self.domains)} questions): {question[:80]!r}")
        allowed = self._allowed(question)
        if self.ranked is not None:
            member = self.ranked.best(domain, allowed)
        else:
            fits = [m for m in self.members if allowed is None or set(m[1]) <= allowed]
            member = random.Random(f"{self.seed}:random:{question}").choice(fits)
        return make_workflow(member[0], member[1], domain), member

    async def answer(self, messages: list[Message], call: CallFn, *, lam: float = 0.0) -> Episode:
        question = last_user_text(messages)
        wf, member = self.choose(question)
        ep = await execute(wf, question, call, use_subtasks=self.use_subtasks)
        ep.meta["family_member"] = [member[0], list(member[1])]
        return ep


# -- the ablation table ------------------------------------------------------------------------
ABLATIONS = {  # name -> (what it restricts, shapes, one_worker, use_subtasks, subset, coordination pool?)
    "full": ("every shape over every worker pair, instructions on", SHAPES, False, True, None, True),
    "single_step": ("solo workflows only: routing without a topology", ("solo",), False, True, None, True),
    "no_subtasks": ("the full family executed without instructions", SHAPES, False, False, None, True),
    "one_worker": ("every step by one worker (chosen on the selection questions)", SHAPES, True, True, None, True),
    "random_pool": ("each question sees a random 2-3 worker subset", SHAPES, False, True, (2, 3), True),
    "no_coordination": ("the full family on the pool without coordination effects (control)", SHAPES, False, True,
                        None, False),
}
NOT_MEASURED = {"no_few_shot": "changes only the policy's prompt (its examples); a workflow family has no "
                               "prompt, so it needs a trained policy (GPU scale)"}


def _ranked_for(name: str, full: Ranked, workers: list[str], sel: list[TaskItem]) -> tuple[list[tuple], Ranked, dict]:
    """The ablation's members and ranking, read off the full family's ranking on the same pool and
    switches (every restricted family is a subset of it)."""
    _, shapes, one, _, _, _ = ABLATIONS[name]
    if not one:
        members = family(workers, shapes)
        return members, full.restrict(members), {}
    best = None   # one worker: the worker whose own table scores best on the selection questions
    for w in workers:
        members = family([w], shapes, one_worker=True)
        ranked = full.restrict(members)
        acc = _table_reward(ranked, sel)
        if best is None or acc > best[3]:
            best = (w, members, ranked, acc)
    return best[1], best[2], {"worker": best[0], "selection_reward": best[3]}


def _table_reward(ranked: Ranked, sel: list[TaskItem]) -> float:
    """The table policy's mean selection reward (accuracy - cost_weight * cost) over `sel`."""
    n = {d: sum(domain_of(it) == d for it in sel) for d in ranked.by_domain}
    top = {d: ranked.by_domain[d][0] for d in n}
    return sum((top[d][1] - ranked.cost_weight * top[d][2]) * k for d, k in n.items()) / max(1, sum(n.values()))


POLICIES = {"best": "", "cost-aware": " (cost-aware)", "random": " (random)"}  # row name suffixes


def run_family_ablations(*, data: str = "embedded", pool: str = "simulated_coordination", plain_pool: str = "simulated",
                         seed: int = 0, n_boot: int = 1000, selection_limit: int | None = None,
                         rollouts: int = 3, cost_weight: float = 10.0, progress: bool = True) -> dict[str, Any]:
    """Every ablation's policies (best by accuracy, best by accuracy - cost_weight * dollars, random)
    scored on the test split through `routers.evaluate.evaluate` (episodes against the pool), with
    95% bootstrap intervals and paired bootstrap p-values (`routers.metrics`) against the full
    family's policy of the same kind (the full family's own rows: against its best policy)."""
    from routers import metrics as M
    from routers.data import load_dataset
    from routers.episode_eval import task_items
    from routers.evaluate import build_routers, evaluate, split_for_eval
    from routers.pool.config import load_pool

    ds = load_dataset(data, seed=seed)
    train, validation, test = split_for_eval(ds, None, data_spec=data)
    sel = task_items(train)
    if selection_limit is not None and selection_limit < len(sel):
        sel = random.Random(seed).sample(sel, selection_limit)
    test_items = task_items(test)
    domains = {it.prompt: domain_of(it) for it in [*task_items(train), *test_items]}
    pools = {True: load_pool(pool), False: load_pool(plain_pool)}
    workers = pools[True].names
    routers: dict[bool, dict[str, Any]] = {True: dict(build_routers("random,best-single")), False: {}}
    tables: dict[str, Any] = {}
    full: dict[tuple[bool, bool], Ranked] = {}  # (coordination pool, subtasks) -> the full family ranked
    for name, (_, _, _, use_subtasks, subset, coord) in ABLATIONS.items():
        if (coord, use_subtasks) not in full:
            full[coord, use_subtasks] = rank_family(pools[coord], family(workers), sel, use_subtasks=use_subtasks,
                                                    rollouts=rollouts)
        for policy, weight in (("best", 0.0), ("cost-aware", cost_weight)):
            members, ranked, extra = _ranked_for(name, full[coord, use_subtasks].reweigh(weight), workers, sel)
            routers[coord][name + POLICIES[policy]] = FamilyRouter(
                name, members, domains, ranked=ranked, use_subtasks=use_subtasks, subset=subset, seed=seed)
            tables[name + POLICIES[policy]] = {
                "members": len(members), "cost_weight": weight, **extra,
                "selected": {d: {"workflow": [m[0], list(m[1])], "selection_accuracy": a, "selection_cost": c,
                                 "selection_questions": sum(domain_of(it) == d for it in sel)}
                             for d, rows in ranked.by_domain.items() for m, a, c in rows[:1]}}
        routers[coord][name + POLICIES["random"]] = FamilyRouter(f"{name}-random", members, domains,
                                                                 use_subtasks=use_subtasks, subset=subset, seed=seed)
    res = {coord: evaluate(r, train, test, validation=validation, pool=pools[coord], seed=seed, n_boot=n_boot,
                           progress=progress) for coord, r in routers.items()}
    if res[True]["per_query"]["ids"] != res[False]["per_query"]["ids"]:
        raise AssertionError("the two pools were scored on different test questions")
    per_q = {n: np.asarray(v["score"]) for r in res.values() for n, v in r["per_query"].items() if n != "ids"}
    rows = {}
    for coord, r in res.items():
        for n, x in r["routers"].items():
            abl = n.split(" (")[0]
            policy = next((k for k, suf in POLICIES.items() if suf and n.endswith(suf)), "best") \
                if abl in ABLATIONS else "baseline"
            ref = "full" + POLICIES.get(policy, "")
            ref = "full" if ref == n or policy == "baseline" else ref
            rows[n] = {"ablation": abl if abl in ABLATIONS else None, "policy": policy,
                       "pool": pool if coord else plain_pool, "kind": x["kind"],
                       "accuracy": x["accuracy"], "accuracy_ci": x["accuracy_ci"], "cost": x["cost"],
                       "cost_ci": x["cost_ci"], "turns": x.get("turns"), "p_vs": ref,
                       "p": M.paired_bootstrap_p(per_q[n], per_q[ref], n_boot=n_boot, seed=seed)}
    order = [a + suf for a in ABLATIONS for suf in POLICIES.values()] + ["best-single", "random"]
    return {"data": data, "pool": pool, "plain_pool": plain_pool, "seed": seed, "n_boot": n_boot,
            "n_test": len(test_items), "n_selection": len(sel), "rollouts": rollouts, "cost_weight": cost_weight,
            "test_rule": res[True].get("test_rule"), "workers": workers,
            "best_single_recorded": res[True]["best_single"],
            "ablations": {a: v[0] for a, v in ABLATIONS.items()}, "not_measured": NOT_MEASURED,
            "rows": {n: rows[n] for n in order if n in rows}, "selected": tables}
