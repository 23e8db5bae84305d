"""The Conductor's prompt: the task, the pool it may use (names, one-line descriptions, prices), a
few worked examples of the workflow format, the question, and an optional prefill the completion
continues (e.g. `model_id = ["`, so a small policy only has to choose workers and fill the lists).

Plain text, no chat template: the same string is used in training and serving, for any policy.
Few-shot examples use placeholder workers {w0}, {w1} filled from the pool shown, and questions
outside any routing category, so they teach the format, not the routing.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_TEMPLATE = """You are the Conductor: you answer a question by writing a workflow that worker models carry out.
Workers:
{workers}

Write at most {max_steps} steps as three Python lists of the same length:
model_id: the worker of each step.
subtasks: the instruction of each step.
access_list: the earlier outputs each step sees: "all", a list of earlier step numbers, or [].
The output of the last step is the final answer.

{examples}Question: {question}
Workflow:
"""

FEW_SHOT = [
    {"question": "Write a haiku about autumn leaves.",
     "model_id": ["{w0}"], "subtasks": ["Write the haiku."], "access_list": [[]]},
    {"question": "A tank holds 40 litres and leaks 3 litres an hour. After how many hours is it below 10 litres?",
     "model_id": ["{w1}", "{w0}"],
     "subtasks": ["Solve step by step.", "Check the solution and give the final answer."],
     "access_list": [[], "all"]},
]


def workflow_text(model_id: list[str], subtasks: list[str], access_list: list[Any]) -> str:
    """The workflow in the form the policy should write (double-quoted JSON-style lists)."""
    return (f"model_id = {json.dumps(model_id)}\nsubtasks = {json.dumps(subtasks)}\n"
            f"access_list = {json.dumps(access_list)}")


def describe_workers(pool: Any, names: list[str], descriptions: dict[str, str] | None = None,
                     self_name: str | None = None) -> str:
    """One line per worker: name, description (config, else pool tags), price per million tokens.
    `self_name` is the Conductor itself (recursion), which is not a pool worker."""
    lines = []
    for n in names:
        if n == self_name:
            lines.append(f"- {n}: yourself (writes and runs a nested workflow for its subtask)")
            continue
        desc = (descriptions or {}).get(n)
        if desc is None:
            tags = pool.tags(n) if hasattr(pool, "tags") else {}
            desc = tags.get("description") if isinstance(tags, dict) else None
        price = ""
        if hasattr(pool, "prices"):
            pin, pout = pool.prices(n)
            price = f" (${pin:g}/${pout:g} per M tokens in/out)"
        lines.append(f"- {n}{': ' + desc if desc else ''}{price}")
    return "\n".join(lines)


def render_examples(names: list[str]) -> str:
    ws = {f"w{i}": names[i % len(names)] for i in range(2)}
    out = []
    for ex in FEW_SHOT:
        models = [m.format(**ws) for m in ex["model_id"]]
        out.append(f"Question: {ex['question']}\nWorkflow:\n"
                   f"{workflow_text(models, ex['subtasks'], ex['access_list'])}\n\n")
    return "".join(out)


def build_prompt(question: str, pool: Any, names: list[str], *, template: str | None = None,
                 few_shot: bool = True, max_steps: int = 5, prefill: str = "",
                 descriptions: dict[str, str] | None = None, self_name: str | None = None) -> str:
    """The full prompt; it ends with `prefill`, which the parser re-attaches to the completion."""
    tpl = template or DEFAULT_TEMPLATE
    return tpl.format(workers=describe_workers(pool, names, descriptions, self_name),
                      examples=render_examples(names) if few_shot else "",
                      question=question, max_steps=max_steps) + prefill
