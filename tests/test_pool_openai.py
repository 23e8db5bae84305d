"""The openai backend against the fault-injecting stub: retries, Retry-After, typed errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from routers.pool import (AuthFailed, BadReply, ConnectionFailed, ContextLengthExceeded, RateLimited,
                          ServerError, WorkerTimeout)
from routers.pool.openai_worker import OpenAIWorker, parse_retry_after
from routers.pool.stub import start_stub_server
from test_pool_support import user


@pytest.fixture(scope="module")
def stub():
    url, stop = start_stub_server()
    yield url, stop.stub
    stop()


def worker(url, model, **kw):
    kw = {"api_key_env": None, "timeout": 5.0, "retries": 3, "backoff_s": 0.01, "input_price": 1.0,
          "output_price": 2.0, **kw}
    return OpenAIWorker("w", model=model, base_url=url, **kw)


def call(w, **params):
    async def go():
        t0 = time.perf_counter()
        try:
            return await w.chat(user("hello stub"), **params), time.perf_counter() - t0
        finally:
            await w.aclose()
    return asyncio.run(go())


def test_plain_call_tokens_and_cost(stub):
    url, _ = stub
    r, _ = call(worker(url, "plain"))
    assert r.text == "echo: hello stub" and r.model == "plain"
    assert r.input_tokens > 0 and r.output_tokens > 0 and not r.meta.get("tokens_estimated")
    assert r.cost == pytest.approx((r.input_tokens * 1.0 + r.output_tokens * 2.0) / 1e6)


@pytest.mark.parametrize("model,lo,hi", [("stub/429x1@1", 0.95, 1.6),       # Retry-After: 1
                                         ("stub/429x1@date2", 0.9, 2.6)])   # HTTP date ~2 s ahead
def test_429_waits_retry_after_then_succeeds(stub, model, lo, hi):
    url, s = stub
    r, elapsed = call(worker(url, model, backoff_s=5.0))  # backoff would be >= 2.5 s: Retry-After wins
    assert r.meta["retries"] == ["RateLimited"] and s.seen[model] == 2
    assert lo <= elapsed <= hi, elapsed


def test_500_retried_then_succeeds(stub):
    url, s = stub
    r, _ = call(worker(url, "stub/500x2"))
    assert r.meta["retries"] == ["ServerError", "ServerError"] and s.seen["stub/500x2"] == 3


def test_500_gives_up_after_retries(stub):
    url, s = stub
    with pytest.raises(ServerError) as e:
        call(worker(url, "stub/500", retries=2))
    assert e.value.retryable and e.value.status == 500 and s.seen["stub/500"] == 3


def test_timeout_is_worker_timeout(stub):
    url, _ = stub
    with pytest.raises(WorkerTimeout, match="no reply within 0.3 s"):
        call(worker(url, "stub/slow@1", timeout=0.3, retries=0))


def test_truncated_json_is_bad_reply(stub):
    url, _ = stub
    with pytest.raises(BadReply, match="unparsable"):
        call(worker(url, "stub/truncated", retries=0))


def test_connection_reset_is_connection_failed(stub):
    url, s = stub
    with pytest.raises(ConnectionFailed):
        call(worker(url, "stub/reset", retries=1))
    assert s.seen["stub/reset"] == 2  # retried once


def test_401_is_auth_failed_not_retried(stub):
    url, s = stub
    with pytest.raises(AuthFailed) as e:
        call(worker(url, "stub/401"))
    assert not e.value.retryable and s.seen["stub/401"] == 1


def test_context_length_not_retried(stub):
    url, s = stub
    with pytest.raises(ContextLengthExceeded, match="maximum context length"):
        call(worker(url, "stub/context"))
    assert s.seen["stub/context"] == 1


def test_missing_usage_is_estimated_and_flagged(stub):
    url, _ = stub
    r, _ = call(worker(url, "stub/nousage"))
    assert r.meta["tokens_estimated"] is True and r.input_tokens > 0 and r.output_tokens > 0


def test_fault_by_header_and_long_retry_after_raises_instead_of_blocking(stub):
    url, _ = stub
    w = worker(url, "plain-header", max_retry_after_s=0.5, extra_headers={"X-Stub-Fault": "429@30"})
    async def go():
        try:
            await w.chat(user("x"))
        finally:
            await w.aclose()
    t0 = time.perf_counter()
    with pytest.raises(RateLimited) as e:
        asyncio.run(go())
    assert e.value.retry_after == 30 and time.perf_counter() - t0 < 5


def test_missing_api_key_env_is_a_clear_error(stub, monkeypatch):
    url, _ = stub
    monkeypatch.delenv("BATON_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(AuthFailed, match="BATON_TEST_NO_SUCH_KEY"):
        call(worker(url, "plain", api_key_env="BATON_TEST_NO_SUCH_KEY"))


def test_max_concurrency_bounds_in_flight_requests(stub):
    url, _ = stub
    w = worker(url, "stub/slow@0.2", max_concurrency=2)
    async def go():
        t0 = time.perf_counter()
        await asyncio.gather(*(w.chat(user(str(i))) for i in range(4)))
        await w.aclose()
        return time.perf_counter() - t0
    assert asyncio.run(go()) >= 0.39  # 4 calls of 0.2 s, 2 at a time


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_random_failure_mode_is_seeded_and_near_the_rate():
    import httpx

    def statuses(seed):
        url, stop = start_stub_server(faults={"fail_rate": 0.3, "seed": seed})
        try:
            with httpx.Client(base_url=url) as c:
                return [c.post("/chat/completions", json={"model": "m", "messages": user("x")}).status_code
                        for _ in range(300)]
        finally:
            stop()
    a, b = statuses(0), statuses(0)
    assert a == b and set(a) == {200, 429, 500}
    assert abs(sum(s != 200 for s in a) / 300 - 0.3) < 0.1
