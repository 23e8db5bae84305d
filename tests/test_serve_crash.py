"""kill -9 of `baton serve` during a 500-request burst (issue 11 acceptance): every decision-log
line parses, and every request answered 200 before the kill has its record (a record is written
before its reply; the fsync window only matters for a power loss, see decision_log.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
import yaml

from test_serve_routers import _free_port, _wait_up  # tests/ is on sys.path


@pytest.mark.slow
def test_kill_9_during_a_burst_loses_no_answered_record(tmp_path):
    from routers.pool.stub import start_stub_server
    url, stop = start_stub_server(faults={"latency_s": 0.005})
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump({"workers": [{"name": n, "backend": "openai", "model": f"m-{n}", "base_url": url,
                                                 "api_key_env": None, "limits": {"max_concurrency": 64}}
                                                for n in ("w1", "w2")]}))
    port, log = _free_port(), tmp_path / "decisions.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "routers.cli", "serve", "--router", "random", "--pool", str(pool),
                             "--port", str(port), "--log", str(log)], env={**os.environ, "BATON_API_KEYS": ""},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    answered: list[str] = []
    other: list[str] = []
    failed = 0
    try:
        _wait_up(proc, f"http://127.0.0.1:{port}/health", 90)

        async def burst():
            nonlocal failed
            sem = asyncio.Semaphore(32)
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as c:
                async def one(i):
                    nonlocal failed
                    async with sem:
                        if len(answered) >= 200 and proc.poll() is None:
                            os.kill(proc.pid, signal.SIGKILL)      # mid-burst, requests in flight
                        try:
                            body = '{"model": "random", "messages": [{"role": "user", "content": "q %d \\ud83d"}]}'
                            r = await c.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=body % i,
                                             headers={"content-type": "application/json"})
                        except httpx.HTTPError:
                            failed += 1
                            return
                        if r.status_code == 200:
                            answered.append(r.headers["x-request-id"])
                        else:
                            other.append(r.text[:300])
                await asyncio.gather(*[one(i) for i in range(500)])
        asyncio.run(burst())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(20)
        stop()
    assert not other, other[:3]
    assert proc.returncode == -signal.SIGKILL and 200 <= len(answered) < 500 and failed > 0
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b""                                   # no torn last line either
    ids = {json.loads(line)["request_id"] for line in lines[:-1]}   # every line parses
    assert set(answered) <= ids, len(set(answered) - ids)
