"""Real streaming end to end (issue 11 item 1): the answering worker's tokens reach the client as
they arrive, fallback before the first token is invisible, a failure after it is an OpenAI-style
error event that the decision log records, and `include_usage` brings the orchestration split."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from routers.serve.decision_log import read_log
from test_serve import Fixed, client, make, serving, stub_pool  # tests/ is on sys.path
from test_serve_params import Scripted
from trinity.config import ProtocolConfig

LONG = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]


@pytest.fixture
def stub():
    from routers.pool.stub import start_stub_server
    url, stop = start_stub_server()
    yield url, stop.stub
    stop()


def timed_stream(c, **kw):
    """(seconds to the first content piece, seconds to the last, chunks)."""
    t0 = time.perf_counter()
    first = last = None
    chunks = []
    for ch in c.chat.completions.create(stream=True, **kw):
        chunks.append(ch)
        if ch.choices and ch.choices[0].delta.content:
            last = time.perf_counter() - t0
            first = first if first is not None else last
    return first, last, chunks


def test_first_token_arrives_long_before_the_last_with_fallback_before_it(stub, tmp_path):
    url, st = stub
    pool = stub_pool(url, {"dead": "stub/500", "slow": "stub/slowstream@0.15"}, limits={"retries": 0})
    app = make(pool, [Fixed("fixed", ["dead", "slow"])], tmp_path)
    with serving(app) as base:
        first, last, chunks = timed_stream(client(base), model="fixed", messages=LONG,
                                           stream_options={"include_usage": True})
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: " + LONG[0]["content"]
    # 11 words 0.15 s apart: the first arrives at once, the last >= 1.5 s later (loose: CI is loaded)
    assert last >= 10 * 0.15 and last - first >= 1.2 and first < 0.4 * last, (first, last)
    fin = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert fin[-1].choices[0].finish_reason == "stop"
    route = fin[-1].model_extra["baton_route"]
    assert route["steps"][0]["worker"] == "slow" and route["fallbacks"] == 1    # the 500 was invisible
    u = chunks[-1].usage.model_dump()
    assert chunks[-1].choices == [] and u["orchestration_tokens"] == {"input": 3, "output": 0, "total": 3}
    assert u["worker_tokens"]["output"] == 11 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    (rec,) = read_log(tmp_path / "log.jsonl")
    assert rec["outcome"] == "ok" and rec["stream"] is True and rec["calls"][0]["streamed"] is True
    assert rec["latency_s"] >= 1.5 and rec["ttft_s"] < 0.4 * rec["latency_s"]
    assert [a["worker"] for a in rec["calls"][0]["attempts"]] == ["dead", "slow"]


@pytest.mark.parametrize("fault,error", [("midfail", "ConnectionFailed"), ("garbage", "BadReply")])
def test_failure_after_the_first_token_is_an_error_event_and_logged(stub, tmp_path, fault, error):
    url, _ = stub
    pool = stub_pool(url, {"flaky": f"stub/{fault}", "good": "model-good"}, limits={"retries": 0})
    app = make(pool, [Fixed("fixed", ["flaky", "good"])], tmp_path)
    got = []
    with serving(app) as base:
        with pytest.raises(openai.APIError) as ei:
            for ch in client(base).chat.completions.create(model="fixed", messages=LONG, stream=True):
                got.append(ch)
        assert "failed after streaming began" in str(ei.value.message)
        # the server is fine and answers the next request
        assert client(base).chat.completions.create(model="fixed", messages=[
            {"role": "user", "content": "x"}], max_tokens=50).choices[0].message.content
    assert "".join(ch.choices[0].delta.content or "" for ch in got if ch.choices).startswith("echo:")
    rec = read_log(tmp_path / "log.jsonl")[0]
    assert rec["outcome"] == "stream_error" and rec["error"]["code"] == "stream_interrupted"
    (att,) = rec["calls"][0]["attempts"]
    assert att["worker"] == "flaky" and att["error"] == error and att["after_first_piece"] is True


def test_multi_turn_streams_its_final_worker_turn_and_simulated_workers_stream_in_pieces(stub, tmp_path):
    url, st = stub
    pool = stub_pool(url, {"a": "stub/slowstream@0.1", "b": "model-b"})
    # Thinker then Worker (the last turn): the Worker's answer streams live
    app = make(pool, [Scripted("multi", ["a", "b"], ProtocolConfig(max_turns=2, max_tokens=64))], tmp_path)
    with serving(app) as base:
        first, last, chunks = timed_stream(client(base), model="multi", messages=LONG)
    assert last - first >= 0.25
    route = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason][-1].model_extra["baton_route"]
    assert [s["role"] for s in route["steps"]] == ["thinker", "worker"]

    from routers.baselines.serving import SingleChoice
    from routers.baselines.simple import RandomRouter
    from routers.pool import load_pool
    from routers.serve.app import create_app
    from routers.pool.config import read_pool_config
    cfg = read_pool_config("simulated")
    cfg["workers"] = [{**w, "stream": {"chunk_chars": 8, "delay_s": 0.05}} for w in cfg["workers"]]
    sim = load_pool(cfg)                       # the pool YAML's `stream` setting
    assert {(w.stream_chunk_chars, w.stream_delay_s) for w in sim.workers.values()} == {(8, 0.05)}
    app = create_app({"random": SingleChoice(RandomRouter(models=sim.names), name="random")}, sim,
                     log_path=tmp_path / "sim.jsonl")
    with serving(app) as base:
        first, last, chunks = timed_stream(client(base), model="random", messages=LONG)
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
    assert len(pieces) >= 5 and all(len(p) <= 8 for p in pieces) and last - first >= 0.2


def test_client_leaving_mid_stream_still_gets_one_record(stub, tmp_path):
    import httpx
    url, _ = stub
    pool = stub_pool(url, {"slow": "stub/slowstream@0.3"})
    app = make(pool, [Fixed("fixed", ["slow"])], tmp_path)
    with serving(app) as base:
        with httpx.stream("POST", base + "/v1/chat/completions", json={"model": "fixed", "messages": LONG,
                                                                      "stream": True}, timeout=30) as r:
            for line in r.iter_lines():
                if '"content":"echo:"' in line:
                    break                       # leave after the first token
        t0 = time.time()
        while time.time() - t0 < 10 and not (tmp_path / "log.jsonl").read_bytes():
            time.sleep(0.05)
    (rec,) = read_log(tmp_path / "log.jsonl")
    assert rec["status"] == 499 and rec["error"]["code"] == "cancelled"


def test_a_worker_that_refuses_stream_true_answers_unstreamed(tmp_path):
    """An endpoint without streaming (400 on stream: true, like scripts/openai_server_hf.py) is
    asked plainly; the client still gets a stream, of the finished answer."""
    from routers.pool.stub import StubServer, start_stub_server
    url, stop = start_stub_server()
    original = StubServer._stream

    async def refuse(self, req, model, kind, arg, writer):
        self._send(writer, 400, self._error("streaming is not supported by this server", "invalid_request_error"))
        await writer.drain()
    StubServer._stream = refuse
    try:
        pool = stub_pool(url, {"plain": "model-plain"})
        app = make(pool, [Fixed("fixed", ["plain"])], tmp_path)
        with serving(app) as base:
            for _ in range(2):
                chunks = list(client(base).chat.completions.create(model="fixed", messages=LONG, stream=True))
                assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).startswith("echo: one")
    finally:
        StubServer._stream = original
        stop()
    assert pool["plain"].stream_refused is True
    assert [len(r["calls"][0]["attempts"]) for r in read_log(tmp_path / "log.jsonl")] == [1, 1]
    assert [b.get("stream") for b in stop.stub.bodies] == [True, None, None]   # refused once, then plain


def test_a_stalled_stream_times_out_and_a_reset_before_the_first_token_falls_back(stub, tmp_path):
    url, _ = stub
    pool = stub_pool(url, {"reset": "stub/reset", "stall": "stub/slowstream@3", "good": "model-good"},
                     limits={"retries": 0, "timeout": 0.5})
    app = make(pool, [Fixed("first", ["reset", "good"]), Fixed("second", ["stall", "good"])], tmp_path)
    with serving(app) as base:
        c = client(base)
        _, _, chunks = timed_stream(c, model="first", messages=LONG)
        assert [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason][-1].model_extra[
            "baton_route"]["steps"][0]["worker"] == "good"
        t0 = time.perf_counter()
        with pytest.raises(openai.APIError, match="failed after streaming began"):
            timed_stream(c, model="second", messages=LONG)
        assert time.perf_counter() - t0 < 2.5           # the per-piece timeout, not the 3 s stall
    recs = read_log(tmp_path / "log.jsonl")
    assert [a["error"] for a in recs[0]["calls"][0]["attempts"] if not a["ok"]] == ["ConnectionFailed"]
    assert recs[1]["outcome"] == "stream_error" and recs[1]["calls"][0]["attempts"][0]["error"] == "WorkerTimeout"
