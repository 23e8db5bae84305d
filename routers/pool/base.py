"""The worker interface: every backend (openai, hf, replay, simulated) answers chat messages
asynchronously and accounts tokens, cost and latency on every call.

Failures surface as typed `WorkerError`s so routers and the server can decide: retry
(`retryable=True`: rate limits, 5xx, timeouts, connection resets) or give up / fall back.
"""

from __future__ import annotations

import abc
import asyncio
import json
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator

Message = dict[str, Any]  # OpenAI chat message: {"role", "content": str | parts, ["tool_calls", ...]}

# OpenAI request fields that change WHAT a worker answers (beyond sampling): only a backend that
# speaks the OpenAI API honours them; others refuse them (BadRequest) instead of dropping them.
PASSTHROUGH_PARAMS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs",
                      "top_logprobs")


def json_bytes(obj: Any, default=str) -> bytes:
    """Compact UTF-8 JSON that never fails on text: a lone UTF-16 surrogate (valid in a JSON
    escape, not in UTF-8) is written back as its `\\uXXXX` escape, so it round-trips as it came."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=default).encode(
        "utf-8", "backslashreplace")


CALL_HINTS = ("answer", "final")      # routing hints on a call (routers.serving_router), not worker params


def worker_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` without the call hints (what a worker backend and the reply cache see)."""
    return {k: v for k, v in params.items() if k not in CALL_HINTS}


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
    finish_reason: str | None = None              # as the endpoint said: stop, length, tool_calls, ...
    tool_calls: list[dict[str, Any]] | None = None  # the assistant message's tool calls, unchanged
    logprobs: dict[str, Any] | None = None        # choices[0].logprobs, unchanged

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


@dataclass
class Delta:
    """One streamed piece of a reply (OpenAI `choices[0].delta` fields, as sent)."""
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: dict[str, Any] | None = None


class Worker(abc.ABC):
    """One LLM in the pool. Subclasses implement `_chat`; `chat` is the public entry point.

    `stream` yields `Delta`s as the answer is produced and, last, the complete `WorkerReply`.
    Backends without a native stream (simulated, replay) answer in full, then hand the text out in
    `stream_chunk_chars` pieces `stream_delay_s` apart (tests and benchmarks set the delay)."""

    honours: tuple[str, ...] = ()      # PASSTHROUGH_PARAMS this backend forwards to its model
    rich_messages: bool = False        # takes content parts, tool messages and tool_calls as they are
    stream_chunk_chars: int = 16
    stream_delay_s: float = 0.0

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
        self.refuse_unhonoured(params)
        if not self.rich_messages:
            messages = self.text_messages(messages)
        return await self._chat(messages, **params)

    def text_messages(self, messages: list[Message]) -> list[Message]:
        """Messages as a text-only backend reads them: text parts joined into a string; anything
        else (images, audio, tool messages, tool calls) refused by name, never silently dropped."""
        out = []
        for i, m in enumerate(messages):
            c = m.get("content")
            what = "a tool message" if m.get("role") == "tool" else "tool_calls" if m.get("tool_calls") else None
            if isinstance(c, list):
                kinds = sorted({str(p.get("type")) for p in c if isinstance(p, dict)} - {"text"})
                what = what or (f"{'/'.join(kinds)} content parts" if kinds else None)
                m = {**m, "content": content_text(c)}
            if what:
                raise BadRequest(self.name, f"messages[{i}]: {what}: the {type(self).__name__} backend cannot "
                                 "honour it")
            out.append(m)
        return out

    def refuse_unhonoured(self, params: dict[str, Any]) -> None:
        for k in PASSTHROUGH_PARAMS:
            if params.get(k) not in (None, False) and k not in self.honours:   # logprobs: false asks nothing
                raise BadRequest(self.name, f"{k}: the {type(self).__name__} backend cannot honour it")

    async def stream(self, messages: list[Message], **params: Any) -> AsyncIterator["Delta | WorkerReply"]:
        reply = await self.chat(messages, **params)
        text, n = reply.text or "", max(1, int(self.stream_chunk_chars))
        for i in range(0, len(text), n):
            if i and self.stream_delay_s:
                await asyncio.sleep(self.stream_delay_s)
            yield Delta(content=text[i:i + n])
        yield reply

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


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of OpenAI's list of parts."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def messages_tokens(messages: list[Message]) -> int:
    """Estimated prompt tokens of a chat: content tokens plus ~4 per message for role/format."""
    return sum(estimate_tokens(content_text(m.get("content"))) + 4 for m in messages)
