"""The simulated pool: deterministic under a seed, calibrated to its config, role effects."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from routers.errors import ConfigError
from routers.pool import BadRequest, UnknownQuery, load_pool
from test_pool_support import ToyTask, make_items, user

N = 2000
TOL = 0.045  # > 4 standard errors of a proportion over 2000 draws (sd <= 0.0112)


def pool_dict(seed: int = 0, **extra) -> dict:
    return {"name": "t", "seed": seed, "workers": [
        {"name": "small", "backend": "simulated", "input_price": 1.0, "output_price": 2.0,
         "accuracy": {"default": 0.3, "toy": 0.5, "toy/humanities": 0.6, "toy/philosophy": 0.7, "gsm8k": 0.9},
         "verifier": {"p_catch": 0.6, "p_false_reject": 0.1}, "thinker": {"delta": 0.0}, **extra},
        {"name": "big", "backend": "simulated", "accuracy": {"default": 0.5},
         "thinker": {"delta": 0.2}, "verifier": {"p_catch": 0.9, "p_false_reject": 0.05}},
    ]}


def make_pool(seed: int = 0, n: int = N, category: str = "philosophy", **extra):
    pool = load_pool(pool_dict(seed, **extra))
    items = make_items(n, category=category)
    pool.register(items, tasks={"toy": ToyTask()})
    return pool, items


def run(coro):
    return asyncio.run(coro)


async def answer_all(pool, name, items, **params):
    return [await pool.call(name, user(it.prompt), **params) for it in items]


def test_same_call_same_reply_and_seed_changes_draws():
    pool, items = make_pool(seed=0, n=200)
    a = run(answer_all(pool, "small", items))
    b = run(answer_all(pool, "small", items))
    assert [r.text for r in a] == [r.text for r in b]
    pool2, _ = make_pool(seed=1, n=200)
    c = run(answer_all(pool2, "small", items))
    assert [r.meta["score"] for r in a] != [r.meta["score"] for r in c]
    d = run(answer_all(pool, "small", items, nonce=1))
    assert [r.meta["score"] for r in a] != [r.meta["score"] for r in d]


@pytest.mark.parametrize("category,expected", [("philosophy", 0.7), ("moral_disputes", 0.6),  # humanities group
                                               ("abstract_algebra", 0.5)])                   # task level
def test_per_category_accuracy_matches_config(category, expected):
    pool, items = make_pool(category=category)
    replies = run(answer_all(pool, "small", items))
    task = ToyTask()
    graded = np.array([task.grade(r.text, it) for r, it in zip(replies, items)])
    assert np.array_equal(graded, [r.meta["score"] for r in replies])  # text grades as drawn
    assert abs(graded.mean() - expected) < TOL, (category, graded.mean())


def test_tokens_cost_latency_accounting():
    pool, items = make_pool(n=3, extra_output_tokens={"worker": 100}, latency={"base_s": 0.5, "per_output_token_s": 0.01})
    r = run(pool.call("small", user(items[0].prompt)))
    assert r.input_tokens == (len(items[0].prompt) + 3) // 4 + 4
    assert r.output_tokens == (len(r.text) + 3) // 4 + 100
    assert r.cost == pytest.approx((r.input_tokens * 1.0 + r.output_tokens * 2.0) / 1e6)
    assert r.latency_s == pytest.approx(0.5 + 0.01 * r.output_tokens)


def test_verifier_catch_and_false_reject_rates():
    pool, items = make_pool()
    task = ToyTask()
    rng = np.random.default_rng(0)

    async def verdicts(correct: bool):
        out = []
        for it in items:
            ans = task.render_answer(it, correct, rng)
            msgs = [*user(it.prompt), {"role": "assistant", "content": ans},
                    {"role": "user", "content": "Check the answer above."}]
            r = await pool.call("small", msgs, role="verifier")
            assert r.text.splitlines()[-1] in ("VERDICT: ACCEPT", "VERDICT: REJECT")
            assert r.meta["answer_correct"] is correct
            out.append(r.text.endswith("REJECT"))
        return np.mean(out)

    assert abs(run(verdicts(False)) - 0.6) < TOL   # p_catch
    assert abs(run(verdicts(True)) - 0.1) < TOL    # p_false_reject


def test_thinker_plan_raises_next_workers_accuracy():
    pool, items = make_pool(category="philosophy")

    async def with_plan():
        scores = []
        for it in items:
            plan = await pool.call("big", user(it.prompt), role="thinker")
            assert "[thinker]" in plan.text
            r = await pool.call("small", [*user(it.prompt), {"role": "assistant", "content": plan.text},
                                          {"role": "user", "content": "Now answer."}])
            assert r.meta["p_correct"] == pytest.approx(0.9)
            scores.append(r.meta["score"])
        return np.mean(scores)

    assert abs(run(with_plan()) - 0.9) < TOL  # 0.7 + big's delta 0.2


def test_lookup_by_item_id_and_by_contained_question():
    pool, items = make_pool(n=10)
    it = items[3]
    r1 = run(pool.call("small", user("whatever the text says"), item_id=it.id))
    assert r1.meta["item_id"] == it.id and r1.meta["graded"]
    r2 = run(pool.call("small", [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": f"Please solve:\n{it.prompt}\nThanks."}]))
    assert r2.meta["item_id"] == it.id
    with pytest.raises(UnknownQuery, match="item_id 'nope'"):
        run(pool.call("small", user("x"), item_id="nope"))


def test_unregistered_question_gets_generic_ungraded_reply():
    pool, _ = make_pool(n=5)
    r = run(pool.call("small", user("Tell me a joke about routers.")))
    assert r.meta["graded"] is False and "simulat" in r.text
    assert r == run(pool.call("small", user("Tell me a joke about routers.")))


def test_named_tasks_load_lazily_through_the_resolver():
    from routers.pool.config import build_pool, validate_pool_config
    cfg = validate_pool_config({**pool_dict(), "tasks": ["toy"]})
    pool = build_pool(cfg)
    pool["small"].sim.resolver = lambda name: {"toy": ToyTask(n=50)}[name]
    r = run(pool.call("small", user(make_items(50)[7].prompt)))
    assert r.meta["item_id"] == "q7"


def test_bad_role_and_missing_default_accuracy():
    pool, items = make_pool(n=2)
    with pytest.raises(BadRequest, match="unknown role 'critic'"):
        run(pool.call("small", user(items[0].prompt), role="critic"))
    bad = pool_dict()
    del bad["workers"][1]["accuracy"]["default"]
    with pytest.raises(ConfigError, match=r"workers\[1\]\.accuracy\.default"):
        load_pool(bad)


def test_embedded_default_pool_has_distinct_strengths():
    pool = load_pool("simulated")
    assert len(pool.names) == 6
    prices = {n: sum(pool.prices(n)) for n in pool.names}
    flagship = max(prices, key=prices.get)
    assert flagship == "gpt-4o"
    acc = {n: pool[n].accuracy for n in pool.names if n != flagship}  # strengths among the cheaper ones
    best_gsm8k = max(acc, key=lambda n: acc[n]["gsm8k"])
    best_hum = max(acc, key=lambda n: acc[n].get("mmlu/humanities", acc[n]["mmlu"]))
    cheapest = min(prices, key=prices.get)
    assert len({best_gsm8k, best_hum, cheapest}) == 3
    assert all(acc[cheapest][k] < acc[n][k] for n in acc if n != cheapest for k in ("mmlu", "gsm8k"))
