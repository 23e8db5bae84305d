"""Serving real routers: a baseline by name over the simulated pool, a TRINITY checkpoint with the
tiny random Llama coordinator (micro-batched), export round trips, an OpenAPI schema fuzz, the
`baton serve` command in a subprocess, and the live SmolLM2 worker behind the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routers.errors import CheckpointError
from routers.pool import load_pool
from routers.pool.stub import start_stub_server
from routers.serve.app import create_app
from routers.serve.batcher import MicroBatcher, measure_decision_latency
from routers.serve.config import BatchConfig, parse_serve_config
from routers.serve.decision_log import read_log
from routers.serve.export import EXPORT_FILE, export, read_export
from routers.serve.loading import load_serving_router, load_serving_routers

REPO = Path(__file__).resolve().parents[1]
ASK = [{"role": "user", "content": "What is 2 + 2?"}]


def stub_pool_yaml(tmp_path: Path, url: str, names=("w1", "w2", "w3")) -> Path:
    p = tmp_path / "pool.yaml"
    p.write_text(yaml.safe_dump({"name": "stubs", "defaults": {"retries": 1, "timeout": 10}, "workers": [
        {"name": n, "backend": "openai", "model": f"model-{n}", "base_url": url, "api_key_env": None,
         "input_price": 0.1 * (i + 1), "output_price": 0.2 * (i + 1)} for i, n in enumerate(names)]}))
    return p


@pytest.fixture
def stub():
    url, stop = start_stub_server()
    yield url
    stop()


# -- baselines by name ------------------------------------------------------------------------------
def test_random_by_name_over_the_simulated_pool(tmp_path):
    pool = load_pool("simulated")
    routers = load_serving_routers(["random"], pool)
    app = create_app(routers, pool, log_path=tmp_path / "log.jsonl")
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", json={"model": "random", "messages": ASK})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "random" and body["choices"][0]["message"]["content"]
        assert body["baton_route"]["steps"][0]["worker"] in pool.names
        assert sorted(body["baton_route"]["steps"][0]["candidates"]) == sorted(pool.names)


# -- TRINITY checkpoint with the tiny coordinator ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_trinity(tmp_path_factory):
    """A TRINITY checkpoint over three stub workers: tiny random Llama coordinator, random linear
    head (multi-turn roles), max 2 turns."""
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.coordinator import Coordinator
    from trinity.heads import make_head
    coord = Coordinator("tiny", max_tokens=64)
    head = make_head("linear", 3, coord.d)
    head.set_flat(np.random.default_rng(0).standard_normal(head.n_params))
    path = tmp_path_factory.mktemp("ckpt") / "trinity-tiny"
    save(path, coordinator=coord, head=head, workers=["w1", "w2", "w3"],
         protocol=ProtocolConfig(max_turns=2, max_tokens=32), training={"data": {"train": "unit-test"}},
         metrics={"accuracy": 0.5}, mean_cost=[0.001, 0.002, 0.003])
    return path


def test_trinity_checkpoint_served_with_multi_turn_trace(tiny_trinity, stub, tmp_path):
    pool = load_pool(stub_pool_yaml(tmp_path, stub))
    routers = load_serving_routers([f"trinity-demo={tiny_trinity}"], pool, batch=BatchConfig())
    app = create_app(routers, pool, log_path=tmp_path / "log.jsonl")
    with TestClient(app) as c:
        assert c.get("/v1/models").json()["data"][0]["id"] == "trinity-demo"
        r = c.post("/v1/chat/completions", json={"model": "trinity-demo", "messages": ASK})
        assert r.status_code == 200, r.text
        b = r.json()
        steps = b["baton_route"]["steps"]
        assert b["model"] == "trinity-demo" and 1 <= len(steps) <= 2
        assert all(s["role"] in ("thinker", "worker", "verifier") and s["worker"] in pool.names for s in steps)
        assert b["usage"]["orchestration_tokens"]["input"] > 0        # the coordinator read the transcript
        assert b["usage"]["worker_tokens"]["input"] == sum(s["input_tokens"] for s in steps)
        route = json.loads(r.headers["x-baton-route"])
        assert route["roles"] == [s["role"] for s in steps]
    (rec,) = read_log(tmp_path / "log.jsonl")
    assert len(rec["calls"]) == len(steps) and rec["tokens"]["orchestration_input"] > 0


def test_micro_batcher_shares_forward_passes_and_keeps_results(tiny_trinity, stub, tmp_path):
    pool = load_pool(stub_pool_yaml(tmp_path, stub))
    router = load_serving_router(str(tiny_trinity), pool, batch=BatchConfig(max_batch=16, max_wait_ms=50))
    b = router.trinity.coordinator
    assert isinstance(b, MicroBatcher)
    prompts = [f"distinct question number {i} about routing" for i in range(12)]
    res = asyncio.run(measure_decision_latency(router, prompts, concurrency=12))
    assert res["n"] == 12 and res["p99_s"] >= res["p50_s"] > 0
    # 12 requests x 2 turns = 24 feature calls, merged into far fewer forward passes
    assert b.texts == 24 and b.batches <= 8, (b.batches, b.texts)
    # batched features equal one-at-a-time features of the unwrapped coordinator
    texts = [f"user: fresh text {i}" for i in range(5)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(5) as ex:
        got = list(ex.map(lambda t: b.features([t]).numpy()[0], texts))
    b.inner._mem.clear()
    want = [b.inner.features([t]).numpy()[0] for t in texts]
    np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-5)
    with pytest.raises(Exception, match="not str"):
        b.features([None])


def test_conductor_checkpoint_served_with_orchestration_output_tokens(stub, tmp_path):
    """A Conductor checkpoint made by hand from the tiny random Llama: its (garbage) workflow fails
    to parse, so the checkpoint's fallback worker answers; the conductor's generated tokens are
    reported as orchestration output."""
    import shutil

    from routers.model_files import resolve_model
    ckpt = tmp_path / "conductor-tiny"
    shutil.copytree(resolve_model("tiny"), ckpt)
    (ckpt / "conductor_config.json").write_text(json.dumps({
        "router_type": "conductor", "format_version": 1, "name": "conductor-tiny", "max_steps": 2,
        "max_new_tokens": 8, "fallback_worker": "w2",
        "workers": {"w1": {"description": "first"}, "w2": {"description": "second"}}}))
    pool = load_pool(stub_pool_yaml(tmp_path, stub, names=("w1", "w2")))
    routers = load_serving_routers([str(ckpt)], pool)
    with TestClient(create_app(routers, pool, log_path=tmp_path / "log.jsonl")) as c:
        r = c.post("/v1/chat/completions", json={"model": "conductor-tiny", "messages": ASK})
        assert r.status_code == 200, r.text
        b = r.json()
    assert b["model"] == "conductor-tiny" and b["baton_route"]["steps"][0]["worker"] == "w2"
    assert b["choices"][0]["message"]["content"].startswith("echo: ")
    assert b["usage"]["orchestration_tokens"]["output"] == 8 and b["usage"]["orchestration_tokens"]["input"] > 50


# -- export -------------------------------------------------------------------------------------------
def test_export_round_trip_and_format_version_refusal(tiny_trinity, stub, tmp_path):
    pool_file = stub_pool_yaml(tmp_path, stub)
    out = tmp_path / "export"
    export(tiny_trinity, out, pool=str(pool_file))
    assert (out / "router" / "router.safetensors").is_file() and (out / "pool.yaml").is_file()
    card = (out / "README.md").read_text()
    assert "unit-test" in card and '"accuracy": 0.5' in card and "| w2 | model-w2 | 0.2 | 0.4 |" in card
    os.rename(pool_file, tmp_path / "moved.yaml")      # the export needs no other file
    from routers.serve.loading import export_pool_for
    pool = load_pool(export_pool_for([str(out)]))
    routers = load_serving_routers([str(out)], pool)
    assert list(routers) == ["trinity-tiny"]
    with TestClient(create_app(routers, pool, log_path=tmp_path / "l.jsonl")) as c:
        r = c.post("/v1/chat/completions", json={"model": "trinity-tiny", "messages": ASK})
        assert r.status_code == 200, r.text
    manifest = json.loads((out / EXPORT_FILE).read_text())
    (out / EXPORT_FILE).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99, but this baton reads version 1"):
        read_export(out)
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_serving_routers([str(out)], pool)
    with pytest.raises(Exception, match="not empty"):
        export(tiny_trinity, out, pool=str(tmp_path / "moved.yaml"))


def test_export_needs_a_pool_when_the_checkpoint_names_none(tmp_path):
    from routers.baselines.simple import RandomRouter
    from routers.cli import main
    RandomRouter(models=["llama-3.1-8b", "gpt-4o"]).save(tmp_path / "rnd")
    assert main(["export", str(tmp_path / "rnd"), "--out", str(tmp_path / "x")]) == 2
    assert main(["export", str(tmp_path / "rnd"), "--out", str(tmp_path / "x"), "--pool", "simulated"]) == 0
    info = read_export(tmp_path / "x")
    assert info["router_type"] == "random" and info["name"] == "rnd"
    assert load_serving_routers([str(tmp_path / "x")], load_pool(info["pool_path"]))["rnd"].workers == \
        ["llama-3.1-8b", "gpt-4o"]


# -- schema fuzz ---------------------------------------------------------------------------------------
def _fuzz_app(tmp_path):
    from routers.pool.base import Worker, WorkerReply

    class Echo(Worker):
        async def _chat(self, messages, **params):
            return WorkerReply(text="ok", worker=self.name, model=self.model, input_tokens=1, output_tokens=1,
                               cost=0.0, latency_s=0.0)

    from routers.baselines.serving import SingleChoice
    from routers.baselines.simple import RandomRouter
    from routers.pool.pool import Pool
    pool = Pool([Echo("e1"), Echo("e2")])
    app = create_app({"random": SingleChoice(RandomRouter(models=pool.names), name="random")}, pool,
                     log_path=tmp_path / "fuzz.jsonl", config=parse_serve_config({"max_body_bytes": 20000}))
    return app


def from_schema(schema: dict, components: dict) -> st.SearchStrategy:
    """Values valid under the subset of JSON Schema FastAPI/pydantic emit ($ref, anyOf, enum,
    const, object, array, string, integer, number, boolean, null; bounds and required keys)."""
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(components[schema["$ref"].rsplit("/", 1)[1]], components))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        req = set(schema.get("required", []))
        return st.fixed_dictionaries({k: from_schema(v, components) for k, v in props.items() if k in req},
                                     optional={k: from_schema(v, components) for k, v in props.items()
                                               if k not in req})
    if t == "array":
        return st.lists(from_schema(schema.get("items", {}), components), min_size=schema.get("minItems", 0),
                        max_size=max(schema.get("minItems", 0), 4))
    if t == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=40)
    if t == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if t == "number":
        return st.floats(min_value=schema.get("minimum"), max_value=schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if t == "boolean":
        return st.booleans()
    if t == "null":
        return st.none()
    return st.none() | st.booleans() | st.integers() | st.text(max_size=10)


def test_openapi_schema_fuzz_no_5xx(tmp_path):
    app = _fuzz_app(tmp_path)
    spec = app.openapi()
    comps = spec["components"]["schemas"]
    body_ref = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    valid = from_schema(body_ref, comps)
    json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                               lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4),
                               max_leaves=12)
    mutated = st.builds(lambda d, k, v: {**d, k: v}, valid,
                        st.sampled_from(["model", "messages", "stream", "max_tokens", "temperature", "lam",
                                         "stream_options", "stop"]), json_values)
    routable = st.builds(lambda d, text: {**d, "model": "random",
                                          "messages": [*d["messages"], {"role": "user", "content": text}]},
                         valid, st.text(min_size=1).filter(str.strip))   # valid AND names a served model
    bodies = routable | valid | mutated | json_values
    seen: dict[int, int] = {}
    client = TestClient(app, raise_server_exceptions=False)

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, raw=st.booleans())
    def check(body, raw):
        if raw and isinstance(body, dict):
            body = {**body, "model": "random"}          # reach the router, not just the 404
        r = client.post("/v1/chat/completions", content=json.dumps(body),   # NaN/Infinity too
                        headers={"Content-Type": "application/json"})
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (body, r.text)
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    check()
    for path, methods in spec["paths"].items():
        for method in ("get", "post", "put", "delete"):
            r = client.request(method, path, content=b"\x00\xff")
            assert r.status_code < 500, (method, path, r.status_code)
    assert seen.get(200, 0) > 0 and sum(v for k, v in seen.items() if 400 <= k < 500) > 0, seen


# -- the command line -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(proc, url: str, seconds: float) -> None:
    t0 = time.time()
    while time.time() - t0 < seconds:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} not up after {seconds} s")


@pytest.mark.slow
def test_baton_serve_command_on_an_export_without_pool_flag(stub, tmp_path):
    """`baton export` then `baton serve --router EXPORT` (no --pool, no keys): auth-off notice,
    default decision log under the working directory."""
    from routers.baselines.simple import RandomRouter
    from routers.cli import main
    RandomRouter(models=["w1", "w2", "w3"]).save(tmp_path / "rnd")
    assert main(["export", str(tmp_path / "rnd"), "--out", str(tmp_path / "exp"),
                 "--pool", str(stub_pool_yaml(tmp_path, stub))]) == 0
    port = _free_port()
    env = {**os.environ, "BATON_API_KEYS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "routers.cli", "serve", "--router", str(tmp_path / "exp"),
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_up(proc, f"http://127.0.0.1:{port}/health", 90)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model="rnd", messages=ASK)
        assert r.model == "rnd" and r.choices[0].message.content == "echo: What is 2 + 2?"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "auth is OFF" in out
    assert len(read_log(tmp_path / "logs" / "decisions.jsonl")) == 1   # default log under the cwd


@pytest.mark.slow
def test_live_smollm2_worker_through_the_gateway(tmp_path):
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(REPO / "scripts/openai_server_hf.py"), "--port", str(port),
                               "--max-new-tokens", "16"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        _wait_up(server, f"http://127.0.0.1:{port}/v1/models", 240)
        pool = load_pool({"workers": [{"name": "smollm2-135m", "backend": "openai", "model": "smollm2-135m-instruct",
                                       "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": None,
                                       "limits": {"timeout": 120, "retries": 0}},
                                      {"name": "dead", "backend": "openai", "model": "x",
                                       "base_url": f"http://127.0.0.1:{_free_port()}/v1", "api_key_env": None,
                                       "limits": {"timeout": 5, "retries": 0}}]})
        from test_serve import Fixed, serving   # tests/ is on sys.path (rootdir-less test modules)
        routers = {"fixed": Fixed("fixed", ["dead", "smollm2-135m"])}
        app = create_app(routers, pool, log_path=tmp_path / "log.jsonl")
        with serving(app) as base:
            c = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=180)
            r = c.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "Say hello."}],
                                          max_tokens=8)
            assert r.choices[0].message.content.strip()
            assert r.model_extra["baton_route"]["steps"][0]["worker"] == "smollm2-135m"
            assert r.model_extra["baton_route"]["fallbacks"] == 1     # the dead endpoint first
            assert r.usage.completion_tokens <= 8 and r.usage.worker_tokens["input"] > 5
            chunks = list(c.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=8, stream=True))
            assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip()
    finally:
        server.terminate()
        server.communicate(timeout=20)
