"""The worker interface: every backend (openai, hf, replay, simulated) answers chat messages
asynchronously and accounts tokens, cost and latency on every call.

Failures surface as typed `WorkerError`s so routers and the server can decide: retry
(`retryable=True`: rate limits, 5xx, timeouts, connection resets) or give up / fall back.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass
class WorkerReply:
    text: str
    worker: str                 # the pool's name for the worker
    model: str                  # the model that answered (as the endpoint reports it)
    input_tokens: int
    output_tokens: int
    cost: float                 # dollars
    latency_s: float
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorkerError(Exception):
    """A worker call failed. `retryable` says whether trying again may help."""

    retryable: bool = False

    def __init__(self, worker: str, message: str, *, retry_after: float | None = None,
                 status: int | None = None):
        self.worker, self.retry_after, self.status = worker, retry_after, status
        super().__init__(f"worker {worker!r}: {message}")


class RateLimited(WorkerError):
    retryable = True


class ServerError(WorkerError):
    retryable = True


class WorkerTimeout(WorkerError):
    retryable = True


class ConnectionFailed(WorkerError):
    retryable = True


class ContextLengthExceeded(WorkerError):
    retryable = False


class AuthFailed(WorkerError):
    retryable = False


class BadRequest(WorkerError):
    retryable = False


class BadReply(WorkerError):
    """The endpoint answered with something that is not a valid completion (e.g. truncated JSON)."""
    retryable = True


class UnknownQuery(WorkerError):
    """A replay worker was asked a query it has no recording for."""
    retryable = False


class Worker(abc.ABC):
    """One LLM in the pool. Subclasses implement `_chat`; `chat` is the public entry point."""

    def __init__(self, name: str, *, model: str | None = None, input_price: float = 0.0,
                 output_price: float = 0.0, tags: dict[str, Any] | None = None):
        self.name = name
        self.model = model or name
        self.input_price = float(input_price)    # $ per million input tokens
        self.output_price = float(output_price)  # $ per million output tokens
        self.tags = dict(tags or {})

    def price(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6

    async def chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        """Answer `messages`. `params` may carry max_tokens, temperature, and hints that only some
        backends read (e.g. `role` for the simulated worker); unknown hints are ignored."""
        return await self._chat(messages, **params)

    @abc.abstractmethod
    async def _chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        ...

    async def aclose(self) -> None:
        """Release clients/models. Default: nothing to release."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, model={self.model!r})"


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate: ~4 characters per token (OpenAI's rule of thumb for English),
    at least 1. Used where an endpoint reports no usage and by the simulated worker."""
    return max(1, (len(text) + 3) // 4)


def messages_tokens(messages: list[Message]) -> int:
    """Estimated prompt tokens of a chat: content tokens plus ~4 per message for role/format."""
    return sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in messages)
