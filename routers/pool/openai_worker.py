"""Any OpenAI-compatible chat endpoint (OpenAI, OpenRouter, vLLM, llama.cpp, the SmolLM2 script)
over shared keep-alive httpx clients (one `ClientPool` per event loop, reused by every worker and
request; no per-call SDK object building), plain or streamed (`stream`: server-sent events).

The request is the caller's OpenAI request, forwarded unchanged: messages with full content (tool
messages, assistant tool calls, image parts), sampling parameters and the pass-through fields
(`tools`, `tool_choice`, `response_format`, `logprobs`, ...). The reply's `finish_reason`,
`tool_calls` and `logprobs` come back unchanged on the `WorkerReply`.

The retry policy is ours: retryable failures (429, 5xx, timeouts, connection resets, unparsable
replies) are retried with exponential backoff and jitter, waiting exactly what the server asks for
when it sends `Retry-After` (seconds or an HTTP date) or `retry-after-ms`. Auth, bad requests and
context-length errors fail at once. Every failure leaves as a typed `WorkerError` from
`routers.pool.base`. A stream is never retried here: before its first piece the server falls back
(routers.serve.fallback), after it the failure is the client's error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import random
import ssl
import time
import weakref
from typing import Any, AsyncIterator

import certifi
import httpx

from routers.errors import ConfigError
from routers.pool.base import (PASSTHROUGH_PARAMS, AuthFailed, BadReply, BadRequest, ConnectionFailed,
                               ContextLengthExceeded, Delta, Message, RateLimited, ServerError, Worker,
                               WorkerError, WorkerReply, WorkerTimeout, estimate_tokens, json_bytes,
                               messages_tokens)

# Parameters forwarded to the endpoint; other params are hints for other backends and are dropped.
API_PARAMS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
              "presence_penalty", "frequency_penalty", "logit_bias", "user", "n", *PASSTHROUGH_PARAMS,
              "extra_body")  # extra_body: provider-specific fields (e.g. OpenRouter `reasoning`), merged in
DEFAULT_BASE_URL = "https://api.openai.com/v1"
SHARD_CONNECTIONS = 2


class ClientPool:
    """Keep-alive httpx clients shared by every worker on one event loop, per origin, each holding
    at most `SHARD_CONNECTIONS` connections, the least busy leased first (a new one when all are full).
    Why shards: httpcore's pool does O(connections^2) work per request (its
    `_assign_requests_to_connections` re-counts the connections for every idle one); with one
    client at 64 requests in flight that was 85% of the gateway's CPU (cProfile,
    scripts/bench_serve.py). Small shards keep it small while connections are still reused: `baton
    record` over 4 stub servers spent 1.73 ms of CPU per request with shards of 8, 1.10 ms with 2
    and 1.08 ms with 1 (6,000 requests, 32 in flight).
    Why per origin: a shard shared by workers on different hosts closes one host's idle
    connection to open another's, so requests paid TCP connects and closes (cProfile of
    `baton record` over 4 stub servers: 12,000 connection closes for 6,000 requests)."""

    def __init__(self):
        self.clients: dict[str, list[httpx.AsyncClient]] = {}
        self.busy: dict[str, list[int]] = {}
        self._ssl: ssl.SSLContext | None = None    # one for all shards (each costs ~50 ms to build)

    @contextlib.asynccontextmanager
    async def lease(self, origin: str = ""):
        clients, busy = self.clients.setdefault(origin, []), self.busy.setdefault(origin, [])
        i = min(range(len(clients)), key=busy.__getitem__, default=None)
        if i is None or busy[i] >= SHARD_CONNECTIONS:
            limits = httpx.Limits(max_connections=SHARD_CONNECTIONS, max_keepalive_connections=SHARD_CONNECTIONS,
                                  keepalive_expiry=60)
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=certifi.where())
            clients.append(httpx.AsyncClient(limits=limits, timeout=60.0, verify=self._ssl))  # env proxies kept
            busy.append(0)
            i = len(clients) - 1
        busy[i] += 1
        try:
            yield clients[i]
        finally:
            busy[i] -= 1

    async def aclose(self) -> None:
        for shard in self.clients.values():
            for c in shard:
                await c.aclose()
        self.clients, self.busy = {}, {}


_POOLS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientPool]" = weakref.WeakKeyDictionary()


def client_pool() -> ClientPool:
    """The running loop's client pool (httpx clients belong to one loop)."""
    loop = asyncio.get_running_loop()
    p = _POOLS.get(loop)
    if p is None:
        p = _POOLS[loop] = ClientPool()
    return p


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


def _error_detail(body: bytes) -> tuple[str, str]:
    """(message, code) of an OpenAI error body, or the raw text."""
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else {}
        if isinstance(err, dict):
            return str(err.get("message") or body[:300].decode("utf-8", "replace")), str(err.get("code") or "")
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    return body[:300].decode("utf-8", "replace"), ""


