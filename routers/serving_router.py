"""What every router does at serving time: answer chat messages by calling workers, and say how.

A `ServingRouter` (a baseline wrapped by `SingleChoice`, a TRINITY checkpoint, a Conductor
checkpoint) receives a `CallFn` from whoever runs it. `CallFn(candidates, messages, params)` asks
the first workable worker of `candidates` (best first) to answer; the server's implementation adds
retries, fallback down the list, cooldowns and compliance rules, the trainers' implementation just
calls the pool. So routers own the decision, callers own reliability.

Two call hints in `params` say what a call is for (absent: True, the single-call case):
  answer  its text can become the client's answer (a Worker turn, a workflow's last step): the
          client's own limits (max_tokens, temperature, ...) bind it; False marks an intermediate
          call (Thinker, Verifier, an earlier workflow step), which keeps the router's config caps;
  final   no call follows it: when it also answers, a server may stream it to the client.
A router that forwards the request's `messages` object unchanged to such a final answering call
lets the server hand the worker the client's full request (tools, images, response_format).
`Pool.call` strips the hints (`worker_params`) before a backend or the reply cache sees them.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

from routers.pool.base import CALL_HINTS, Message, WorkerReply, worker_params

CallFn = Callable[[list[str], list[Message], dict[str, Any]], Awaitable[WorkerReply]]


def pool_call(pool) -> CallFn:
    """The trainers' `CallFn` over a `routers.pool.Pool`: the first candidate answers (no retries or
    fallback; a failure is the candidate's problem to surface, not to hide)."""
    async def call(candidates: list[str], messages: list[Message], params: dict[str, Any]):
        return await pool.call(candidates[0], messages, **params)
    return call


@dataclass
class Step:
    worker: str                        # who answered (after any fallback)
    role: str                          # "answer" for single-turn; thinker/worker/verifier; "step-N"
    reply: WorkerReply
    candidates: list[str] = field(default_factory=list)  # the router's ranking for this step
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    answer: str
    steps: list[Step] = field(default_factory=list)
    orchestration_input_tokens: int = 0   # tokens the router's own model read (coordinator/conductor)
    orchestration_output_tokens: int = 0  # tokens it generated (a Conductor's workflow)
    orchestration_latency_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_input_tokens(self) -> int:
        return sum(s.reply.input_tokens for s in self.steps)

    @property
    def worker_output_tokens(self) -> int:
        return sum(s.reply.output_tokens for s in self.steps)

    @property
    def cost(self) -> float:
        return sum(s.reply.cost for s in self.steps)

    @property
    def answer_step(self) -> int | None:
        """Index of the step whose text is the answer: the last `answer`/`worker` step (a TRINITY
        episode's last Worker), else the last step (a workflow's); None without steps."""
        for i in range(len(self.steps) - 1, -1, -1):
            if self.steps[i].role in ("answer", "worker"):
                return i
        return len(self.steps) - 1 if self.steps else None

    @property
    def intermediate_steps(self) -> list[Step]:
        a = self.answer_step
        return [s for i, s in enumerate(self.steps) if i != a]

    def trace(self) -> dict[str, Any]:
        """JSON-able routing trace (what the server returns and logs)."""
        return {
            "steps": [{"worker": s.worker, "role": s.role, "candidates": s.candidates,
                       "model": s.reply.model, "input_tokens": s.reply.input_tokens,
                       "output_tokens": s.reply.output_tokens, "cost": s.reply.cost,
                       "latency_s": s.reply.latency_s, **({"meta": s.meta} if s.meta else {})}
                      for s in self.steps],
            "orchestration": {"input_tokens": self.orchestration_input_tokens,
                              "output_tokens": self.orchestration_output_tokens,
                              "latency_s": self.orchestration_latency_s},
            "cost": self.cost,
            **({"meta": self.meta} if self.meta else {}),
        }


class ServingRouter(abc.ABC):
    """A loaded router ready to answer requests against a pool."""

    name: str          # the model name clients ask for, e.g. "trinity-demo", "knn"
    workers: list[str]  # pool worker names this router can choose from

    @abc.abstractmethod
    async def answer(self, messages: list[Message], call: CallFn, *, lam: float = 0.0) -> Episode:
        ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": list(self.workers), "type": type(self).__name__}


def last_user_text(messages: list[Message]) -> str:
    """The text of the last user message (text parts only, when content is a list of parts)."""
    from routers.pool.base import content_text
    for m in reversed(messages):
        if m.get("role") == "user":
            return content_text(m.get("content"))
    return ""


__all__ = ["CallFn", "CALL_HINTS", "Step", "Episode", "ServingRouter", "last_user_text", "worker_params",
           "asdict"]
