"""What the gateway costs, and whether fallback keeps clients whole. Writes one JSON.

1. Overhead: the same stub worker (routers.pool.stub, a subprocess) called directly and through
   `baton serve` (a subprocess), sequentially (latency p50/p99), at each concurrency C (throughput,
   default 16 and 64 in flight) and streamed (time to the first content chunk, TTFT);
   reported as added latency and ratios from this one run, for a baseline (`random`) and for a
   TRINITY checkpoint (--trinity; default outputs/demo/trinity, else a tiny random-head checkpoint
   built on the fly, labelled as such). Also the server process's CPU milliseconds per request
   (from /proc: on a shared, loaded machine the wall-clock ratios move with the load, this does
   not much). LiteLLM's proxy routes to the same stub in the same run when a `litellm` executable
   is given (--litellm BIN, e.g. from a separate venv) or found on PATH / in this venv.
   And the gateway's own code per request without HTTP (`Gateway.chat` on an instant worker).
2. Fault injection: N requests (default 2,000) through an in-process gateway over 3 workers whose
   calls fail ~30% of the time (stub 500/429 plus injected timeouts); counts client-visible errors
   and decision-log records (goal: 0 and exactly N).

    python scripts/bench_serve.py --out outputs/bench_serve.json [--litellm /tmp/litellm-venv/bin/litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-bench-key-000001"                      # both gateways run with auth on (LiteLLM requires it)
AUTH = {"Authorization": f"Bearer {KEY}"}
ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(proc: subprocess.Popen, url: str, seconds: float = 180) -> None:
    t0 = time.time()
    while time.time() - t0 < seconds:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not up after {seconds} s")


def start(cmd: list[str], url: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    f = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=log.parent)
    wait_up(proc, url)
    return proc


async def measure(url: str, model: str, *, n_seq: int, n_conc: int, conc: list[int], headers=None) -> dict[str, Any]:
    """Sequential latency (after 5 warm-ups), concurrent throughput at each level of `conc`, and
    streamed time to first content chunk. Every request's prompt is distinct, so a router's feature
    cache never answers for its model."""
    from routers.pool.openai_worker import ClientPool   # sharded keep-alive clients: httpcore's single
    counter = iter(range(10**9))                         # pool costs the CLIENT O(n^2) at 64 in flight
    pool = ClientPool()
    if True:
        async def one() -> float:
            body = {"model": model, "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"{ASK[0]['content']} (request {next(counter)})"}]}
            t0 = time.perf_counter()
            async with pool.lease() as c:
                r = await c.post(url + "/chat/completions", json=body, headers=headers, timeout=120)
            if r.status_code != 200:
                raise RuntimeError(f"{url} {model}: {r.status_code} {r.text[:300]}")
            return time.perf_counter() - t0
        async def first_chunk() -> float:
            body = {"model": model, "max_tokens": 16, "stream": True,
                    "messages": [{"role": "user", "content": f"{ASK[0]['content']} (request {next(counter)})"}]}
            t0 = time.perf_counter()
            ttft = None
            async with pool.lease() as c, c.stream("POST", url + "/chat/completions", json=body, headers=headers,
                                                   timeout=120) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"{url} {model} (stream): {r.status_code} {(await r.aread())[:300]!r}")
                async for line in r.aiter_lines():
                    if ttft is None and '"content":"' in line.replace(" ", "") and '"content":""' not in \
                            line.replace(" ", ""):
                        ttft = time.perf_counter() - t0
            if ttft is None:
                raise RuntimeError(f"{url} {model}: the stream carried no content")
            return ttft
        for _ in range(5):
            await one()
            await first_chunk()
        lat = [await one() for _ in range(n_seq)]
        ttft = [await first_chunk() for _ in range(n_seq)]
        out = {"p50_s": float(np.percentile(lat, 50)), "p99_s": float(np.percentile(lat, 99)),
               "ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p99_s": float(np.percentile(ttft, 99)),
               "n_seq": n_seq, "n_conc": n_conc, "throughput_rps": {}}
        for k in conc:
            sem = asyncio.Semaphore(k)

            async def limited() -> float:
                async with sem:
                    return await one()
            t0 = time.perf_counter()
            await asyncio.gather(*[limited() for _ in range(n_conc)])
            out["throughput_rps"][str(k)] = n_conc / (time.perf_counter() - t0)
    await pool.aclose()
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used (Linux /proc): a per-request cost that a
    loaded machine does not distort the way it distorts wall-clock ratios."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def measure_cpu(pid: int, *args, **kw) -> dict[str, Any]:
    """`measure`, plus the CPU milliseconds process `pid` spent per request during it."""
    (u0, s0) = cpu_seconds(pid)
    res = asyncio.run(measure(*args, **kw))
    (u1, s1) = cpu_seconds(pid)
    n = 5 * 2 + 2 * kw["n_seq"] + kw["n_conc"] * len(kw["conc"])
    return {**res, "cpu_ms_per_request": 1000 * (u1 - u0 + s1 - s0) / n, "user_cpu_ms_per_request": 1000 * (u1 - u0) / n,
            "system_cpu_ms_per_request": 1000 * (s1 - s0) / n}


def compare(direct: dict[str, Any], via: dict[str, Any]) -> dict[str, Any]:
    return {"added_p50_ms": 1000 * (via["p50_s"] - direct["p50_s"]),
            "added_p99_ms": 1000 * (via["p99_s"] - direct["p99_s"]),
            "added_ttft_p50_ms": 1000 * (via["ttft_p50_s"] - direct["ttft_p50_s"]),
            "p50_ratio": via["p50_s"] / direct["p50_s"], "p99_ratio": via["p99_s"] / direct["p99_s"],
            "throughput_ratio": {k: via["throughput_rps"][k] / direct["throughput_rps"][k]
                                 for k in direct["throughput_rps"]},
            "added_cpu_ms_per_request": via["cpu_ms_per_request"]}


def tiny_trinity(path: Path, workers: list[str]) -> Path:
    """A TRINITY checkpoint with the tiny random Llama coordinator and a random multi-turn head."""
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.coordinator import Coordinator
    from trinity.heads import make_head
    coord = Coordinator("tiny", max_tokens=128)
    head = make_head("linear", len(workers), coord.d)
    head.set_flat(np.random.default_rng(0).standard_normal(head.n_params))
    return save(path, coordinator=coord, head=head, workers=workers, protocol=ProtocolConfig(max_turns=3, max_tokens=16),
                training={"note": "bench_serve: random head, not trained"})


def stub_pool(path: Path, url: str, names: list[str], **limits) -> Path:
    path.write_text(yaml.safe_dump({"name": "bench-stub", "defaults": {"retries": 1, "timeout": 30, "max_concurrency": 256, **limits},
                                    "workers": [{"name": n, "backend": "openai", "model": f"bench-{n}",
                                                 "base_url": url, "api_key_env": None} for n in names]}))
    return path


def overhead(args, work: Path) -> dict[str, Any]:
    stub_port, out = free_port(), {}
    stub = start([sys.executable, "-m", "routers.pool.stub", "--port", str(stub_port)],
                 f"http://127.0.0.1:{stub_port}/v1/models", work / "stub.log")
    procs = [stub]
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    try:
        kw = dict(n_seq=args.n_seq, n_conc=args.n_conc, conc=[int(x) for x in str(args.concurrency).split(",")])
        out["direct"] = measure_cpu(stub.pid, stub_url, "bench-direct", **kw)   # the stub's CPU
        print("direct:", json.dumps(out["direct"]), flush=True)
        # baseline router over one stub worker
        targets = [("random", ["random"], ["stub-worker"])]
        trinity = Path(args.trinity) if args.trinity else REPO / "outputs/demo/trinity"
        if (trinity / "config.json").is_file():
            from trinity.checkpoint import read_config
            label = f"trinity ({trinity})"
            twork = read_config(trinity)["workers"]
        else:
            twork = ["w1", "w2", "w3"]
            trinity = tiny_trinity(work / "trinity-tiny", twork)
            label = "trinity-tiny (random head, tiny random Llama coordinator; demo checkpoint absent)"
        if not args.skip_trinity:
            targets.append(("trinity", [f"trinity={trinity}"], twork))
        for name, routers, workers in targets:
            port = free_port()
            pool = stub_pool(work / f"pool-{name}.yaml", stub_url, workers)
            cmd = [sys.executable, "-m", "routers.cli", "serve", "--pool", str(pool), "--port", str(port),
                   "--log", str(work / f"log-{name}.jsonl")]
            for r in routers:
                cmd += ["--router", r]
            gw = start(cmd, f"http://127.0.0.1:{port}/health", work / f"gw-{name}.log",
                       env={"BATON_API_KEYS": f"{KEY}:bench"})
            procs.append(gw)
            res = measure_cpu(gw.pid, f"http://127.0.0.1:{port}/v1", name, headers=AUTH, **kw)  # the gateway's
            out[name] = {"router": label if name == "trinity" else "random", **res, **compare(out["direct"], res)}
            print(f"{name}:", json.dumps(out[name]), flush=True)
            gw.terminate()
            gw.wait(20)
        if args.litellm is None:             # LiteLLM in the same run whenever it is installed
            import shutil
            args.litellm = shutil.which("litellm") or shutil.which("litellm", path=str(Path(sys.executable).parent))
        if args.litellm:
            port = free_port()
            cfg = work / "litellm.yaml"
            cfg.write_text(yaml.safe_dump({"model_list": [{"model_name": "stub", "litellm_params": {
                "model": "openai/bench-litellm", "api_base": stub_url, "api_key": "none"}}]}))
            try:
                ll = start([args.litellm, "--config", str(cfg), "--port", str(port), "--num_workers", "1"],
                           f"http://127.0.0.1:{port}/health/liveliness", work / "litellm.log",
                           env={"LITELLM_MASTER_KEY": KEY})
                procs.append(ll)
                res = measure_cpu(ll.pid, f"http://127.0.0.1:{port}/v1", "stub", headers=AUTH, **kw)
                out["litellm"] = {**res, **compare(out["direct"], res)}
                print("litellm:", json.dumps(out["litellm"]), flush=True)
            except RuntimeError as e:
                out["litellm"] = {"error": str(e), "log_tail": (work / "litellm.log").read_text()[-2000:]}
        else:
            out["litellm"] = {"skipped": "litellm is not installed (no --litellm executable, none on PATH or in "
                                         "this venv): no comparison in this run"}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(20)
    return out


def code_cost(work: Path, n: int = 2000) -> dict[str, Any]:
    """The gateway's own code per request, without HTTP: `Gateway.chat` called directly on a built
    request, over a worker that answers instantly (what remains of the added latency is uvicorn,
    the worker call's HTTP client and the kernel's loopback)."""
    from starlette.requests import Request

    from routers.baselines.serving import SingleChoice
    from routers.baselines.simple import RandomRouter
    from routers.pool.base import Worker, WorkerReply
    from routers.pool.pool import Pool
    from routers.serve.app import create_app

    class Instant(Worker):
        async def _chat(self, messages, **params):
            return WorkerReply(text="Paris", worker=self.name, model=self.model, input_tokens=20, output_tokens=1,
                               cost=0.0, latency_s=0.0)

    pool = Pool([Instant("w1"), Instant("w2")])
    gw = create_app({"random": SingleChoice(RandomRouter(models=pool.names), name="random")}, pool,
                    log_path=work / "log-code.jsonl").state.gateway
    body = json.dumps({"model": "random", "max_tokens": 16, "messages": ASK}).encode()

    def request() -> Request:
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
                        "headers": [(b"content-type", b"application/json")]}, receive)

    async def run(k: int) -> None:
        for _ in range(k):
            r = await gw.chat(request())
            assert r.status_code == 200, r.body
    asyncio.run(run(200))
    c0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(run(n))
    return {"us_per_request_wall": 1e6 * (time.perf_counter() - t0) / n,
            "us_per_request_cpu": 1e6 * (time.process_time() - c0) / n, "n": n}


def fault_injection(args, work: Path) -> dict[str, Any]:
    """N requests, ~30% of worker calls failing (stub 500/429 + injected timeouts), in process."""
    from routers.baselines.serving import SingleChoice
    from routers.baselines.simple import RandomRouter
    from routers.pool.config import load_pool
    from routers.pool.stub import start_stub_server
    from routers.serve.app import create_app
    from routers.serve.config import parse_serve_config
    from routers.serve.decision_log import read_log
    import uvicorn

    p_timeout, target = args.timeout_rate, args.fail_rate
    stub_rate = 1 - (1 - target) / (1 - p_timeout)     # 500/429 share so that the total is `target`
    url, stop = start_stub_server(faults={"fail_rate": stub_rate, "seed": 0})
    names = ["w1", "w2", "w3"]
    pool = load_pool(stub_pool(work / "pool-faults.yaml", url, names, retries=2, allowed_fails=3, cooldown_s=5,
                               timeout=args.worker_timeout, max_concurrency=64))
    rng = random.Random(1)
    injected = {"timeouts": 0, "calls": 0}
    for w in pool.workers.values():      # inject hangs longer than the worker's timeout
        inner = w._chat

        async def hanging(messages, _inner=inner, **params):
            injected["calls"] += 1
            if rng.random() < p_timeout:
                injected["timeouts"] += 1
                await asyncio.sleep(args.worker_timeout * 3)
            return await _inner(messages, **params)
        w._chat = hanging
    log = work / "log-faults.jsonl"
    app = create_app({"random": SingleChoice(RandomRouter(models=names), name="random")}, pool, log_path=log,
                     config=parse_serve_config({"fallback": {"backoff_s": 0.01, "max_backoff_s": 0.1}}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)

    async def drive() -> dict[str, Any]:
        sem = asyncio.Semaphore(args.fault_concurrency)
        status: dict[int, int] = {}
        errors: list[str] = []
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as c:
            async def one(i: int) -> None:
                async with sem:
                    r = await c.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                     json={"model": "random", "messages": [{"role": "user", "content": f"q {i}"}]})
                    status[r.status_code] = status.get(r.status_code, 0) + 1
                    if r.status_code != 200:
                        errors.append(r.text[:300])
            t0 = time.perf_counter()
            await asyncio.gather(*[one(i) for i in range(args.n_faults)])
            return {"status": status, "errors_sample": errors[:3], "seconds": time.perf_counter() - t0}
    try:
        res = asyncio.run(drive())
    finally:
        server.should_exit = True
        th.join(20)
        stop()
    recs = read_log(log)
    attempts = [a for r in recs for c in r.get("calls", []) for a in c["attempts"]]
    failed = [a for a in attempts if not a["ok"]]
    by_err: dict[str, int] = {}
    for a in failed:
        by_err[a["error"]] = by_err.get(a["error"], 0) + 1
    return {"requests": args.n_faults, "client_errors": sum(v for k, v in res["status"].items() if k != 200),
            "status": res["status"], "errors_sample": res["errors_sample"],
            "log_records": len(recs), "unique_request_ids": len({r["request_id"] for r in recs}),
            "worker_attempts": len(attempts), "failed_attempts": len(failed),
            "failed_share": len(failed) / max(1, len(attempts)), "failures_by_type": by_err,
            "requests_with_fallback": sum(1 for r in recs if r.get("fallbacks")),
            "target_fail_rate": target, "stub_fail_rate": stub_rate, "injected_timeout_rate": p_timeout,
            "seconds": res["seconds"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/bench_serve.json")
    ap.add_argument("--trinity", default=None, help="TRINITY checkpoint (default outputs/demo/trinity)")
    ap.add_argument("--litellm", default=None, help="path to a `litellm` executable (separate venv)")
    ap.add_argument("--n-seq", type=int, default=200)
    ap.add_argument("--n-conc", type=int, default=400)
    ap.add_argument("--concurrency", default="16,64", help="comma-separated requests in flight")
    ap.add_argument("--skip-trinity", action="store_true", help="only the baseline router")
    ap.add_argument("--n-faults", type=int, default=2000)
    ap.add_argument("--fault-concurrency", type=int, default=32)
    ap.add_argument("--fail-rate", type=float, default=0.3)
    ap.add_argument("--timeout-rate", type=float, default=0.1, help="share of calls that hang past the timeout")
    ap.add_argument("--worker-timeout", type=float, default=2.0, help="pool timeout of the fault-injection workers")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-faults", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        work = Path(tmp)
        if not args.skip_overhead:
            result["overhead"] = overhead(args, work)
            result["gateway_code"] = code_cost(work)
            print("gateway code:", json.dumps(result["gateway_code"]), flush=True)
        if not args.skip_faults:
            result["faults"] = fault_injection(args, work)
            print("faults:", json.dumps(result["faults"]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
