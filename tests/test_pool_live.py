"""End to end: the real SmolLM2-135M server (scripts/openai_server_hf.py) called through OpenAIWorker."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from routers.pool.openai_worker import OpenAIWorker

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_smollm2_server_through_openai_worker(tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "openai_server_hf.py"), "--port", str(port),
                             "--max-new-tokens", "16"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "server did not come up in 300 s"
            time.sleep(1)
        w = OpenAIWorker("smollm2", model="smollm2-135m-instruct", base_url=f"http://127.0.0.1:{port}/v1",
                         api_key_env=None, timeout=240, retries=0, input_price=0.5, output_price=1.5)

        async def go():
            try:
                return await w.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=12)
            finally:
                await w.aclose()
        r = asyncio.run(go())
        assert r.text.strip() and r.input_tokens > 5 and 0 < r.output_tokens <= 12
        assert not r.meta.get("tokens_estimated")
        assert r.cost == pytest.approx((r.input_tokens * 0.5 + r.output_tokens * 1.5) / 1e6)
        print(f"\nSmolLM2 live: {r.output_tokens} tokens in {r.latency_s:.2f} s "
              f"({r.output_tokens / r.latency_s:.1f} tokens/s incl. prefill); text {r.text!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
