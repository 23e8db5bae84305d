"""Generic suites over your own question/answer rows (`{id?, prompt, answer, category?}` in local
JSONL/JSON/CSV or a hub dataset): `exact` (normalized exact match) and `fuzzy` (normalized
similarity at or above a threshold)."""

from __future__ import annotations

import difflib
import re
import string
from typing import Any

from routers.errors import DataError
from routers.tasks.base import Task, TaskItem
from routers.tasks.extract import extract_stated_answer, normalize_number
from routers.tasks.sources import read_rows, require, sample

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(s: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces; numbers numerically."""
    num = normalize_number(s)
    if num is not None:
        return num
    s = s.lower()
    s = "".join(ch for ch in s if ch not in string.punctuation)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


class ExactMatchTask(Task):
    """The stated answer ("The answer is X", "Answer: X"), else the whole reply, must equal the
    gold answer after `normalize_text`."""

    name = "exact"
    max_tokens = 256

    def load(self, limit: int | None = None, *, source: str | None = None, split: str = "test",
             seed: int = 0, **kw: Any) -> list[TaskItem]:
        if not source:
            raise DataError(f"task {self.name!r} needs a data source: use '{self.name}=FILE_OR_HUB_ID'")
        rows = read_rows(source, split=split)
        items, seen = [], set()
        for i in sample(len(rows), limit, seed):
            r = rows[i]
            item_id = str(r.get("id") if r.get("id") not in (None, "") else f"{self.name}/{i}")
            if item_id in seen:
                raise DataError(f"duplicate id {item_id!r}", file=str(source), row=i + 1, column="id")
            seen.add(item_id)
            items.append(TaskItem(
                id=item_id, prompt=str(require(r, "prompt", file=str(source), i=i + 1)),
                answer=str(require(r, "answer", file=str(source), i=i + 1)), task=self.name,
                category=str(r.get("category") or self.name)))
        return items

    def extract(self, response: str, item: TaskItem) -> str | None:
        text = extract_stated_answer(response) or (response or "").strip()
        return normalize_text(text) if text else None

    def grade(self, response: str, item: TaskItem) -> float:
        pred = self.extract(response, item)
        return float(pred is not None and self.matches(pred, normalize_text(item.answer)))

    def matches(self, pred: str, gold: str) -> bool:
        return pred == gold

    def render_answer(self, item: TaskItem, correct: bool, rng) -> str:
        if correct:
            return f"The answer is {item.answer}."
        for wrong in (_perturb(item.answer, rng), "I am not sure.", "unknown", "none of these"):
            if self.grade(f"The answer is {wrong}.", item) == 0.0:
                return f"The answer is {wrong}."
        return "I do not know."  # pragma: no cover - every candidate above matched the gold


class FuzzyMatchTask(ExactMatchTask):
    """Like `exact`, but a normalized similarity (difflib ratio) >= `threshold` counts as correct:
    for answers with harmless wording differences."""

    name = "fuzzy"

    def __init__(self, threshold: float = 0.85):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"fuzzy threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def matches(self, pred: str, gold: str) -> bool:
        return difflib.SequenceMatcher(None, pred, gold).ratio() >= self.threshold


def _perturb(answer: str, rng) -> str:
    n = normalize_number(answer)
    if n is not None and "/" not in n:
        return str(float(n) + int(rng.integers(1, 10))).removesuffix(".0")
    words = answer.split()
    return " ".join(reversed(words)) + " not" if len(words) > 1 else "not " + answer[::-1]
