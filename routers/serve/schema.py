"""OpenAI chat-completions request/response models (the subset a router gateway needs) and
OpenAI-style error bodies `{"error": {"message", "type", "param", "code"}}`.

Unknown request fields are accepted and ignored (clients send many), except that the baton
extensions `lam` (cost/quality trade-off) and `tenant` are read. Message content may be a string
or OpenAI's list of parts; only text parts are kept.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content
                           if isinstance(p, dict) and p.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False          # "yes" or 1 is refused, not taken as true
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    lam: float | None = Field(default=None, ge=0, description="baton: cost/quality trade-off "
                              "($ of cost worth one unit of quality); also via model router-<name>-<lam>")

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in v):
            raise ValueError("messages must contain at least one user message with non-empty content")
        return v

    def worker_params(self) -> dict[str, Any]:
        """Sampling parameters forwarded to workers (backends ignore what they do not read)."""
        out = {"max_tokens": self.max_tokens or self.max_completion_tokens, "temperature": self.temperature,
               "top_p": self.top_p, "stop": self.stop, "seed": self.seed}
        return {k: v for k, v in out.items() if v is not None}

    def plain_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


# -- responses ------------------------------------------------------------------------------------

def json_bytes(obj: Any, default=str) -> bytes:
    """Compact UTF-8 JSON that never fails on text: a lone UTF-16 surrogate (valid in a JSON
    escape, not in UTF-8) is written back as its `\\uXXXX` escape, so it round-trips as it came."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=default).encode(
        "utf-8", "backslashreplace")


class SafeJSONResponse(JSONResponse):
    """JSONResponse whose body is `json_bytes` (starlette's raises on lone surrogates)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content, default=None)


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage_dict(episode) -> dict[str, Any]:
    """OpenAI usage totals plus the split between the router's own model and the workers."""
    oi, oo = episode.orchestration_input_tokens, episode.orchestration_output_tokens
    wi, wo = episode.worker_input_tokens, episode.worker_output_tokens
    return {"prompt_tokens": oi + wi, "completion_tokens": oo + wo, "total_tokens": oi + oo + wi + wo,
            "orchestration_tokens": {"input": oi, "output": oo, "total": oi + oo},
            "worker_tokens": {"input": wi, "output": wo, "total": wi + wo}}


def completion_body(cid: str, model: str, episode, route: dict[str, Any]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": episode.answer},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": usage_dict(episode), "baton_route": route}


def stream_chunks(cid: str, model: str, episode, route: dict[str, Any], include_usage: bool,
                  piece_chars: int = 64) -> list[dict[str, Any]]:
    """The answer as OpenAI `chat.completion.chunk`s: role, content pieces, finish, [usage].
    Routing finishes before the first chunk, so the route rides on the last chunk."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}

    text = episode.answer or ""
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": text[i:i + piece_chars]}) for i in range(0, len(text), piece_chars)]
    out.append(chunk({}, "stop", baton_route=route))
    if include_usage:
        out.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": usage_dict(episode)})
    return out


def model_card(name: str, description: dict[str, Any]) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "baton", "baton": description}


# -- errors ---------------------------------------------------------------------------------------

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
               500: "server_error", 503: "service_unavailable"}


class APIError(Exception):
    """An error the client sees, as OpenAI's error body with an HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}
