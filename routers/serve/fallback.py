"""The server's `CallFn`: retries, fallback down the router's ranking, cooldowns, compliance.

For each call a router makes, `RequestCaller` walks the candidates best first:
  - a worker a compliance rule excludes, or whose worst-case cost would break the request's
    budget, is skipped and never called (the exclusion and the rule are recorded);
  - a worker cooling down is set aside;
  - otherwise it is tried up to 1 + `retries` times (pool limits), waiting the worker's
    Retry-After when it sent one (else jittered exponential backoff); a Retry-After longer than
    `max_retry_wait_s`, a non-retryable error, or the worker entering cooldown moves on;
  - when every eligible worker failed or was cooling, the ones cooling only for `allowed_fails`
    get one last try each (a cooldown is a preference, not a ban; Retry-After is waited out if
    short, else respected).
Whose parameters (routers.serving_router's call hints): a call whose text can be the answer gets the
router's params overridden by the client's sampling params; an intermediate call keeps the
router's (config caps). A final answering call that forwards the router's `messages` object
unchanged is the client's own request: it gets the full messages and the pass-through fields
(tools, response_format, ...); if the request has such fields and a call is anything else, the
route cannot honour them: `CannotHonour` (400 naming the field) before that call is made.
Streaming: with a `sink`, the final answering call is streamed. Before its first piece a failure
falls back as above; after it, the pieces already went to the client, so a failure ends the
stream (`StreamBroken`, recorded as a failed attempt).
`WorkerHealth` is shared by all requests: `allowed_fails` failures within `fail_window_s` (and at
least `min_failure_rate` of its calls there) cool a worker for `cooldown_s`; a Retry-After bars it
until then. Every attempt is recorded for the log.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any, Callable

from routers.errors import BatonError
from routers.pool.base import (BadReply, BadRequest, ContextLengthExceeded, Message, UnknownQuery,
                               WorkerError, WorkerReply, WorkerTimeout, messages_tokens, worker_params)
from routers.serve.compliance import TenantRules
from routers.serve.config import FallbackConfig

# Errors caused by the request, not by the worker's health: no cooldown.
REQUEST_ERRORS = (BadRequest, ContextLengthExceeded, UnknownQuery)


class BackendFailure(WorkerError):
    """A backend raised something other than a WorkerError (a bug there); not the request's fault."""


