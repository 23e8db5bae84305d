"""The Conductor's workflow language and its safe parser.

The policy writes an optional `<think>...</think>` and then three Python lists of equal length:

    model_id = ["alpha", "beta"]
    subtasks = ["Solve the problem step by step.", "Check the solution and give the final answer."]
    access_list = [[], "all"]

Each `access_list` entry is "all" (every earlier step), a list of earlier step indices, or [].
Lists are read with `ast.literal_eval` on the bracketed text only (never `eval`), so an output can
carry prose around them. Anything wrong raises `WorkflowError`, whose `code` says what kind of
problem it is (the reward and the serving fallback only need to know *that* it failed; the code
and message tell a person *why*).
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field

from routers.errors import BatonError

KEYS = ("model_id", "subtasks", "access_list")
MAX_CHARS = 20_000  # longer outputs are rejected before any literal is evaluated

_THINK_RE = re.compile(r"<think>.*?</think>", re.S)
_FENCE_RE = re.compile(r"```[a-zA-Z]*")
_KEY_RE = re.compile(r"(?m)^[ \t>*`]*(model_id|subtasks|access_list)\s*[:=]\s*")


class WorkflowError(BatonError):
    """An output that is not a valid workflow. `code` is one of: empty, too_long, think, missing,
    syntax, not_a_list, empty_workflow, length_mismatch, too_many_steps, unknown_model,
    bad_subtask, bad_access."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"workflow {code}: {message}")


@dataclass
class Workflow:
    model_id: list[str]
    subtasks: list[str]
    access_list: list[list[int] | str]  # as written: "all" or a list of earlier indices
    think: str | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.model_id)

    def inputs(self, i: int) -> list[int]:
        """The earlier steps whose outputs step `i` sees."""
        a = self.access_list[i]
        return list(range(i)) if a == "all" else sorted(set(a))

    def to_text(self) -> str:
        """The canonical text form (what few-shot examples show; parses back to an equal workflow)."""
        return (f"model_id = {self.model_id!r}\nsubtasks = {self.subtasks!r}\n"
                f"access_list = {self.access_list!r}")


def _bracketed(text: str, start: int, key: str) -> str:
    """The `[...]` literal starting at `start`, matched with quotes and escapes respected."""
    if start >= len(text) or text[start] != "[":
        got = text[start:start + 20] or "end of output"
        raise WorkflowError("not_a_list", f"{key} must be a Python list starting with '[', got {got!r}")
    depth, quote, i = 0, None, start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
        i += 1
    raise WorkflowError("syntax", f"{key}: unclosed '[' (the list never ends)")


def _literal(src: str, key: str):
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" warnings are not errors here
            warnings.simplefilter("ignore")
            return ast.literal_eval(src)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WorkflowError("syntax", f"{key} is not a Python literal ({msg}): {src[:80]!r}") from None


def _split(text: str) -> tuple[str | None, str]:
    """(think text, the rest). An opened but unclosed <think> is an error: the lists never came."""
    thinks = _THINK_RE.findall(text)
    rest = _THINK_RE.sub("", text)
    if "<think>" in rest:
        raise WorkflowError("think", "<think> is never closed by </think>")
    rest = rest.replace("</think>", "")
    think = "\n".join(t[len("<think>"):-len("</think>")].strip() for t in thinks) if thinks else None
    return think, _FENCE_RE.sub("", rest)


def parse_workflow(text: str, pool_names: list[str] | tuple[str, ...], max_steps: int = 5) -> Workflow:
    """Parse and validate a Conductor output against the pool. Raises only `WorkflowError`."""
    if not isinstance(text, str) or not text.strip():
        raise WorkflowError("empty", "the output is empty")
    if len(text) > MAX_CHARS:
        raise WorkflowError("too_long", f"the output has {len(text)} characters (limit {MAX_CHARS})")
    think, body = _split(text)
    found: dict[str, object] = {}
    for m in _KEY_RE.finditer(body):  # the last assignment of a key wins (models restate)
        key = m.group(1)
        found[key] = _literal(_bracketed(body, m.end(), key), key)
    missing = [k for k in KEYS if k not in found]
    if missing:
        raise WorkflowError("missing", f"no {', '.join(missing)} list found (need `name = [...]` for each of {', '.join(KEYS)})")
    for k in KEYS:
        if not isinstance(found[k], list):
            raise WorkflowError("not_a_list", f"{k} must be a list, got {type(found[k]).__name__}")
    models, subtasks, access = found["model_id"], found["subtasks"], found["access_list"]
    lens = {k: len(found[k]) for k in KEYS}  # type: ignore[arg-type]
    if len(set(lens.values())) != 1:
        raise WorkflowError("length_mismatch", "lists differ in length: " + ", ".join(f"{k} {n}" for k, n in lens.items()))
    n = lens["model_id"]
    if n == 0:
        raise WorkflowError("empty_workflow", "the lists are empty (a workflow needs at least one step)")
    if n > max_steps:
        raise WorkflowError("too_many_steps", f"{n} steps, the limit is {max_steps}")
    pool = list(pool_names)
    for i, m in enumerate(models):
        if not isinstance(m, str) or m not in pool:
            raise WorkflowError("unknown_model", f"step {i}: model_id {m!r} is not in the pool {pool}")
    for i, s in enumerate(subtasks):
        if not isinstance(s, str):
            raise WorkflowError("bad_subtask", f"step {i}: subtask must be a string, got {type(s).__name__}")
    clean: list[list[int] | str] = []
    for i, a in enumerate(access):
        if isinstance(a, str) and a == "all":
            clean.append("all")
            continue
        if not isinstance(a, (list, tuple)):
            raise WorkflowError("bad_access", f"step {i}: access_list entry must be \"all\" or a list of earlier step indices, got {a!r}"[:300])
        for j in a:
            if isinstance(j, bool) or not isinstance(j, int):
                raise WorkflowError("bad_access", f"step {i}: access index {j!r} is not an integer"[:300])
            if not 0 <= j < i:
                raise WorkflowError("bad_access", f"step {i}: access index {j} does not name an earlier step (0..{i - 1})")
        clean.append(sorted(set(a)))
    return Workflow(list(models), list(subtasks), clean, think=think)
