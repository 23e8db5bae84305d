"""Coordination effects of the simulated pool: each moves accuracy in its documented direction by its
documented size (over many questions), only for workflow step prompts, deterministically."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from routers.errors import ConfigError
from routers.pool import load_pool
from routers.pool.simulated import step_context
from test_pool_support import ToyTask, make_items, user

N = 2000
TOL = 0.045  # > 4 standard errors of a proportion over 2000 draws
COORD = {"context_delta": 0.1, "adopt": 0.5, "verify_words": ["verify", "check"], "domain_delta": 0.15,
         "off_domain_delta": -0.2, "domains": {"toy/humanities": ["philosophy"], "gsm8k": ["arithmetic"]}}


def pool_dict(coordination: dict | None = COORD) -> dict:
    d = {"name": "t", "seed": 0, "workers": [
        {"name": "small", "backend": "simulated", "accuracy": {"default": 0.3, "toy/philosophy": 0.6},
         "verifier": {"p_catch": 0.6, "p_false_reject": 0.1},
         "extra_output_tokens": {"worker": 100, "verifier": 10}},
        {"name": "big", "backend": "simulated", "accuracy": {"default": 0.5},
         "verifier": {"p_catch": 0.9, "p_false_reject": 0.05}}]}
    if coordination is not None:
        d["coordination"] = coordination
    return d


def make_pool(coordination: dict | None = COORD, n: int = N):
    pool = load_pool(pool_dict(coordination))
    items = make_items(n, category="philosophy")
    pool.register(items, tasks={"toy": ToyTask()})
    return pool, items


def step(question: str, instruction: str | None = None, answers: tuple[str, ...] = ()) -> list[dict]:
    """A workflow step prompt as conductor.executor.render_step_prompt writes it."""
    parts = [f"Question:\n{question}"] + [f"<Agent {j} response>\n{a}\n</Agent {j} response>"
                                         for j, a in enumerate(answers)]
    if instruction:
        parts.append(f"Your task:\n{instruction}")
    return user("\n\n".join(parts))


def mean_score(pool, items, messages_for, worker="small"):
    async def go():
        return [await pool.call(worker, messages_for(it), item_id=it.id) for it in items]
    replies = asyncio.run(go())
    return float(np.mean([r.meta["score"] for r in replies])), replies


def earlier(it, correct: bool) -> str:
    return ToyTask().render_answer(it, correct, np.random.default_rng(hash(it.id) % 2**32))


def test_step_context_reads_answers_and_instruction():
    msgs = step("What is 2+2?", "Verify Agent 1.", ("The answer is 4.", "It is 5."))
    assert step_context(msgs) == (["The answer is 4.", "It is 5."], "Verify Agent 1.")
    assert step_context(step("Q?")) == ([], None)
    assert step_context(user("What is 2+2?")) is None  # not a workflow step: no effects


def test_non_step_prompts_answer_exactly_as_without_coordination():
    on, items = make_pool(n=300)
    off, _ = make_pool(None, n=300)
    plain = lambda it: user(it.prompt)  # noqa: E731
    assert [r.text for r in mean_score(on, items, plain)[1]] == [r.text for r in mean_score(off, items, plain)[1]]
    # and without a coordination block a step prompt is a plain question at the plain accuracy
    off, items = make_pool(None)
    acc, replies = mean_score(off, items, lambda it: step(it.prompt, "Philosophy: verify it.",
                                                              (earlier(it, False),)))
    assert abs(acc - 0.6) < TOL and "coordination" not in replies[0].meta


@pytest.mark.parametrize("instruction,expected,kind", [
    ("Solve this philosophy question.", 0.75, "domain"),       # 0.6 + domain_delta 0.15
    ("Do the arithmetic carefully.", 0.40, "off_domain"),      # 0.6 + off_domain_delta -0.2
    ("Answer the question.", 0.60, None),                      # names no domain: no effect
])
def test_instruction_naming_the_domain_helps_and_another_domain_hurts(instruction, expected, kind):
    pool, items = make_pool()
    acc, replies = mean_score(pool, items, lambda it: step(it.prompt, instruction))
    assert abs(acc - expected) < TOL
    assert replies[0].meta["coordination"]["instruction"] == kind
    assert replies[0].meta["p_correct"] == pytest.approx(expected)


@pytest.mark.parametrize("earlier_correct,expected", [
    (False, 0.6 * 0.6),               # a wrong answer is caught at p_catch 0.6, then re-solved at 0.6
    (True, 0.9 + 0.1 * 0.6),          # a right one kept unless falsely rejected (0.1), then re-solved
])
def test_verify_instruction_catches_earlier_errors_at_the_verifiers_rate(earlier_correct, expected):
    pool, items = make_pool()
    acc, replies = mean_score(pool, items, lambda it: step(it.prompt, "Verify the answer above.",
                                                          (earlier(it, earlier_correct),)))
    assert abs(acc - expected) < TOL
    kept = [r for r in replies if r.meta["coordination"]["verify"] == "kept"]
    redone = [r for r in replies if r.meta["coordination"]["verify"] == "redone"]
    p_keep = 0.9 if earlier_correct else 0.4
    assert abs(len(kept) / N - p_keep) < TOL
    # keeping an answer costs the verifier's extra tokens, re-solving the worker's
    assert kept[0].output_tokens < redone[0].output_tokens
    assert all(r.meta["score"] == float(earlier_correct) for r in kept)


@pytest.mark.parametrize("earlier_correct,expected", [
    (True, 0.5 * 1 + 0.5 * 0.7),      # adopts the visible answer half the time, else 0.6 + context 0.1
    (False, 0.5 * 0 + 0.5 * 0.7),
])
def test_reading_an_earlier_answer_anchors_and_adds_the_context_delta(earlier_correct, expected):
    pool, items = make_pool()
    acc, replies = mean_score(pool, items, lambda it: step(it.prompt, "Answer the question.",
                                                          (earlier(it, earlier_correct),)))
    assert abs(acc - expected) < TOL
    assert replies[0].meta["coordination"]["visible_answers"] == 1
    assert replies[0].meta["p_correct"] == pytest.approx(expected)


def test_effects_are_deterministic_per_context():
    pool, items = make_pool(n=200)
    f = lambda it: step(it.prompt, "Check it.", (earlier(it, True),))  # noqa: E731
    a, b = mean_score(pool, items, f)[1], mean_score(pool, items, f)[1]
    assert [r.text for r in a] == [r.text for r in b]
    c = mean_score(pool, items, lambda it: step(it.prompt, "Check it!", (earlier(it, True),)))[1]
    assert [r.meta["score"] for r in a] != [r.meta["score"] for r in c]  # another context, other draws


@pytest.mark.parametrize("coord,match", [
    ({"adopt": 1.5}, "coordination.adopt: must be <= 1"),
    ({"bogus": 1}, "coordination.bogus: unknown field"),
    ({"domains": {"gsm8k": "arithmetic"}}, "coordination.domains.gsm8k: expected a non-empty list"),
    ({"verify_words": []}, "coordination.verify_words: expected a non-empty list"),
])
def test_bad_coordination_block_is_named(coord, match):
    with pytest.raises(ConfigError, match=match):
        load_pool(pool_dict(coord))


def test_coordination_needs_simulated_workers():
    d = {"name": "r", "data": "x.jsonl", "coordination": {"adopt": 0.1},
         "workers": [{"name": "a", "backend": "openai", "model": "m"}]}
    with pytest.raises(ConfigError, match="only simulated workers have coordination effects"):
        load_pool(d)


def test_bundled_coordination_pool_inherits_the_default_workers():
    plain, coord = load_pool("simulated"), load_pool("simulated_coordination")
    assert coord.names == plain.names and "coordination" in coord.config and "coordination" not in plain.config
    for a, b in zip(plain.config["workers"], coord.config["workers"]):
        assert a == b


def test_pool_file_base_key(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nworkers: []\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        load_pool(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml does not exist"):
        load_pool(str(tmp_path / "c.yaml"))
    (tmp_path / "d.yaml").write_text("base: ok.yaml\nname: d\nseed: 7\n")
    (tmp_path / "ok.yaml").write_text("name: ok\nseed: 1\nworkers:\n  - {name: w, backend: simulated, "
                                      "accuracy: {default: 0.5}}\n")
    p = load_pool(str(tmp_path / "d.yaml"))
    assert p.config["name"] == "d" and p.config["seed"] == 7 and p.names == ["w"]  # this file's keys win
