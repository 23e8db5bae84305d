"""The OpenAI-compatible gateway, driven by the real `openai` SDK against a uvicorn server in a
thread, over workers that are the fault-injecting stub server (routers.pool.stub)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from routers.errors import ConfigError
from routers.pool import load_pool
from routers.pool.stub import start_stub_server
from routers.serve.app import create_app
from routers.serve.auth import KeyStore, load_keys, parse_env
from routers.serve.compliance import parse_rules
from routers.serve.config import ServeConfig, parse_serve_config
from routers.serve.decision_log import read_log
from routers.serving_router import Episode, ServingRouter, Step

FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "max_retry_wait_s": 1.0}


class Fixed(ServingRouter):
    """Always the same ranking: makes fallback order testable."""

    def __init__(self, name: str, order: list[str]):
        self.name, self.workers = name, list(order)

    async def answer(self, messages, call, *, lam=0.0):
        reply = await call(self.workers, messages, {"role": "answer"})
        return Episode(answer=reply.text, steps=[Step(worker=reply.worker, role="answer", reply=reply,
                                                      candidates=list(self.workers))],
                       orchestration_input_tokens=3, orchestration_latency_s=0.001, meta={"lam": lam})


@contextlib.contextmanager
def serving(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    t0 = time.time()
    while not server.started:
        assert th.is_alive() and time.time() - t0 < 20, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        th.join(10)


@pytest.fixture
def stub():
    url, stop = start_stub_server()
    yield url, stop.stub
    stop()


def stub_pool(url: str, workers: dict[str, str], limits: dict | None = None, **extra):
    """workers: name -> stub model name (a fault spec like 'stub/500' or any plain name)."""
    lim = {"retries": 1, "allowed_fails": 3, "cooldown_s": 30, "timeout": 5, **(limits or {})}
    return load_pool({"workers": [
        {"name": n, "backend": "openai", "model": m, "base_url": url, "api_key_env": None,
         "limits": lim, **extra.get(n, {})} for n, m in workers.items()]})


def make(pool, routers, tmp_path, *, keys=None, rules=None, **cfg):
    cfg = {"fallback": {**FAST, **cfg.pop("fallback", {})}, **cfg}
    return create_app({r.name: r for r in routers}, pool, log_path=tmp_path / "log.jsonl",
                      keys=keys, rules=rules, config=parse_serve_config(cfg))


def client(base: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30)


ASK = [{"role": "user", "content": "hello router"}]


# -- the API ----------------------------------------------------------------------------------------
def test_openai_sdk_chat_stream_models_usage_and_route(stub, tmp_path):
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a", "b": "model-b"})
    app = make(pool, [Fixed("fixed", ["a", "b"]), Fixed("other", ["b", "a"])], tmp_path)
    with serving(app) as base:
        c = client(base)
        assert sorted(m.id for m in c.models.list().data) == ["fixed", "other"]
        raw = c.chat.completions.with_raw_response.create(model="fixed", messages=ASK)
        r = raw.parse()
        assert r.model == "fixed" and r.choices[0].message.content == "echo: hello router"
        route = json.loads(raw.headers["x-baton-route"])
        assert route["router"] == "fixed" and route["workers"] == ["a"] and route["fallbacks"] == 0
        extra = r.model_extra["baton_route"]
        assert extra["steps"][0]["worker"] == "a" and extra["steps"][0]["candidates"] == ["a", "b"]
        u = r.usage.model_dump()
        assert u["orchestration_tokens"] == {"input": 3, "output": 0, "total": 3}
        assert u["worker_tokens"]["input"] == extra["steps"][0]["input_tokens"] > 0
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] == 3 + u["worker_tokens"]["total"]

        chunks = list(c.chat.completions.create(model="other", messages=ASK, stream=True,
                                                stream_options={"include_usage": True}))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "echo: hello router"
        assert all(ch.model == "other" for ch in chunks)
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
        assert chunks[-1].usage.total_tokens == u["total_tokens"]

        # RouteLLM-style name and extra_body set lam per request
        r2 = c.chat.completions.create(model="router-fixed-0.25", messages=ASK)
        r3 = c.chat.completions.create(model="fixed", messages=ASK, extra_body={"lam": 2.5})
        assert r2.model == r3.model == "fixed"
        assert r2.model_extra["baton_route"]["lam"] == 0.25 and r3.model_extra["baton_route"]["lam"] == 2.5
        health = httpx.get(base + "/health").json()
        assert health["status"] == "ok" and health["auth"] is False
        metrics = httpx.get(base + "/metrics").text
        assert 'baton_requests_total{router="fixed",status="200"} 3.0' in metrics
        assert 'baton_worker_calls_total{outcome="ok",worker="a"} 3.0' in metrics
        assert "baton_request_latency_seconds_bucket" in metrics
    recs = read_log(tmp_path / "log.jsonl")
    assert len(recs) == 4 and [r["lam"] for r in recs] == [0.0, 0.0, 0.25, 2.5]
    assert recs[1]["stream"] is True and recs[0]["chosen"] == [{"worker": "a", "role": "answer"}]


def test_fallback_retry_after_timeout_and_cooldown(stub, tmp_path):
    url, st = stub
    pool = stub_pool(url, {"limited": "stub/429@0.3", "slow": "stub/slow@3", "good": "model-good"},
                     limits={"retries": 1, "allowed_fails": 2, "cooldown_s": 60},
                     slow={"limits": {"timeout": 0.3, "retries": 0}})
    app = make(pool, [Fixed("fixed", ["limited", "slow", "good"])], tmp_path)
    with serving(app) as base:
        c = client(base)
        t0 = time.perf_counter()
        r = c.chat.completions.create(model="fixed", messages=ASK)
        dt = time.perf_counter() - t0
        assert r.choices[0].message.content == "echo: hello router"
        assert r.model_extra["baton_route"]["steps"][0]["worker"] == "good"
        assert r.model_extra["baton_route"]["fallbacks"] == 2
        assert dt >= 0.3 + 0.3   # waited the Retry-After once and the timeout once
        assert st.seen["stub/429@0.3"] == 2   # 1 + retries
        # 'limited' had 2 failures (allowed_fails) -> cooling: the next request never calls it
        r = c.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "again"}])
        assert r.model_extra["baton_route"]["steps"][0]["worker"] == "good"
        assert st.seen["stub/429@0.3"] == 2
        assert httpx.get(base + "/health").json()["workers"]["limited"]["cooling_s"] > 50
    rec = read_log(tmp_path / "log.jsonl")[0]
    atts = rec["calls"][0]["attempts"]
    assert [(a["worker"], a["ok"], a.get("error")) for a in atts] == [
        ("limited", False, "RateLimited"), ("limited", False, "RateLimited"), ("slow", False, "WorkerTimeout"),
        ("good", True, None)]
    assert atts[0]["retry_after"] == 0.3 and rec["fallbacks"] == 2


def test_all_workers_failing_gives_openai_503_naming_why(stub, tmp_path):
    url, _ = stub
    pool = stub_pool(url, {"x": "stub/500", "y": "stub/401"}, limits={"retries": 0})
    app = make(pool, [Fixed("fixed", ["x", "y"])], tmp_path)
    with serving(app) as base:
        with pytest.raises(openai.APIStatusError) as ei:
            client(base).chat.completions.create(model="fixed", messages=ASK)
        e = ei.value
        assert e.status_code == 503
        assert e.body["code"] == "no_worker_available" and e.body["type"] == "service_unavailable"
        assert "x failed (ServerError" in e.body["message"] and "y failed (AuthFailed" in e.body["message"]
        assert httpx.get(base + "/health").json()["status"] == "ok"   # still up
    (rec,) = read_log(tmp_path / "log.jsonl")
    assert rec["outcome"] == "error" and rec["status"] == 503 and len(rec["calls"][0]["attempts"]) == 2
    # every worker refusing the request itself (prompt too long) is the client's 400, not a 503
    pool = stub_pool(url, {"short": "stub/context"})
    with serving(make(pool, [Fixed("fixed", ["short"])], tmp_path)) as base:
        with pytest.raises(openai.BadRequestError) as ei:
            client(base).chat.completions.create(model="fixed", messages=ASK)
        assert ei.value.body["code"] == "rejected_by_workers" and "ContextLengthExceeded" in ei.value.body["message"]


# -- compliance -------------------------------------------------------------------------------------
def test_denied_worker_never_called_even_as_fallback_and_rule_is_logged(stub, tmp_path):
    url, st = stub
    pool = stub_pool(url, {"us-closed": "model-us", "eu-broken": "stub/500", "eu-open": "model-eu"},
                     limits={"retries": 0},
                     **{"us-closed": {"tags": {"provider": "openai", "region": "us", "open_weights": False}},
                        "eu-broken": {"tags": {"region": "eu", "open_weights": True}},
                        "eu-open": {"tags": {"region": "eu", "open_weights": True}}})
    rules = parse_rules({"rules": [
        {"name": "eu-only", "tenants": ["acme"], "allow_tags": {"region": ["eu"]}},
        {"name": "no-closed", "tenants": ["beta"], "deny_tags": {"open_weights": [False]},
         "deny_workers": ["eu-open"]}]}, workers=pool.names)
    keys = KeyStore({"acme-key-123": "acme", "beta-key-456": "beta", "free-key-789": "free"})
    app = make(pool, [Fixed("fixed", ["us-closed", "eu-broken", "eu-open"])], tmp_path, keys=keys, rules=rules)
    with serving(app) as base:
        r = client(base, "acme-key-123").chat.completions.create(model="fixed", messages=ASK)
        assert r.model_extra["baton_route"]["steps"][0]["worker"] == "eu-open"
        assert st.seen["model-us"] == 0 and st.seen["stub/500"] == 1
        # beta: every compliant worker fails -> the client is told, the denied ones are still not called
        with pytest.raises(openai.APIStatusError) as ei:
            client(base, "beta-key-456").chat.completions.create(model="fixed", messages=ASK)
        assert ei.value.status_code == 503 and "us-closed excluded by rule no-closed" in ei.value.body["message"]
        assert st.seen["model-us"] == 0 and st.seen["model-eu"] == 1
        r = client(base, "free-key-789").chat.completions.create(model="fixed", messages=ASK)
        assert r.model_extra["baton_route"]["steps"][0]["worker"] == "us-closed"
    recs = read_log(tmp_path / "log.jsonl")
    assert [r["tenant"] for r in recs] == ["acme", "beta", "free"]
    assert recs[0]["calls"][0]["excluded"] == [{"worker": "us-closed", "rule": "eu-only (allow_tags.region)"}]
    assert {"worker": "eu-open", "rule": "no-closed (deny_workers)"} in recs[1]["calls"][0]["excluded"]
    text = (tmp_path / "log.jsonl").read_text()
    assert "key-123" not in text and "key-456" not in text and "key-789" not in text


def test_max_cost_per_request_skips_expensive_workers(stub, tmp_path):
    url, st = stub
    pool = stub_pool(url, {"pricey": "model-pricey", "cheap": "model-cheap"},
                     pricey={"input_price": 1000.0, "output_price": 1000.0},
                     cheap={"input_price": 0.1, "output_price": 0.1})
    rules = parse_rules({"rules": [{"name": "budget", "max_cost_per_request": 0.01}]})
    app = make(pool, [Fixed("fixed", ["pricey", "cheap"])], tmp_path, rules=rules)
    with serving(app) as base:
        r = client(base).chat.completions.create(model="fixed", messages=ASK, max_tokens=16)
        assert r.model_extra["baton_route"]["steps"][0]["worker"] == "cheap"
        assert r.model_extra["baton_route"]["excluded"][0]["rule"].startswith("budget (max_cost_per_request")
    assert st.seen["model-pricey"] == 0
    # every candidate over budget -> 403 that names the rule
    app = make(pool, [Fixed("fixed", ["pricey"])], tmp_path, rules=rules)
    with serving(app) as base:
        with pytest.raises(openai.PermissionDeniedError) as ei:
            client(base).chat.completions.create(model="fixed", messages=ASK)
        assert "budget" in ei.value.body["message"] and ei.value.body["code"] == "no_compliant_worker"


def test_rules_and_keys_validation(tmp_path):
    with pytest.raises(ConfigError, match=r"rules\[0\].deny_workers: 'gpt-5' is not a worker"):
        parse_rules({"rules": [{"name": "r", "deny_workers": ["gpt-5"]}]}, workers=["a"])
    with pytest.raises(ConfigError, match=r"rules\[0\].max_cost: unknown field"):
        parse_rules({"rules": [{"name": "r", "max_cost": 1}]})
    with pytest.raises(ConfigError, match=r"rules\[1\].name: 'r' is used twice"):
        parse_rules({"rules": [{"name": "r"}, {"name": "r"}]})
    assert parse_env("k-123456789:acme, k-987654321") == {"k-123456789": "acme", "k-987654321": "default"}
    with pytest.raises(ConfigError, match="at least 8 characters"):
        parse_env("short:acme")
    f = tmp_path / "keys.yaml"
    f.write_text("sk-tenant-a-0001: a\n")
    assert load_keys(f, env={}).tenant("Bearer sk-tenant-a-0001") == "a"
    assert load_keys(None, env={"BATON_API_KEYS": "sk-env-key-1:e"}).tenant("Bearer sk-env-key-1") == "e"
    off = load_keys(None, env={})
    assert not off.enabled and off.tenant(None) == "default"
    with pytest.raises(ConfigError, match="fallback.backof: unknown field"):
        parse_serve_config({"fallback": {"backof": 1}})


# -- auth and bad input -------------------------------------------------------------------------------
def test_auth_401_and_bad_inputs_get_openai_4xx_and_server_stays_up(stub, tmp_path):
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a"})
    keys = KeyStore({"sk-good-key-1": "t1"})
    app = make(pool, [Fixed("fixed", ["a"])], tmp_path, keys=keys, max_body_bytes=4096)
    with serving(app) as base:
        with pytest.raises(openai.AuthenticationError) as ei:
            client(base, "sk-wrong-key").chat.completions.create(model="fixed", messages=ASK)
        assert ei.value.body["code"] == "invalid_api_key"
        assert httpx.get(base + "/v1/models").status_code == 401
        h = {"Authorization": "Bearer sk-good-key-1"}
        post = lambda **kw: httpx.post(base + "/v1/chat/completions", headers=h, **kw)  # noqa: E731
        cases = {
            "malformed JSON": (post(content=b'{"model": "fixed", "messages": ['), 400, "not valid JSON"),
            "not an object": (post(json=[1, 2]), 400, "must be a JSON object"),
            "missing messages": (post(json={"model": "fixed"}), 400, "messages: Field required"),
            "empty messages": (post(json={"model": "fixed", "messages": []}), 400, "messages: List should have at least 1"),
            "no user text": (post(json={"model": "fixed", "messages": [{"role": "user", "content": " "}]}), 400,
                             "at least one user message"),
            "wrong role": (post(json={"model": "fixed", "messages": [{"role": "robot", "content": "x"}]}), 400,
                           "messages.0.role"),
            "wrong type": (post(json={"model": "fixed", "messages": ASK, "temperature": "hot"}), 400, "temperature"),
            "model type": (post(json={"model": 7, "messages": ASK}), 400, "model: Input should be a valid string"),
            "oversized": (post(json={"model": "fixed", "messages": [{"role": "user", "content": "x" * 5000}]}), 413,
                          "exceeds the limit of 4096 bytes"),
            "unknown model": (post(json={"model": "gpt-9", "messages": ASK}), 404, "model 'gpt-9' does not exist"),
            "unknown path": (httpx.get(base + "/v1/nothing"), 404, "no route GET /v1/nothing"),
            "wrong method": (httpx.get(base + "/v1/chat/completions"), 405, "Method Not Allowed"),
        }
        for name, (resp, status, needle) in cases.items():
            assert resp.status_code == status, (name, resp.text)
            err = resp.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and needle in err["message"], (name, err)
        r = client(base, "sk-good-key-1").chat.completions.create(model="fixed", messages=ASK)
        assert r.choices[0].message.content == "echo: hello router"
    recs = read_log(tmp_path / "log.jsonl")
    # one record per chat request (10 bad + 1 unauthorized + 1 good); GETs are not chat requests
    assert len(recs) == 12 and recs[-1]["outcome"] == "ok"
    assert recs[0]["status"] == 401 and recs[0]["tenant"] is None
    assert "sk-good-key-1" not in (tmp_path / "log.jsonl").read_text()


def test_decision_log_one_record_per_concurrent_request_and_redaction(stub, tmp_path):
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a", "b": "stub/500"}, limits={"retries": 0, "allowed_fails": 1000})
    app = make(pool, [Fixed("fixed", ["b", "a"])], tmp_path, redact_content=True)
    import concurrent.futures as cf
    with serving(app) as base:
        c = client(base)

        def ask(i):
            return c.chat.completions.create(model="fixed", messages=[{"role": "user", "content": f"secret {i}"}])

        with cf.ThreadPoolExecutor(8) as ex:
            replies = list(ex.map(ask, range(24)))
    assert all(r.choices[0].message.content.startswith("echo: secret") for r in replies)
    recs = read_log(tmp_path / "log.jsonl")
    assert len(recs) == 24 and len({r["request_id"] for r in recs}) == 24
    assert all(r["fallbacks"] == 1 and r["outcome"] == "ok" for r in recs)
    assert sorted(r["messages"][0]["chars"] for r in recs) == sorted(len(f"secret {i}") for i in range(24))
    assert all(set(r["messages"][0]) == {"role", "chars"} for r in recs)
    assert "secret" not in (tmp_path / "log.jsonl").read_text()


def test_logs_summarize(stub, tmp_path, capsys):
    from routers.cli import main
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a", "b": "stub/500x1"}, limits={"retries": 0})
    app = make(pool, [Fixed("fixed", ["b", "a"])], tmp_path)
    with serving(app) as base:
        c = client(base)
        for i in range(4):
            c.chat.completions.create(model="fixed", messages=[{"role": "user", "content": f"q{i}"}])
    assert main(["logs", "summarize", str(tmp_path / "log.jsonl"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["requests"] == 4 and s["fallback_rate"] == 0.25
    assert s["workers"]["b"] == {**s["workers"]["b"], "calls": 3, "failed_attempts": 1, "share": 0.75}
    assert s["workers"]["a"]["calls"] == 1 and s["workers"]["a"]["latency_p95_s"] > 0
    assert main(["logs", "summarize", str(tmp_path / "log.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "fallback rate 25.0%" in out and "p95 s" in out
    assert main(["logs", "summarize", str(tmp_path / "missing.jsonl")]) == 2


def test_unknown_router_name_and_fit_needing_baseline_are_clear(stub):
    from routers.serve.loading import load_serving_routers
    url, _ = stub
    pool = stub_pool(url, {"a": "model-a"})
    with pytest.raises(ConfigError, match="neither a directory nor a baseline name"):
        load_serving_routers(["nope"], pool)
    with pytest.raises(ConfigError, match="knn: this baseline must be fitted first"):
        load_serving_routers(["knn"], pool)
    r = load_serving_routers(["random", "rnd2=random"], pool)
    assert list(r) == ["random", "rnd2"]


def test_cooldown_needs_allowed_fails_and_a_failure_rate():
    from routers.pool.base import RateLimited, ServerError
    from routers.serve.config import FallbackConfig
    from routers.serve.fallback import WorkerHealth
    pool = load_pool({"workers": [{"name": n, "backend": "openai", "model": n, "api_key_env": None,
                                   "limits": {"allowed_fails": 3, "cooldown_s": 10}} for n in ("busy", "dead")]})
    now = [0.0]
    h = WorkerHealth(pool, FallbackConfig(fail_window_s=60, min_failure_rate=0.5), clock=lambda: now[0])
    for i in range(30):          # 30% failures: keeps serving
        now[0] += 0.1
        if i % 10 in (2, 5, 8):
            assert h.failure("busy", ServerError("busy", "x")) is False
        else:
            h.success("busy")
    assert h.cooling("busy") == 0
    assert [h.failure("dead", ServerError("dead", "x")) for _ in range(3)] == [False, False, True]
    assert h.cooling("dead") == pytest.approx(10)
    now[0] += 10.5
    assert h.cooling("dead") == 0
    h.failure("busy", RateLimited("busy", "slow down", retry_after=4))   # Retry-After bars it, no cooldown
    assert h.cooling("busy") == pytest.approx(4)


def test_shipped_serve_configs_load():
    from pathlib import Path

    from routers.serve.compliance import load_rules
    from routers.serve.config import load_serve_config
    cfgs = Path(__file__).resolve().parents[1] / "configs" / "serve"
    assert load_serve_config(cfgs / "default.yaml") == ServeConfig()
    pol = load_rules(cfgs / "rules.example.yaml", load_pool("simulated").names)
    acme = pol.for_tenant("acme")
    assert acme.excluded_by("gpt-4o", {"region": "us"}) == "eu-data-residency (allow_tags.region)"
    assert acme.max_cost == (0.05, "global-cap") and pol.for_tenant("free").max_cost[1] == "no-frontier-for-free-tier"
    assert load_keys(cfgs / "keys.example.yaml", env={}).tenant("Bearer sk-example-free-0000000000") == "free"