class CannotHonour(BatonError):
    """The request asks for something this route cannot give (400 naming `field`)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class StreamBroken(BatonError):
    """The streamed answer failed after its first piece reached the client."""

    def __init__(self, error: WorkerError):
        super().__init__(str(error))
        self.error = error


class StreamSink:
    """Where a streamed answer goes: `started` is set at its first piece; then the queue holds
    ("delta", Delta) items and one ("end", WorkerReply) or ("error", WorkerError)."""

    def __init__(self):
        self.started = asyncio.Event()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker: str | None = None


class NoEligibleWorker(BatonError):
    """No worker could answer a call; `status` 403 when compliance excluded all, else 503."""

    def __init__(self, message: str, status: int = 503, code: str = "no_worker_available"):
        super().__init__(message)
        self.status, self.code = status, code


class WorkerHealth:
    """Recent outcomes and cooldowns per worker, shared across requests (single event loop).

    A worker cools down for `cooldown_s` when, within the last `fail_window_s`, it failed at least
    `allowed_fails` times AND those failures are at least `min_failure_rate` of its calls: a dead
    worker cools after `allowed_fails` errors, a busy one that fails now and then keeps serving
    (LiteLLM's allowed_fails plus failure-rate rule)."""

    def __init__(self, pool, cfg: FallbackConfig, clock: Callable[[], float] = time.monotonic):
        self.pool, self.cfg, self.clock = pool, cfg, clock
        self.events: dict[str, deque[tuple[float, bool]]] = {n: deque() for n in pool.names}  # (t, failed)
        self.cool_until: dict[str, float] = {n: 0.0 for n in pool.names}   # allowed_fails exceeded
        self.not_before: dict[str, float] = {n: 0.0 for n in pool.names}   # Retry-After

    def cooling(self, worker: str) -> float:
        """Seconds until `worker` may be called again (0: now)."""
        return max(0.0, max(self.cool_until[worker], self.not_before[worker]) - self.clock())

    def _window(self, worker: str, failed: bool) -> deque[tuple[float, bool]]:
        now = self.clock()
        q = self.events[worker]
        q.append((now, failed))
        while q and q[0][0] < now - self.cfg.fail_window_s:
            q.popleft()
        return q

    def success(self, worker: str) -> None:
        self._window(worker, False)

    def failure(self, worker: str, err: WorkerError) -> bool:
        """Count a failure; True when it sends the worker into cooldown."""
        now = self.clock()
        if err.retry_after is not None:
            self.not_before[worker] = max(self.not_before[worker], now + float(err.retry_after))
        q = self._window(worker, True)
        lim = self.pool.limits(worker)
        fails = sum(f for _, f in q)
        if fails >= max(1, int(lim["allowed_fails"])) and fails / len(q) >= self.cfg.min_failure_rate:
            q.clear()
            self.cool_until[worker] = now + float(lim["cooldown_s"])
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        return {w: {"cooling_s": round(self.cooling(w), 3), "recent_failures": sum(f for _, f in self.events[w]),
                    "recent_calls": len(self.events[w])} for w in self.events}


class RequestCaller:
    """The `CallFn` handed to a router for one request; `calls` is what the log records."""

    def __init__(self, pool, health: WorkerHealth, rules: TenantRules, cfg: FallbackConfig,
                 base_params: dict[str, Any] | None = None, on_attempt: Callable[..., None] | None = None, *,
                 request_messages: list[Message] | None = None, full_messages: list[Message] | None = None,
                 passthrough: dict[str, Any] | None = None, needs: list[tuple[str, str]] | None = None,
                 sink: StreamSink | None = None):
        self.pool, self.health, self.rules, self.cfg = pool, health, rules, cfg
        self.base_params = dict(base_params or {})     # the client's sampling params
        self.request_messages = request_messages       # the object handed to the router
        self.full_messages = full_messages             # the client's messages, unchanged
        self.passthrough = dict(passthrough or {})
        self.needs = list(needs or [])                 # (field, what) only a direct call honours
        self.sink = sink
        self.on_attempt = on_attempt          # metrics hook: (worker, outcome, latency_s)
        self.calls: list[dict[str, Any]] = []
        self.spent = 0.0

    @property
    def fallbacks(self) -> int:
        return sum(c["fallbacks"] for c in self.calls)

    def _worst_cost(self, worker: str, messages: list[Message], params: dict[str, Any]) -> float:
        w = self.pool[worker]
        out = params.get("max_tokens") or self.cfg.budget_max_tokens
        return w.price(messages_tokens(messages), int(out))

    async def __call__(self, candidates: list[str], messages: list[Message],
                       params: dict[str, Any]) -> WorkerReply:
        params = params or {}
        answer, final = params.get("answer", True) is not False, params.get("final", True) is not False
        direct = answer and final and self.request_messages is not None and messages is self.request_messages
        if self.needs and not direct:
            field, what = self.needs[0]
            raise CannotHonour(field, f"{field}: {what}, but this router's {params.get('role') or 'worker'} "
                               "call is not the client's own request to one worker (a multi-turn or "
                               "workflow router); use a single-worker router or drop the field")
        params = {**worker_params(params), **self.base_params} if answer else worker_params(params)
        if direct:
            if self.full_messages is not None:
                messages = self.full_messages
            params.update(self.passthrough)
        stream = self.sink is not None and answer and final and not self.sink.started.is_set()
        rec: dict[str, Any] = {"role": params.get("role"), "candidates": list(candidates), "excluded": [],
                               "attempts": [], "chosen": None, "fallbacks": 0}
        if stream:
            rec["streamed"] = True
        self.calls.append(rec)
        cap = self.rules.max_cost
        cooled: list[str] = []
        for w in candidates:
            if w not in self.pool:
                rec["excluded"].append({"worker": w, "rule": "not in pool"})
                continue
            rule = self.rules.excluded_by(w, self.pool.tags(w))
            if rule is None and cap is not None and self.spent + self._worst_cost(w, messages, params) > cap[0]:
                rule = f"{cap[1]} (max_cost_per_request ${cap[0]:g})"
            if rule is not None:
                rec["excluded"].append({"worker": w, "rule": rule})
                continue
            if self.health.cooling(w) > 0:
                cooled.append(w)
                continue
            reply = await self._try(w, messages, params, rec, retries=int(self.pool.limits(w)["retries"]),
                                    stream=stream)
            if reply is not None:
                return reply
        for w in sorted(cooled, key=lambda n: self.health.not_before[n]):  # last resort
            if self.health.not_before[w] - self.health.clock() > self.cfg.max_retry_wait_s:
                continue
            reply = await self._try(w, messages, params, rec, retries=0, last_resort=True, stream=stream)
            if reply is not None:
                return reply
        raise self._why(rec, cooled)

    async def _stream(self, w: str, messages, params, timeout: float, rec, t0: float) -> WorkerReply:
        """Stream worker `w` into the sink. Failures before the first piece raise (fallback);
        after it they raise StreamBroken, with the failed attempt recorded."""
        it = self.pool.stream(w, messages, **params).__aiter__()
        try:
            first = await asyncio.wait_for(it.__anext__(), timeout)   # other errors here: an ordinary failure
        except BadRequest:                 # e.g. "streaming is not supported by this server": ask it plainly
            reply = await asyncio.wait_for(self.pool.call(w, messages, **params), timeout)
            self.pool[w].stream_refused = True     # later requests skip the refused stream
            return reply
        if isinstance(first, WorkerReply):                        # nothing to stream (empty reply)
            return first
        sink = self.sink
        sink.worker = w
        sink.started.set()
        sink.queue.put_nowait(("delta", first))
        try:
            while True:
                try:
                    item = await asyncio.wait_for(it.__anext__(), timeout)
                except StopAsyncIteration:
                    raise BadReply(w, "stream ended without a final reply") from None
                if isinstance(item, WorkerReply):
                    sink.queue.put_nowait(("end", item))
                    return item
                sink.queue.put_nowait(("delta", item))
        except Exception as e:  # noqa: BLE001 - after the first piece every failure ends the stream
            err = e if isinstance(e, WorkerError) else (
                WorkerTimeout(w, f"no stream piece within {timeout:g} s") if isinstance(e, asyncio.TimeoutError)
                else BackendFailure(w, f"{type(e).__name__}: {e}"))
            dt = time.perf_counter() - t0
            rec["attempts"].append({"worker": w, "attempt": 0, "ok": False, "latency_s": round(dt, 6),
                                    "error": type(err).__name__, "message": str(err)[:300], "status": err.status,
                                    "retry_after": err.retry_after, "request_error": False, "after_first_piece": True})
            rec["chosen"] = w
            self.health.failure(w, err)
            if self.on_attempt:
                self.on_attempt(w, type(err).__name__, dt)
            sink.queue.put_nowait(("error", err))
            raise StreamBroken(err) from None
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001
                    pass

    async def _try(self, w: str, messages, params, rec, *, retries: int, last_resort: bool = False,
                   stream: bool = False):
        timeout = float(self.pool.limits(w)["timeout"])
        for attempt in range(retries + 1):
            wait = self.health.not_before[w] - self.health.clock()
            if wait > self.cfg.max_retry_wait_s:
                return None
            if wait > 0:
                await asyncio.sleep(wait)
            t0 = time.perf_counter()
            try:
                if stream and not getattr(self.pool[w], "stream_refused", False):
                    reply = await self._stream(w, messages, params, timeout, rec, t0)
                else:
                    reply = await asyncio.wait_for(self.pool.call(w, messages, **params), timeout)
                err = None
            except asyncio.TimeoutError:
                err = WorkerTimeout(w, f"no reply within {timeout:g} s")
            except WorkerError as e:
                err = e
            except StreamBroken:
                raise
            except Exception as e:  # noqa: BLE001 - a backend bug must not take the request down
                err = BackendFailure(w, f"{type(e).__name__}: {e}")
            dt = time.perf_counter() - t0
            a: dict[str, Any] = {"worker": w, "attempt": attempt, "ok": err is None, "latency_s": round(dt, 6)}
            if last_resort:
                a["last_resort"] = True
            if err is None:
                rec["attempts"].append(a)
                rec["chosen"] = w
                rec["fallbacks"] = len({x["worker"] for x in rec["attempts"]}) - 1
                self.spent += reply.cost
                self.health.success(w)
                if self.on_attempt:
                    self.on_attempt(w, "ok", dt)
                return reply
            a.update(error=type(err).__name__, message=str(err)[:300], status=err.status,
                     retry_after=err.retry_after, request_error=isinstance(err, REQUEST_ERRORS))
            rec["attempts"].append(a)
            if self.on_attempt:
                self.on_attempt(w, type(err).__name__, dt)
            cooled = False if isinstance(err, REQUEST_ERRORS) else self.health.failure(w, err)
            if not err.retryable or cooled or attempt == retries:
                return None
            delay = err.retry_after if err.retry_after is not None else \
                min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.5)
            if delay > self.cfg.max_retry_wait_s:
                return None
            if err.retry_after is None:
                await asyncio.sleep(delay)   # a Retry-After wait happens at the loop's top
        return None

    def _why(self, rec: dict[str, Any], cooled: list[str]) -> NoEligibleWorker:
        parts = [f"{x['worker']} excluded by rule {x['rule']}" for x in rec["excluded"]]
        failed: dict[str, str] = {}
        for a in rec["attempts"]:
            failed[a["worker"]] = f"{a['worker']} failed ({a['error']}: {a['message']})"
        parts += failed.values()
        parts += [f"{w} cooling down for {self.health.cooling(w):.1f} s" for w in cooled if w not in failed]
        if not rec["attempts"] and not cooled and rec["excluded"]:
            return NoEligibleWorker("no eligible worker: every candidate is excluded for this tenant: "
                                    + "; ".join(parts), status=403, code="no_compliant_worker")
        msg = "no worker could answer: " + ("; ".join(parts) or "the router gave no candidates")
        if rec["attempts"] and not cooled and all(a.get("request_error") for a in rec["attempts"]):
            return NoEligibleWorker(msg, status=400, code="rejected_by_workers")   # the request's fault
        return NoEligibleWorker(msg)
