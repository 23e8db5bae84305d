"""OpenAI chat-completions request/response models and OpenAI-style error bodies
`{"error": {"message", "type", "param", "code"}}`.

Requests are checked against a documented allow-list (`ALLOWED_FIELDS`): a field baton would
otherwise drop is a 400 naming it, never a silent drop. The fields forwarded to the answering
worker unchanged:
  - sampling (bind every call whose text can be the answer; see routers.serving_router): max_tokens,
    max_completion_tokens, temperature, top_p, stop, seed, presence_penalty, frequency_penalty,
    logit_bias, user;
  - pass-through (only a route whose answer is ONE worker's reply to the client's own messages can
    honour them; any other route answers 400 naming the field): tools, tool_choice,
    parallel_tool_calls, response_format, logprobs, top_logprobs; likewise message content beyond
    text (image/audio/file parts), tool messages and assistant tool_calls.
`n` > 1 is refused (one answer per request). baton's own: `lam` (cost/quality trade-off).
Tool definitions and JSON schemas are validated (jsonschema's metaschema check); a bad one is a
400 naming its path. The routing decision itself reads only the text.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator,
                      model_validator)

from routers.pool.base import PASSTHROUGH_PARAMS, content_text, json_bytes

SAMPLING_FIELDS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
                   "presence_penalty", "frequency_penalty", "logit_bias", "user")
ALLOWED_FIELDS = ("model", "messages", "stream", "stream_options", "n", "lam", *SAMPLING_FIELDS,
                  *PASSTHROUGH_PARAMS)
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")   # json.loads joins valid pairs, so any left is lone


def _check_json_schema(schema: Any, where: str) -> None:
    import jsonschema
    if not isinstance(schema, dict):
        raise ValueError(f"{where}: a JSON schema must be an object, got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as e:
        path = ".".join(str(p) for p in e.absolute_path)
        raise ValueError(f"{where}{'.' + path if path else ''}: invalid JSON schema ({e.message})") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(_Strict):
    name: StrictStr
    arguments: StrictStr


class ToolCall(_Strict):
    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: StrictStr | list[dict[str, Any]] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None         # assistant
    tool_call_id: StrictStr | None = None            # tool
    refusal: StrictStr | None = None

    @field_validator("content")
    @classmethod
    def _parts(cls, v):
        if isinstance(v, list):
            for i, p in enumerate(v):
                if not isinstance(p, dict) or p.get("type") not in PART_TYPES:
                    raise ValueError(f"content part {i} must be an object with type one of {', '.join(PART_TYPES)}")
        return v

    @model_validator(mode="after")
    def _tool_fields(self):
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def text(self) -> str:
        return content_text(self.content)

    def beyond_text(self) -> str | None:
        """Why this message needs the client's full request to reach the worker (None: text only)."""
        if self.role == "tool":
            return "a tool message"
        if self.tool_calls:
            return "assistant tool_calls"
        if isinstance(self.content, list):
            kinds = sorted({p["type"] for p in self.content} - {"text"})
            if kinds:
                return f"{'/'.join(kinds)} content parts"
        return None


class FunctionDef(_Strict):
    name: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not _TOOL_NAME.match(v):
            raise ValueError("must be 1-64 characters of a-z, A-Z, 0-9, _ and -")
        return v

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v):
        if v is not None:
            _check_json_schema(v, "parameters")
        return v


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedTool(_Strict):
    type: Literal["function"]
    function: dict[str, StrictStr]


class JSONSchemaFormat(_Strict):
    name: StrictStr
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v):
        if v is not None:
            _check_json_schema(v, "schema")
        return v


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _needs_schema(self):
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only then")
        return self


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class ChatCompletionRequest(_Strict):
    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False          # "yes" or 1 is refused, not taken as true
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(default=None, ge=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    user: StrictStr | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    lam: float | None = Field(default=None, ge=0, description="baton: cost/quality trade-off "
                              "($ of cost worth one unit of quality); also via model router-<name>-<lam>")

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in v):
            raise ValueError("messages must contain at least one user message with non-empty content")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.n is not None and self.n > 1:
            raise _FieldError("n", "only n = 1 is served (one routed answer per request)")
        if self.tool_choice is not None and not self.tools:
            raise _FieldError("tool_choice", "given without tools")
        if isinstance(self.tool_choice, NamedTool):
            name = self.tool_choice.function.get("name")
            if name not in {t.function.name for t in self.tools or []}:
                raise _FieldError("tool_choice.function.name", f"{name!r} is not one of the request's tools")
        if self.top_logprobs is not None and not self.logprobs:
            raise _FieldError("top_logprobs", "needs logprobs: true")
        if self.stream_options is not None and not self.stream:
            raise _FieldError("stream_options", "only allowed with stream: true")
        return self

    def worker_params(self) -> dict[str, Any]:
        """The client's sampling parameters (they bind every call whose text can be the answer)."""
        out = {k: getattr(self, k) for k in SAMPLING_FIELDS}
        if out["max_tokens"] is None:
            out["max_tokens"] = out.pop("max_completion_tokens")
        else:
            out.pop("max_completion_tokens")
        return {k: v for k, v in out.items() if v is not None}

    def plain_messages(self) -> list[dict[str, str]]:
        """What routers read: role and text, a lone UTF-16 surrogate as U+FFFD (routers hash and
        tokenize UTF-8; the worker of a direct call still gets the client's text unchanged)."""
        return [{"role": m.role, "content": _LONE_SURROGATE.sub("\ufffd", m.text())} for m in self.messages]

    def needs_single_worker(self) -> list[tuple[str, str]]:
        """(field, what) of everything only a single-worker route can honour, in request order."""
        out = [(k, f"{k} is given") for k in PASSTHROUGH_PARAMS if getattr(self, k) not in (None, False)
               and not (k == "response_format" and self.response_format.type == "text")]
        for i, m in enumerate(self.messages):
            why = m.beyond_text()
            if why:
                out.append((f"messages.{i}", why))
        return out


