"""Shared helpers for the pool tests (no tests here): a toy task whose grader and renderer agree."""

from __future__ import annotations

import re

from routers.tasks.base import Task, TaskItem


class ToyTask(Task):
    """Answers are letters A-D; `The answer is X.` is graded by exact letter match."""

    name = "toy"

    def __init__(self, n: int = 0, category: str = "philosophy"):
        self.n, self.category = n, category

    def load(self, limit=None, **kw):
        n = self.n if limit is None else min(self.n, limit)
        return make_items(n, category=self.category, task=self.name)

    def extract(self, response, item):
        m = re.search(r"answer is \(?([A-D])\)?", response)
        return m.group(1) if m else None

    def render_answer(self, item, correct, rng):
        if correct:
            return f"Let me think. The answer is {item.answer}."
        wrong = [c for c in "ABCD" if c != item.answer]
        return f"Let me think. The answer is {wrong[int(rng.integers(len(wrong)))]}."


def make_items(n: int, *, category: str = "philosophy", task: str = "toy", prefix: str = "q") -> list[TaskItem]:
    return [TaskItem(id=f"{prefix}{i}", prompt=f"[{task}/{category}] Question number {i}: pick A, B, C or D.",
                     answer="ABCD"[i % 4], task=task, category=category) for i in range(n)]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]
