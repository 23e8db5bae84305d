"""Task items and graders: data plus small functions, registered by name (lm-eval-harness style)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskItem:
    id: str
    prompt: str                 # the full text a worker sees (question + choices + format hint)
    answer: str                 # gold answer in the task's canonical form ("B", "42", test code...)
    task: str                   # suite name: "mmlu", "gsm8k", "gpqa", "aime", "humaneval", ...
    category: str               # subject / subtask; the routing category
    meta: dict[str, Any] = field(default_factory=dict)


class Task(abc.ABC):
    """A task suite: how to load items and how to grade a response (score in [0, 1])."""

    name: str
    max_tokens: int = 512       # default generation budget when recording (params override it)

    @abc.abstractmethod
    def load(self, limit: int | None = None, **kw: Any) -> list[TaskItem]:
        ...

    @abc.abstractmethod
    def extract(self, response: str, item: TaskItem) -> str | None:
        """The answer found in `response`, normalized; None if none could be found."""

    def grade(self, response: str, item: TaskItem) -> float:
        pred = self.extract(response, item)
        return float(pred is not None and pred == item.answer)

    def grade_detail(self, response: str, item: TaskItem) -> tuple[float, dict[str, Any]]:
        """`grade`'s score and the facts of how it was graded that a recording keeps beside it in
        the cell (code tasks: the sandbox isolation it ran in). Default: the score alone."""
        return self.grade(response, item), {}

    def render_answer(self, item: TaskItem, correct: bool, rng) -> str:
        """A response text that `grade` scores 1.0 if `correct` else 0.0; the simulated pool uses it
        to answer in the task's own format. `rng` is a numpy Generator (deterministic choices)."""
        return f"The answer is {item.answer}." if correct else "I am not sure."

    def messages(self, item: TaskItem) -> list[dict[str, str]]:
        """The chat messages a worker is sent for `item` (one user turn with the full prompt)."""
        return [{"role": "user", "content": item.prompt}]
