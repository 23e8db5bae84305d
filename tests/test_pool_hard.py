"""configs/pools/simulated_hard.yaml and the hard task set of configs/trinity/hard.yaml: every worker
answers each task at its YAML accuracy, graded by the task's real grader; no worker is best on every
task; Thinker and Verifier effects are what the pool file says; the set holds out >= 200 questions
with every task present."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import yaml

from routers.pool.config import load_pool
from routers.tasks import get_task
from routers.tasks.base import TaskItem
from trinity.config import load_config
from trinity.data import episode_items, load_items

REPO = Path(__file__).resolve().parents[1]
POOL = REPO / "configs" / "pools" / "simulated_hard.yaml"
CONFIG = REPO / "configs" / "trinity" / "hard.yaml"
TASKS = ("mmlu", "gsm8k", "gpqa", "aime", "humaneval", "math")
NONCES = {"humaneval": 20, "aime": 20, "math": 60}  # draws per item: few items, so more draws each


def _yaml_accuracy() -> dict[str, dict[str, float]]:
    return {w["name"]: w["accuracy"] for w in yaml.safe_load(POOL.read_text())["workers"]}


def _math_items() -> list[TaskItem]:
    """MATH has no packaged source: a few items with MATH-style free-form answers."""
    answers = ["\\frac{14}{3}", "3\\sqrt{2}", "(3, -1)", "42", "x^2+1", "\\dfrac{1}{2}", "-7", "0.5", "\\pi", "12"]
    return [TaskItem(id=f"math/t{i}", prompt=f"Problem {i}: compute it. Put your final answer within \\boxed{{}}.",
                     answer=a, task="math", category="math/Algebra") for i, a in enumerate(answers)]


@pytest.fixture(scope="module")
def pool_and_items():
    pool = load_pool(str(POOL))
    items = {t: (load_items(f"{t}:{n}", None, 0)) for t, n in
             (("mmlu", 60), ("gsm8k", 60), ("gpqa", 60), ("aime", 30), ("humaneval", 20))}
    items["math"] = _math_items()
    pool.register([it for v in items.values() for it in v], {"math": get_task("math")})
    return pool, items


def _ask(pool, name, messages, **params):
    return asyncio.run(pool.call(name, messages, **params))


def test_each_worker_answers_each_task_at_its_yaml_accuracy_by_the_real_grader(pool_and_items):
    pool, items = pool_and_items
    acc = _yaml_accuracy()
    assert set(pool.names) == set(acc)

    async def draws(name, its, nonces):
        return [await pool.call(name, [{"role": "user", "content": it.prompt}], role="worker", item_id=it.id,
                                nonce=k) for it in its for k in range(nonces)]
    for name in pool.names:
        for task in TASKS:
            its = items[task]
            replies = asyncio.run(draws(name, its, NONCES.get(task, 10)))
            want = acc[name][task]
            assert all(r.meta["p_correct"] == pytest.approx(want) for r in replies), (name, task)
            grader = get_task(task)
            graded = [grader.grade(r.text, it) for r, it in zip(replies, [it for it in its
                                                                          for _ in range(NONCES.get(task, 10))])]
            assert graded == [r.meta["score"] for r in replies], (name, task)  # the real grader agrees
            n = len(graded)
            tol = max(0.02, 4 * np.sqrt(want * (1 - want) / n))
            assert abs(np.mean(graded) - want) <= tol, (name, task, np.mean(graded), want, n)


def test_no_worker_is_best_on_every_task_and_the_best_differ():
    acc = _yaml_accuracy()
    best = {t: max(acc, key=lambda w: acc[w][t]) for t in TASKS}
    assert len(set(best.values())) >= 3, best
    for w in acc:
        assert any(acc[v][t] > acc[w][t] for t in TASKS for v in acc), f"{w} is best on every task"
    # a cheap worker is the best on some task (routing has a cost-quality trade-off to find)
    prices = {w["name"]: w["output_price"] for w in yaml.safe_load(POOL.read_text())["workers"]}
    assert min(prices[best[t]] for t in TASKS) < np.median(list(prices.values()))


def test_thinker_plan_raises_the_next_workers_accuracy_by_the_thinkers_delta(pool_and_items):
    pool, items = pool_and_items
    spec = {w["name"]: w for w in yaml.safe_load(POOL.read_text())["workers"]}
    worker, it = "qwen-2.5-7b", items["gpqa"][0]
    base = spec[worker]["accuracy"]["gpqa"]
    for thinker in ("o1-mini", "llama-3.1-8b"):
        plan = _ask(pool, thinker, [{"role": "user", "content": it.prompt}], role="thinker", item_id=it.id)
        assert f"plan by {thinker}" in plan.text
        after = [_ask(pool, worker, [{"role": "user", "content": it.prompt},
                                     {"role": "assistant", "content": plan.text}], role="worker", item_id=q.id)
                 for q in items["gpqa"][:5]]
        delta = spec[thinker]["thinker"]["delta"]
        assert delta > 0 and all(r.meta["p_correct"] == pytest.approx(base + delta) for r in after)
        assert all(r.meta["thinker"] == thinker for r in after)


def test_verifier_catches_wrong_answers_at_p_catch_and_rejects_right_ones_at_p_false_reject(pool_and_items):
    pool, items = pool_and_items
    spec = {w["name"]: w["verifier"] for w in yaml.safe_load(POOL.read_text())["workers"]}
    task = get_task("gsm8k")
    rng = np.random.default_rng(0)
    for name in ("o1-mini", "llama-3.1-8b"):
        rejects = {True: [], False: []}
        for it in items["gsm8k"]:
            for right in (True, False):
                answer = task.render_answer(it, right, rng)
                for k in range(5):
                    r = _ask(pool, name, [{"role": "user", "content": it.prompt},
                                          {"role": "assistant", "content": answer}], role="verifier", item_id=it.id,
                             nonce=k)
                    assert r.meta["answer_correct"] is right
                    rejects[right].append(r.meta["verdict"] == "REJECT")
        n = len(rejects[False])
        for right, key in ((False, "p_catch"), (True, "p_false_reject")):
            p = spec[name][key]
            assert abs(np.mean(rejects[right]) - p) <= 4 * np.sqrt(p * (1 - p) / n) + 0.01, (name, key)
    assert spec["o1-mini"]["p_catch"] > spec["llama-3.1-8b"]["p_catch"]


def test_hard_set_holds_out_at_least_200_questions_with_every_task_seeded():
    cfg = load_config(CONFIG)
    splits = {}
    for seed in (0, 1):
        cfg.train.seed = seed
        train, test = episode_items(cfg)
        splits[seed] = ([it.id for it in train], [it.id for it in test])
        assert len(test) >= 200 and len(train) >= 60
        assert not set(splits[seed][0]) & set(splits[seed][1])
        present = {"mmlu", "gsm8k", "gpqa", "aime", "humaneval"}
        assert {it.task for it in test} == present and {it.task for it in train} == present
    cfg.train.seed = 0
    assert [it.id for it in episode_items(cfg)[1]] == splits[0][1]      # same seed, same split
    assert splits[0][1] != splits[1][1]                                  # the seed draws it


def test_humaneval_grades_are_memoized_by_program_but_never_a_timeout(monkeypatch):
    """The simulated pool grades the same few replies per problem many times; each program runs once."""
    import routers.tasks.code as code
    from routers.tasks.sandbox import SandboxResult
    calls = []

    def fake(program, timeout_s):
        calls.append(program)
        timed_out = "TIMEOUT" in program
        return SandboxResult(ok=not timed_out, returncode=0, stdout="", stderr="", timed_out=timed_out,
                             killed_reason="timeout" if timed_out else None, duration_s=0.0)
    monkeypatch.setattr(code, "run_code", fake)
    monkeypatch.setattr(code, "_MEMO", type(code._MEMO)())
    task = get_task("humaneval")
    it = task.load(1, seed=3)[0]
    right = task.render_answer(it, True, np.random.default_rng(0))
    assert [task.grade(right, it) for _ in range(3)] == [1.0] * 3 and len(calls) == 1
    slow = f"```python\n{it.meta['code_prompt']}    # TIMEOUT\n    pass\n```"
    assert [task.grade(slow, it) for _ in range(2)] == [0.0, 0.0] and len(calls) == 3
