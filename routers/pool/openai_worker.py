"""Any OpenAI-compatible chat endpoint (OpenAI, OpenRouter, vLLM, llama.cpp, the SmolLM2 script)
through the official SDK's AsyncOpenAI.

The retry policy is ours, not the SDK's (`max_retries=0`): retryable failures (429, 5xx, timeouts,
connection resets, unparsable replies) are retried with exponential backoff and jitter, waiting
exactly what the server asks for when it sends `Retry-After` (seconds or an HTTP date) or
`retry-after-ms`. Auth, bad requests and context-length errors fail at once. Every failure leaves
as a typed `WorkerError` from `routers.pool.base`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from typing import Any

import openai

from routers.errors import ConfigError
from routers.pool.base import (AuthFailed, BadReply, BadRequest, ConnectionFailed, ContextLengthExceeded,
                               Message, RateLimited, ServerError, Worker, WorkerError, WorkerReply,
                               WorkerTimeout, estimate_tokens, messages_tokens)

# Parameters forwarded to the endpoint; other params are hints for other backends and are dropped.
API_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed", "presence_penalty",
              "frequency_penalty", "n", "logprobs", "top_logprobs", "response_format",
              "extra_body")  # extra_body: provider-specific fields (e.g. OpenRouter `reasoning`)


def parse_retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _is_context_error(e: openai.APIStatusError) -> bool:
    body = e.body if isinstance(e.body, dict) else {}
    err = body.get("error", body) if isinstance(body, dict) else {}
    code = str((err or {}).get("code") or "") if isinstance(err, dict) else ""
    text = f"{code} {e.message}".lower()
    return ("context_length_exceeded" in text or "maximum context length" in text
            or "context length" in text and "exceed" in text)


class OpenAIWorker(Worker):
    """One model behind an OpenAI-compatible `/v1/chat/completions`."""

    def __init__(self, name: str, *, model: str, base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", input_price: float = 0.0,
                 output_price: float = 0.0, tags: dict[str, Any] | None = None,
                 timeout: float = 60.0, max_concurrency: int = 8, retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 20.0, max_retry_after_s: float = 60.0,
                 default_params: dict[str, Any] | None = None):
        super().__init__(name, model=model, input_price=input_price, output_price=output_price, tags=tags)
        self.base_url, self.api_key_env = base_url, api_key_env
        self.timeout, self.max_concurrency, self.retries = float(timeout), int(max_concurrency), int(retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.default_params = dict(default_params or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None

    # -- client per event loop (httpx pools and semaphores belong to one loop) ----------------
    def _api_key(self) -> str:
        if self.api_key_env is None:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise AuthFailed(self.name, f"environment variable {self.api_key_env} (api_key_env) is not "
                             "set; export it, or set api_key_env: null for endpoints without keys")
        return key

    def _ensure_client(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = openai.AsyncOpenAI(api_key=self._api_key(), base_url=self.base_url,
                                              timeout=self.timeout, max_retries=0)
            self._sem = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._client, self._sem  # type: ignore[return-value]

    # -- one attempt ---------------------------------------------------------------------------
    def _map_error(self, e: Exception) -> WorkerError:
        if isinstance(e, WorkerError):
            return e
        if isinstance(e, openai.APITimeoutError):
            return WorkerTimeout(self.name, f"no reply within {self.timeout:g} s")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            return ConnectionFailed(self.name, f"connection failed ({type(cause).__name__ if cause else e}: "
                                    f"{cause or e.message}) to {self.base_url}")
        if isinstance(e, openai.APIStatusError):
            st, msg = e.status_code, e.message
            if st == 429:
                return RateLimited(self.name, f"rate limited (429): {msg}", status=st,
                                   retry_after=parse_retry_after(e.response.headers))
            if st in (401, 403):
                return AuthFailed(self.name, f"authentication failed ({st}): {msg}", status=st)
            if st in (400, 413, 422) and _is_context_error(e):
                return ContextLengthExceeded(self.name, f"prompt too long for {self.model}: {msg}", status=st)
            if st == 408:
                return WorkerTimeout(self.name, f"server timed out (408): {msg}", status=st)
            if st >= 500:
                return ServerError(self.name, f"server error ({st}): {msg}", status=st,
                                   retry_after=parse_retry_after(e.response.headers))
            return BadRequest(self.name, f"request rejected ({st}): {msg}", status=st)
        if isinstance(e, (json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
            return BadReply(self.name, f"unparsable reply: {type(e).__name__}: {e}")
        if isinstance(e, asyncio.TimeoutError):
            return WorkerTimeout(self.name, f"no reply within {self.timeout:g} s")
        return ConnectionFailed(self.name, f"{type(e).__name__}: {e}")

    async def _attempt(self, messages: list[Message], api_params: dict[str, Any]) -> WorkerReply:
        client, sem = self._ensure_client()
        async with sem:
            t0 = time.perf_counter()
            try:
                resp = await client.chat.completions.create(model=self.model, messages=messages, **api_params)
            except Exception as e:  # noqa: BLE001 - every failure becomes a typed WorkerError
                raise self._map_error(e) from e
            latency = time.perf_counter() - t0
        try:
            if isinstance(resp, str):  # some SDK paths return the raw text when JSON parsing fails
                raise ValueError(f"reply is not a JSON completion: {resp[:80]!r}")
            choice = resp.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            raise BadReply(self.name, f"reply has no choices[0].message ({type(e).__name__}: {e})") from e
        meta: dict[str, Any] = {"finish_reason": getattr(choice, "finish_reason", None)}
        usage = getattr(resp, "usage", None)
        if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
            n_in, n_out = int(usage.prompt_tokens), int(usage.completion_tokens)
        else:
            n_in, n_out = messages_tokens(messages), estimate_tokens(text)
            meta["tokens_estimated"] = True
        return WorkerReply(text=text, worker=self.name, model=getattr(resp, "model", None) or self.model,
                           input_tokens=n_in, output_tokens=n_out, cost=self.price(n_in, n_out),
                           latency_s=latency, meta=meta)

    def backoff(self, attempt: int, error: WorkerError) -> float:
        """Seconds to wait before retry number `attempt` (0-based): the server's Retry-After if it
        sent one, else exponential backoff with jitter in [0.5, 1.5) x base x 2^attempt."""
        if error.retry_after is not None:
            return error.retry_after
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.5)

    async def _chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        api_params = {k: v for k, v in {**self.default_params, **params}.items()
                      if k in API_PARAMS and v is not None}
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            try:
                reply = await self._attempt(messages, api_params)
            except WorkerError as e:
                errors.append(type(e).__name__)
                if not e.retryable or attempt == self.retries:
                    raise
                wait = self.backoff(attempt, e)
                if wait > self.max_retry_after_s:  # do not block a caller for minutes; let it fall back
                    raise
                await asyncio.sleep(wait)
                continue
            if errors:
                reply.meta["retries"] = errors
            return reply
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:  # client made on an event loop that is gone
                pass
            self._client = None


def make_worker(name: str, spec: dict[str, Any], where: str) -> OpenAIWorker:
    """Build from a validated pool-config worker entry (see `routers.pool.config`)."""
    if not spec.get("model"):
        raise ConfigError(f"{where}.model: required for backend openai")
    lim = spec.get("limits", {})
    return OpenAIWorker(name, model=spec["model"], base_url=spec.get("base_url"),
                        api_key_env=spec.get("api_key_env", "OPENAI_API_KEY"),
                        input_price=spec.get("input_price", 0.0), output_price=spec.get("output_price", 0.0),
                        tags=spec.get("tags"), timeout=lim.get("timeout", 60.0),
                        max_concurrency=lim.get("max_concurrency", 8), retries=lim.get("retries", 3),
                        default_params=spec.get("params"))
