"""Hostile input against the gateway (issue 15): one request's content never harms another's,
every request gets exactly one decision-log record, and malformed bodies get a 400 naming why."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from routers.serve.decision_log import DecisionLog, read_log
from test_serve import Fixed, make, serving, stub_pool  # tests/ is on sys.path


@pytest.fixture
def stub():
    from routers.pool.stub import start_stub_server
    url, stop = start_stub_server()
    yield url, stop.stub
    stop()


def _body(text_json: str) -> bytes:
    """A chat body whose user content is the JSON string literal `text_json` (escapes kept raw)."""
    return ('{"model": "fixed", "messages": [{"role": "user", "content": ' + text_json + '}]}').encode()


@pytest.mark.parametrize("window_ms", [0, 20])     # strict group commit, and the fsync window
def test_lone_surrogates_never_break_other_requests_or_the_log(stub, tmp_path, window_ms):
    """80 concurrent requests, 10 carrying a lone UTF-16 surrogate (a JS client cutting an emoji):
    all 80 answered, exactly one parseable record each, the odd text kept (escaped), not lost."""
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a"})
    app = make(pool, [Fixed("fixed", ["a"])], tmp_path, log_fsync_window_ms=window_ms)
    bad = set(range(0, 80, 8))
    with serving(app) as base:
        async def drive():
            async with httpx.AsyncClient(timeout=60) as c:
                async def one(i):
                    text = f'"cut \\ud800 emoji {i}"' if i in bad else f'"fine {i}"'
                    r = await c.post(base + "/v1/chat/completions", content=_body(text),
                                     headers={"content-type": "application/json"})
                    return i, r
                return await asyncio.gather(*[one(i) for i in range(80)])
        results = asyncio.run(drive())
    failed = [(i, r.status_code, r.text[:200]) for i, r in results if r.status_code != 200]
    assert failed == []
    for i, r in results:
        content = r.json()["choices"][0]["message"]["content"]   # the reply itself is valid JSON
        assert content == (f"echo: cut \ud800 emoji {i}" if i in bad else f"echo: fine {i}")
    raw = (tmp_path / "log.jsonl").read_bytes()
    raw.decode("utf-8")                                          # the file is valid UTF-8
    recs = read_log(tmp_path / "log.jsonl")
    assert len(recs) == 80 and len({r["request_id"] for r in recs}) == 80
    if window_ms == 0:
        assert app.state.gateway.log.batches < 80      # concurrent requests shared fsyncs
    assert all(r["outcome"] == "ok" for r in recs)
    texts = sorted(r["messages"][0]["content"] for r in recs)
    assert texts == sorted(f"cut \ud800 emoji {i}" if i in bad else f"fine {i}" for i in range(80))


def test_a_router_that_hashes_the_prompt_routes_a_lone_surrogate(tmp_path):
    from fastapi.testclient import TestClient

    from routers.baselines.serving import SingleChoice
    from routers.baselines.simple import RandomRouter
    from routers.pool import load_pool
    from routers.serve.app import create_app
    pool = load_pool("simulated")
    app = create_app({"random": SingleChoice(RandomRouter(models=pool.names), name="random")}, pool,
                     log_path=tmp_path / "log.jsonl")
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", content=_body('"cut \\ud83d"').replace(b"fixed", b"random"),
                   headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert read_log(tmp_path / "log.jsonl")[0]["messages"][0]["content"] == "cut \ud83d"


def test_unwritable_record_and_failed_disk_never_fail_an_answered_request(stub, tmp_path, capsys):
    """A record that json cannot encode is written in a reduced form naming why; a log write that
    fails (disk full) leaves the answered request a 200, says so on stderr and in /metrics, and
    never leaves a partial line."""
    log = DecisionLog(tmp_path / "d.jsonl")
    loop_rec: dict = {"request_id": "r1"}
    loop_rec["self"] = loop_rec                                   # circular: json.dumps raises
    log.write(loop_rec)
    log.write({"request_id": "r2", "text": "a\udc80b"})
    (r1, r2) = read_log(tmp_path / "d.jsonl")
    assert r1["request_id"] == "r1" and "unserializable" in r1["log_error"]
    assert r2["text"] == "a\udc80b"
    log.close()

    url, _ = stub
    pool = stub_pool(url, {"a": "model-a"})
    app = make(pool, [Fixed("fixed", ["a"])], tmp_path)
    gw = app.state.gateway

    def full_disk(data: bytes) -> None:
        gw.log._f.write(data[: len(data) // 2])      # a torn write, then the error
        raise OSError(28, "No space left on device")
    with serving(app) as base:
        gw.log._raw_write = full_disk
        r = httpx.post(base + "/v1/chat/completions", json={"model": "fixed", "messages": [
            {"role": "user", "content": "hello"}]}, timeout=30)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: hello"
        assert r.headers["x-baton-log"].startswith("failed")
        assert 'baton_log_failures_total 1.0' in httpx.get(base + "/metrics").text
        del gw.log._raw_write
        r = httpx.post(base + "/v1/chat/completions", json={"model": "fixed", "messages": [
            {"role": "user", "content": "again"}]}, timeout=30)
        assert r.status_code == 200 and "x-baton-log" not in r.headers
    assert "decision log write failed" in capsys.readouterr().err
    recs = read_log(tmp_path / "log.jsonl")                  # no torn line was left behind
    assert [r["messages"][0]["content"] for r in recs] == ["again"]


def test_deep_nesting_and_non_boolean_stream_are_400_naming_the_field(stub, tmp_path):
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a"})
    app = make(pool, [Fixed("fixed", ["a"])], tmp_path)
    ask = [{"role": "user", "content": "hi"}]
    with serving(app) as base:
        post = lambda content: httpx.post(base + "/v1/chat/completions", content=content,  # noqa: E731
                                          headers={"content-type": "application/json"}, timeout=30)
        for depth in (100, 100_000):
            deep = '{"model": "fixed", "messages": [{"role": "user", "content": "hi"}], "x": ' + \
                   "[" * depth + "]" * depth + "}"
            r = post(deep.encode())
            assert r.status_code == 400, (depth, r.text[:300])
            assert "nested" in r.json()["error"]["message"]
        for field, value in (("stream", "yes"), ("stream", 1), ("stream_options", {"include_usage": "true"})):
            r = post(json.dumps({"model": "fixed", "messages": ask, field: value}).encode())
            assert r.status_code == 400, (field, value, r.text)
            assert r.json()["error"]["param"].startswith(field)
        assert post(json.dumps({"model": "fixed", "messages": ask, "stream": False}).encode()).status_code == 200
    assert len(read_log(tmp_path / "log.jsonl")) == 6


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_refuses_an_impossible_port(port, capsys):
    from routers.cli import main
    assert main(["serve", "--router", "random", "--pool", "simulated", "--port", port]) == 2
    assert "--port" in capsys.readouterr().err
