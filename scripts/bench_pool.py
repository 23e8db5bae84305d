"""Pool overhead and cache throughput, one run, written as JSON (no timed assertions anywhere).

- overhead: median latency of `pool.call` through the openai backend (AsyncOpenAI, our retry
  wrapper, accounting) over the median of a raw `httpx.AsyncClient` POST of the same request to
  the same stub server (in a subprocess; sequential calls, keep-alive on both sides, after a
  warm-up); the bare SDK call's median is reported too, to tell the SDK's share from ours.
- live (--live): SmolLM2-135M through scripts/openai_server_hf.py and the openai backend:
  output tokens/s of sequential requests and of 8 concurrent ones (batched by the server).
- cache: hit throughput of `pool.call` on a SQLite-cached simulated pool (calls/s), and the
  miss+store rate for comparison.

    python scripts/bench_pool.py [--calls 300] [--live] [--out outputs/bench_pool.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from routers.pool import load_pool
from routers.tasks.base import Task, TaskItem


class _EchoTask(Task):
    name = "bench"

    def load(self, limit=None, **kw):
        return []

    def extract(self, response, item):
        return response.rsplit(" ", 1)[-1].rstrip(".")

    def render_answer(self, item, correct, rng):
        return f"The answer is {item.answer if correct else 'wrong'}."


async def _overhead(url: str, calls: int) -> dict:
    messages = [{"role": "user", "content": "Say something short about routers."}]
    body = {"model": "bench", "messages": messages, "max_tokens": 16}
    raw_t, pool_t = [], []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(20):
            (await client.post("/chat/completions", json=body)).json()
        for _ in range(calls):
            t0 = time.perf_counter()
            r = await client.post("/chat/completions", json=body)
            r.json()
            raw_t.append(time.perf_counter() - t0)
    import openai
    sdk_t = []
    sdk = openai.AsyncOpenAI(api_key="EMPTY", base_url=url, max_retries=0, timeout=30)
    for i in range(calls + 20):
        t0 = time.perf_counter()
        await sdk.chat.completions.create(model="bench", messages=messages, max_tokens=16)
        if i >= 20:
            sdk_t.append(time.perf_counter() - t0)
    await sdk.close()
    pool = load_pool({"workers": [{"name": "stub", "backend": "openai", "model": "bench", "base_url": url,
                                   "api_key_env": None, "input_price": 1.0, "output_price": 1.0}]})
    for _ in range(20):
        await pool.call("stub", messages, max_tokens=16)
    for _ in range(calls):
        t0 = time.perf_counter()
        await pool.call("stub", messages, max_tokens=16)
        pool_t.append(time.perf_counter() - t0)
    await pool.aclose()
    raw_med, pool_med = statistics.median(raw_t), statistics.median(pool_t)
    return {"calls": calls, "raw_httpx_median_ms": raw_med * 1e3,
            "openai_sdk_median_ms": statistics.median(sdk_t) * 1e3, "pool_median_ms": pool_med * 1e3,
            "overhead_ratio": pool_med / raw_med, "overhead_ms": (pool_med - raw_med) * 1e3}


async def _cache(n: int, path: str) -> dict:
    pool = load_pool({"workers": [{"name": "sim", "backend": "simulated", "accuracy": {"default": 0.5}}]},
                     cache=path)
    items = [TaskItem(id=f"b{i}", prompt=f"Bench question {i}?", answer="x", task="bench", category="c")
             for i in range(n)]
    pool.register(items, tasks={"bench": _EchoTask()})
    msgs = [[{"role": "user", "content": it.prompt}] for it in items]
    t0 = time.perf_counter()
    for m in msgs:
        await pool.call("sim", m)
    miss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in msgs:
        r = await pool.call("sim", m)
        assert r.cached
    hit_s = time.perf_counter() - t0
    stats = pool.cache.stats()
    await pool.aclose()
    return {"calls": n, "hit_calls_per_s": n / hit_s, "miss_and_store_calls_per_s": n / miss_s,
            "hits": stats["hits"], "misses": stats["misses"]}


async def _live(url: str, n: int, max_tokens: int) -> dict:
    from routers.pool.openai_worker import OpenAIWorker
    w = OpenAIWorker("smollm2", model="smollm2-135m-instruct", base_url=url, api_key_env=None, timeout=600,
                     retries=0)
    prompts = [f"Write a short story about a robot named Unit {i}." for i in range(8)]
    seq_tok, t0 = 0, time.perf_counter()
    for p in prompts[:n]:
        r = await w.chat([{"role": "user", "content": p}], max_tokens=max_tokens)
        seq_tok += r.output_tokens
    seq_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rs = await asyncio.gather(*(w.chat([{"role": "user", "content": p}], max_tokens=max_tokens) for p in prompts))
    conc_s = time.perf_counter() - t0
    await w.aclose()
    conc_tok = sum(r.output_tokens for r in rs)
    return {"max_tokens": max_tokens, "sequential_requests": n, "sequential_output_tokens": seq_tok,
            "sequential_tokens_per_s": seq_tok / seq_s, "concurrent_requests": len(rs),
            "concurrent_output_tokens": conc_tok, "concurrent_tokens_per_s": conc_tok / conc_s,
            "concurrent_wall_s": conc_s}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"stub server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"stub server at {url} did not start in {timeout:g} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--cache-calls", type=int, default=2000)
    ap.add_argument("--live", action="store_true", help="also measure SmolLM2 through the real server")
    ap.add_argument("--out", default="outputs/bench_pool.json")
    a = ap.parse_args(argv)
    # The stub runs in its own process so it does not compete for this process's GIL.
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "routers.pool.stub", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, proc)
        overhead = asyncio.run(_overhead(url, a.calls))
    finally:
        proc.terminate()
        proc.wait(10)
    with tempfile.TemporaryDirectory() as d:
        cache = asyncio.run(_cache(a.cache_calls, os.path.join(d, "bench.sqlite")))
    live = None
    if a.live:
        port = _free_port()
        server = Path(__file__).resolve().parent / "openai_server_hf.py"
        proc = subprocess.Popen([sys.executable, str(server), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            _wait_ready(url, proc, timeout=600)
            live = asyncio.run(_live(url, 4, 48))
        finally:
            proc.terminate()
            proc.wait(20)
    result = {"bench": "pool", "load_average_1m": os.getloadavg()[0], "cpu_count": os.cpu_count(),
              "overhead": overhead, "cache": cache, **({"live_smollm2": live} if live else {})}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
