"""What every router does at serving time: answer chat messages by calling workers, and say how.

A `ServingRouter` (a baseline wrapped by `SingleChoice`, a TRINITY checkpoint, a Conductor
checkpoint) receives a `CallFn` from whoever runs it. `CallFn(candidates, messages, params)` asks
the first workable worker of `candidates` (best first) to answer; the server's implementation adds
retries, fallback down the list, cooldowns and compliance rules, the trainers' implementation just
calls the pool. So routers own the decision, callers own reliability.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

from routers.pool.base import Message, WorkerReply

CallFn = Callable[[list[str], list[Message], dict[str, Any]], Awaitable[WorkerReply]]


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
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""


__all__ = ["CallFn", "Step", "Episode", "ServingRouter", "last_user_text", "asdict"]