def _is_context_error(msg: str, code: str) -> bool:
    text = f"{code} {msg}".lower()
    return ("context_length_exceeded" in text or "maximum context length" in text
            or "context length" in text and "exceed" in text)


def _merge_tool_calls(acc: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    """Fold streamed tool-call deltas (by `index`) into complete tool calls."""
    for d in deltas:
        i = int(d.get("index", len(acc)))
        while len(acc) <= i:
            acc.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        tc = acc[i]
        if d.get("id"):
            tc["id"] = d["id"]
        if d.get("type"):
            tc["type"] = d["type"]
        fn = d.get("function") or {}
        tc["function"]["name"] += fn.get("name") or ""
        tc["function"]["arguments"] += fn.get("arguments") or ""


class OpenAIWorker(Worker):
    """One model behind an OpenAI-compatible `/v1/chat/completions`."""

    honours = PASSTHROUGH_PARAMS
    rich_messages = True

    def __init__(self, name: str, *, model: str, base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", input_price: float = 0.0,
                 output_price: float = 0.0, tags: dict[str, Any] | None = None,
                 timeout: float = 60.0, max_concurrency: int = 8, retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 20.0, max_retry_after_s: float = 60.0,
                 default_params: dict[str, Any] | None = None, extra_headers: dict[str, str] | None = None):
        super().__init__(name, model=model, input_price=input_price, output_price=output_price, tags=tags)
        self.base_url, self.api_key_env = base_url, api_key_env
        self.timeout, self.max_concurrency, self.retries = float(timeout), int(max_concurrency), int(retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.default_params = dict(default_params or {})
        self.extra_headers = dict(extra_headers or {})
        self._sems: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = \
            weakref.WeakKeyDictionary()

    # -- request pieces ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        base = self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        return base.rstrip("/") + "/chat/completions"

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise AuthFailed(self.name, f"environment variable {self.api_key_env} (api_key_env) is not "
                             "set; export it, or set api_key_env: null for endpoints without keys")
        return key

    def _sem(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        s = self._sems.get(loop)
        if s is None:
            s = self._sems[loop] = asyncio.Semaphore(self.max_concurrency)
        return s

    def _request(self, messages: list[Message], params: dict[str, Any], stream: bool) -> dict[str, Any]:
        """(url, headers, body bytes) of one call."""
        api = {k: v for k, v in {**self.default_params, **params}.items() if k in API_PARAMS and v is not None}
        extra = api.pop("extra_body", None) or {}
        body: dict[str, Any] = {"model": self.model, "messages": messages, **api, **extra}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        headers = {"Authorization": f"Bearer {self._api_key()}", "Content-Type": "application/json",
                   **self.extra_headers}
        return {"url": self.url, "headers": headers, "content": json_bytes(body, default=None)}

    # -- errors ------------------------------------------------------------------------------------
    def _status_error(self, status: int, headers: Any, body: bytes) -> WorkerError:
        msg, code = _error_detail(body)
        if status == 429:
            return RateLimited(self.name, f"rate limited (429): {msg}", status=status,
                               retry_after=parse_retry_after(headers))
        if status in (401, 403):
            return AuthFailed(self.name, f"authentication failed ({status}): {msg}", status=status)
        if status in (400, 413, 422) and _is_context_error(msg, code):
            return ContextLengthExceeded(self.name, f"prompt too long for {self.model}: {msg}", status=status)
        if status == 408:
            return WorkerTimeout(self.name, f"server timed out (408): {msg}", status=status)
        if status >= 500:
            return ServerError(self.name, f"server error ({status}): {msg}", status=status,
                               retry_after=parse_retry_after(headers))
        return BadRequest(self.name, f"request rejected ({status}): {msg}", status=status)

    def _map_error(self, e: Exception) -> WorkerError:
        if isinstance(e, WorkerError):
            return e
        if isinstance(e, (httpx.TimeoutException, asyncio.TimeoutError)):
            return WorkerTimeout(self.name, f"no reply within {self.timeout:g} s")
        if isinstance(e, httpx.TransportError):
            cause = e.__cause__ or e.__context__
            return ConnectionFailed(self.name, f"connection failed ({type(e).__name__}: {e or cause}) to {self.url}")
        return ConnectionFailed(self.name, f"{type(e).__name__}: {e}")

    # -- one attempt -------------------------------------------------------------------------------
    def _reply(self, data: Any, messages: list[Message], latency: float) -> WorkerReply:
        try:
            choice = data["choices"][0]
            msg = choice["message"]
            text = msg.get("content") or ""
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise BadReply(self.name, f"reply has no choices[0].message ({type(e).__name__}: {e})") from None
        meta: dict[str, Any] = {}
        usage = data.get("usage") or {}
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None \
                and usage.get("completion_tokens") is not None:
            n_in, n_out = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        else:
            n_in, n_out = messages_tokens(messages), estimate_tokens(text)
            meta["tokens_estimated"] = True
        return WorkerReply(text=text, worker=self.name, model=data.get("model") or self.model,
                           input_tokens=n_in, output_tokens=n_out, cost=self.price(n_in, n_out),
                           latency_s=latency, meta=meta, finish_reason=choice.get("finish_reason"),
                           tool_calls=msg.get("tool_calls") or None, logprobs=choice.get("logprobs"))

    async def _attempt(self, messages: list[Message], params: dict[str, Any]) -> WorkerReply:
        req = self._request(messages, params, stream=False)
        async with self._sem():
            t0 = time.perf_counter()
            try:
                async with client_pool().lease(self.url) as client:
                    r = await client.post(**req, timeout=self.timeout)
            except Exception as e:  # noqa: BLE001 - every failure becomes a typed WorkerError
                raise self._map_error(e) from e
            latency = time.perf_counter() - t0
        if r.status_code != 200:
            raise self._status_error(r.status_code, r.headers, r.content)
        try:
            data = json.loads(r.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadReply(self.name, f"unparsable reply: {type(e).__name__}: {e}") from None
        if not isinstance(data, dict):
            raise BadReply(self.name, f"reply is not a JSON completion: {r.content[:80]!r}")
        return self._reply(data, messages, latency)

    def backoff(self, attempt: int, error: WorkerError) -> float:
        """Seconds to wait before retry number `attempt` (0-based): the server's Retry-After if it
        sent one, else exponential backoff with jitter in [0.5, 1.5) x base x 2^attempt."""
        if error.retry_after is not None:
            return error.retry_after
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.5)

    async def _chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            try:
                reply = await self._attempt(messages, params)
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

    # -- streaming ---------------------------------------------------------------------------------
    async def stream(self, messages: list[Message], **params: Any) -> AsyncIterator[Delta | WorkerReply]:
        """The endpoint's own SSE stream: `Delta`s as they arrive, then the complete reply. A
        connection that breaks, a garbage line or a stream that ends without `[DONE]` or a finish
        reason is a `WorkerError` (no retries: see the module docstring)."""
        self.refuse_unhonoured(params)
        req = self._request(messages, params, stream=True)
        text: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        logprob_content: list[Any] = []
        finish, usage, model, done = None, None, None, False
        async with self._sem():
            t0 = time.perf_counter()
            try:
                async with client_pool().lease(self.url) as client, \
                        client.stream("POST", **req, timeout=self.timeout) as r:
                    if r.status_code != 200:
                        raise self._status_error(r.status_code, r.headers, await r.aread())
                    async for line in r.aiter_lines():
                        if not line.startswith("data:"):
                            if line.strip() and not line.startswith((":", "event:", "id:", "retry:")):
                                raise BadReply(self.name, f"stream line is not SSE: {line[:80]!r}")
                            continue
                        payload = line[5:].strip()
                        if payload == "[DONE]":
                            done = True
                            break
                        try:
                            chunk = json.loads(payload)
                            if "error" in chunk:
                                raise ServerError(self.name, f"error event in stream: {str(chunk['error'])[:200]}")
                            model = chunk.get("model") or model
                            usage = chunk.get("usage") or usage
                            choices = chunk.get("choices") or []
                            if not choices:
                                continue
                            ch = choices[0]
                            delta = ch.get("delta") or {}
                        except (json.JSONDecodeError, AttributeError, TypeError, IndexError) as e:
                            raise BadReply(self.name, f"unparsable stream chunk ({type(e).__name__}): "
                                           f"{payload[:80]!r}") from None
                        finish = ch.get("finish_reason") or finish
                        d = Delta(content=delta.get("content") or None, tool_calls=delta.get("tool_calls") or None,
                                  logprobs=ch.get("logprobs") or None)
                        if d.content:
                            text.append(d.content)
                        if d.tool_calls:
                            _merge_tool_calls(tool_calls, d.tool_calls)
                        if d.logprobs and isinstance(d.logprobs.get("content"), list):
                            logprob_content += d.logprobs["content"]
                        if d.content or d.tool_calls or d.logprobs:
                            yield d
            except WorkerError:
                raise
            except Exception as e:  # noqa: BLE001
                raise self._map_error(e) from e
            latency = time.perf_counter() - t0
        if not done and finish is None:
            raise ConnectionFailed(self.name, "stream ended before [DONE]")
        full = "".join(text)
        meta: dict[str, Any] = {"streamed": True}
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            n_in, n_out = int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0)
        else:
            n_in, n_out = messages_tokens(messages), estimate_tokens(full)
            meta["tokens_estimated"] = True
        yield WorkerReply(text=full, worker=self.name, model=model or self.model, input_tokens=n_in,
                          output_tokens=n_out, cost=self.price(n_in, n_out), latency_s=latency, meta=meta,
                          finish_reason=finish, tool_calls=tool_calls or None,
                          logprobs={"content": logprob_content} if logprob_content else None)

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        p = _POOLS.pop(loop, None)
        if p is not None:
            await p.aclose()


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