class _FieldError(ValueError):
    """A request-level check that names the field (pydantic would name only the model)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def unknown_fields(data: dict[str, Any]) -> list[str]:
    return [k for k in data if k not in ALLOWED_FIELDS]


# -- responses ------------------------------------------------------------------------------------

class SafeJSONResponse(JSONResponse):
    """JSONResponse whose body is `json_bytes` (starlette's raises on lone surrogates)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content, default=None)


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage_dict(episode) -> dict[str, Any]:
    """OpenAI usage totals plus the split between the router's own model and the workers, and of
    the workers' tokens those spent on intermediate calls (Thinker/Verifier turns, earlier steps)."""
    oi, oo = episode.orchestration_input_tokens, episode.orchestration_output_tokens
    wi, wo = episode.worker_input_tokens, episode.worker_output_tokens
    ii = sum(s.reply.input_tokens for s in episode.intermediate_steps)
    io = sum(s.reply.output_tokens for s in episode.intermediate_steps)
    return {"prompt_tokens": oi + wi, "completion_tokens": oo + wo, "total_tokens": oi + oo + wi + wo,
            "orchestration_tokens": {"input": oi, "output": oo, "total": oi + oo},
            "worker_tokens": {"input": wi, "output": wo, "total": wi + wo},
            "intermediate_tokens": {"input": ii, "output": io, "total": ii + io}}


def answer_reply(episode):
    """The WorkerReply whose text is the answer (None for an episode without steps)."""
    i = episode.answer_step
    return None if i is None else episode.steps[i].reply


def answer_message(episode) -> tuple[dict[str, Any], str, Any]:
    """(assistant message, finish_reason, logprobs) as the answering worker gave them."""
    r = answer_reply(episode)
    msg: dict[str, Any] = {"role": "assistant", "content": episode.answer}
    if r is not None and r.tool_calls:
        msg = {"role": "assistant", "content": episode.answer or None, "tool_calls": r.tool_calls}
    finish = (r.finish_reason if r is not None else None) or ("tool_calls" if "tool_calls" in msg else "stop")
    return msg, finish, None if r is None else r.logprobs


def completion_body(cid: str, model: str, episode, route: dict[str, Any]) -> dict[str, Any]:
    msg, finish, logprobs = answer_message(episode)
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": logprobs}],
            "usage": usage_dict(episode), "baton_route": route}


def chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None,
          logprobs: Any = None, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}], **extra}


def delta_chunk(cid: str, model: str, created: int, d) -> dict[str, Any]:
    """A worker's streamed `Delta` as the client's chunk (tool-call deltas keep their index)."""
    delta: dict[str, Any] = {}
    if d.content:
        delta["content"] = d.content
    if d.tool_calls:
        delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(d.tool_calls)]
    return chunk(cid, model, created, delta, logprobs=d.logprobs)


def final_chunks(cid: str, model: str, created: int, episode, route: dict[str, Any],
                 include_usage: bool) -> list[dict[str, Any]]:
    """The finish chunk (with the route) and, when asked, the usage chunk."""
    _, finish, _ = answer_message(episode)
    out = [chunk(cid, model, created, {}, finish, baton_route=route)]
    if include_usage:
        out.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": usage_dict(episode)})
    return out


def stream_chunks(cid: str, model: str, episode, route: dict[str, Any], include_usage: bool,
                  piece_chars: int = 64) -> list[dict[str, Any]]:
    """A finished answer as OpenAI chunks (a route whose answer could not stream: e.g. a multi-turn
    episode whose last turn was a Verifier): role, pieces, [tool calls], finish, [usage]."""
    created = int(time.time())
    msg, _, logprobs = answer_message(episode)
    text = episode.answer or ""
    out = [chunk(cid, model, created, {"role": "assistant", "content": ""})]
    out += [chunk(cid, model, created, {"content": text[i:i + piece_chars]}) for i in range(0, len(text), piece_chars)]
    if msg.get("tool_calls"):
        out.append(chunk(cid, model, created, {"tool_calls": [{"index": i, **tc}
                                                              for i, tc in enumerate(msg["tool_calls"])]}))
    if logprobs:
        out[-1]["choices"][0]["logprobs"] = logprobs
    return out + final_chunks(cid, model, created, episode, route, include_usage)


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
