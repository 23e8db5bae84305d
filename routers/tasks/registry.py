"""Task suites by name, and `load_task_items` for specs like "mmlu:200,gsm8k:50,exact=qa.jsonl:20"."""

from __future__ import annotations

import re
from typing import Any

from routers.errors import ConfigError
from routers.tasks.base import Task, TaskItem
from routers.tasks.code import HumanEval
from routers.tasks.generic import ExactMatchTask, FuzzyMatchTask
from routers.tasks.math_tasks import AIME, GSM8K, MATH
from routers.tasks.multiple_choice import GPQA, MMLU

TASKS: dict[str, type[Task]] = {
    "mmlu": MMLU,
    "gpqa": GPQA,
    "gsm8k": GSM8K,
    "math": MATH,
    "aime": AIME,
    "humaneval": HumanEval,
    "exact": ExactMatchTask,
    "fuzzy": FuzzyMatchTask,
}


def get_task(name: str, **kw: Any) -> Task:
    """A fresh task suite by name (`kw` go to its constructor, e.g. fuzzy's threshold)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kw)


def parse_task_spec(spec: str) -> list[tuple[str, str | None, int | None]]:
    """"mmlu:200,math=HuggingFaceH4/MATH-500:50,qa.jsonl" -> [(task, source, limit), ...].
    A part is TASK[=SOURCE][:LIMIT]; a bare file or hub id (no registered task name) means
    `exact=SOURCE`."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        limit = None
        m = re.fullmatch(r"(.*):(\d+)", part)
        if m:
            part, limit = m.group(1), int(m.group(2))
        name, source = part.split("=", 1) if "=" in part else (part, None)
        if source is None and name not in TASKS:
            if "/" in name or "." in name:
                name, source = "exact", name
            else:
                raise ConfigError(f"task spec {spec!r}: unknown task {name!r}; known tasks: "
                                  f"{', '.join(sorted(TASKS))} (or TASK=FILE for your own data)")
        if name not in TASKS:
            raise ConfigError(f"task spec {spec!r}: unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
        out.append((name, source or None, limit))
    if not out:
        raise ConfigError(f"task spec {spec!r} names no task")
    return out


def load_task_items(spec: str, *, limit: int | None = None, seed: int = 0) -> list[TaskItem]:
    """Items of every part of `spec` (see `parse_task_spec`); `limit` applies to parts without
    their own. Samples are seeded, so the same spec and seed give the same items."""
    items: list[TaskItem] = []
    for name, source, own_limit in parse_task_spec(spec):
        kw: dict[str, Any] = {"seed": seed}
        if source is not None:
            kw["source"] = source
        items += get_task(name).load(own_limit if own_limit is not None else limit, **kw)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"task spec {spec!r} yields the item id {dup!r} twice")
    return items
