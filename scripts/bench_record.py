"""`baton record` throughput against a pool of stub OpenAI servers, and resume after kill -9.

    python scripts/bench_record.py                       # mmlu+gsm8k (15,361 queries) x 4 workers
    python scripts/bench_record.py --tasks mmlu:2000 --processes 1,2     # a short run
    python scripts/bench_record.py --tasks mmlu,gsm8k,gpqa,aime --workers 5 --processes 4
        # 77,945 requests: over a minute at 1,000/s (what make results runs)
    git worktree add /tmp/old REV && python scripts/bench_record.py --baseline-checkout /tmp/old

Each worker is its own stub server (`routers.pool.stub`, in this process's threads) behind the
openai backend, so the recorder pays what it pays against a real endpoint: HTTP, the SDK, the
SQLite response cache, grading, and a group-committed fsync of every finished query line.
`baton record` itself runs as a child process, exactly as a user starts it.

Phase 0 (recorder alone): the same items through `routers.record.arecord` in this process with a
pool that answers at once (no HTTP): the ceiling of the recorder itself (grading, JSON, the
group-committed fsync), to compare the full stack against.
Phase 1 (throughput): a full recording, once per `--processes` value (baton record's shard
processes), so their ratio is measured in one run. The parent counts finished lines four times a
second and reports requests/s overall (start to exit, imports included) and sustained (first
finished line to last), with the slowest and the median one-second window in between, and where
the CPU went: seconds used by baton record (with its shards) and by the stub servers (this process),
against the seconds the machine's cores offered over the run, and the load average (other jobs).
Phase 2 (kill -9, with the most processes): a second recording is killed with SIGKILL halfway,
then resumed with the same command. Checked: no call goes out after the kill (shards die with
their parent), the lines written before it are kept unchanged, every query is in the file once,
and the stubs saw no request for a query already written (paid calls in flight at the kill come
back from the response cache).

Writes results/bench_record.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# BENCH_RECORD_CHECKOUT: another checkout's routers.record for phase 0 (see --baseline-checkout)
sys.path.insert(0, os.environ.get("BENCH_RECORD_CHECKOUT") or str(REPO))

from routers.pool.base import WorkerReply  # noqa: E402
from routers.pool.stub import start_stub_server  # noqa: E402
from routers.record import arecord, read_records  # noqa: E402
from routers.tasks import load_task_items  # noqa: E402


class InstantPool:
    """Workers that answer at once, without HTTP: what the recorder costs by itself."""

    def __init__(self, n: int):
        self.names = [f"w{i}" for i in range(n)]

    async def call(self, worker, messages, **params):
        return WorkerReply(text="The answer is B", worker=worker, model=worker, input_tokens=50, output_tokens=4,
                           cost=1e-5, latency_s=0.0)


def recorder_alone(folder: Path, a) -> dict:
    items = load_task_items(a.tasks)
    t0 = time.perf_counter()
    ds = asyncio.run(arecord(InstantPool(a.workers), items, folder / "alone.jsonl", concurrency=a.concurrency,
                             progress=False, durable=True))
    wall = time.perf_counter() - t0
    return {"queries": len(ds), "requests": len(ds) * a.workers, "wall_s": round(wall, 2),
            "requests_per_s": round(len(ds) * a.workers / wall, 1)}


class LineCounter:
    """Finished lines in a growing file, read incrementally (the file is only appended to)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.lines = path, 0, 0

    def poll(self) -> int:
        if self.path.exists():
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
            self.offset += len(chunk)
            self.lines += chunk.count(b"\n")
        return self.lines


def pool_file(folder: Path, urls: list[str], worker_concurrency: int) -> Path:
    workers = [{"name": f"w{i}", "backend": "openai", "model": f"bench-{i}", "base_url": url, "api_key_env": None,
                "limits": {"max_concurrency": worker_concurrency, "timeout": 60}} for i, url in enumerate(urls)]
    p = folder / "stub_pool.yaml"
    p.write_text(yaml.safe_dump({"name": "bench-stubs", "workers": workers}))
    return p


def start_record(pool: Path, out: Path, a, processes: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "routers.cli", "record", "--pool", str(pool), "--tasks", a.tasks,
           "--out", str(out), "--concurrency", str(a.concurrency), "--processes", str(processes)]
    log = open(out.with_suffix(".log"), "ab")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)})


def requests_seen(stops) -> int:
    return sum(s.stub.requests for s in stops)


def throughput(pool: Path, folder: Path, stops, a, n_workers: int, processes: int) -> dict:
    out = folder / f"throughput-p{processes}.jsonl"
    before = requests_seen(stops)
    load0, cpu0, kids0 = os.getloadavg()[0], time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = start_record(pool, out, a, processes)
    counter, samples = LineCounter(out), []
    while proc.poll() is None:
        time.sleep(0.25)
        samples.append((time.perf_counter() - t0, counter.poll()))
    wall = time.perf_counter() - t0
    samples.append((wall, counter.poll()))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # baton record and its shards (waited for)
    cpu = {"recorder_s": round(kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime, 1),
           "stub_servers_s": round(time.process_time() - cpu0, 1),  # this process: the stubs' threads (+ polling)
           "available_s": round(wall * (os.cpu_count() or 1), 1),
           "load_average_1min_at_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if proc.returncode != 0:
        raise SystemExit(f"baton record failed ({proc.returncode}); see {out.with_suffix('.log')}")
    n = counter.lines
    # sustained: from the first finished line to the last (startup and imports excluded)
    t_first = next(t for t, k in samples if k > 0)
    t_last = next(t for t, k in samples if k >= n)
    sustained = (n - next(k for t, k in samples if t >= t_first)) * n_workers / max(t_last - t_first, 1e-9)
    inside = [(t, k) for t, k in samples if t_first <= t <= t_last]
    windows = []  # requests/s in each one-second window inside
    for i, (t, k) in enumerate(inside):
        j = next((j for j in range(i, len(inside)) if inside[j][0] >= t + 1.0), None)
        if j is not None:
            windows.append((inside[j][1] - k) * n_workers / (inside[j][0] - t))
    requests = requests_seen(stops) - before
    rows = read_records(out)
    return {"processes": processes, "queries": n, "requests": n * n_workers, "stub_requests": requests,
            "duplicate_requests": requests - n * n_workers, "wall_s": round(wall, 2),
            "requests_per_s_overall": round(n * n_workers / wall, 1),
            "requests_per_s_sustained": round(sustained, 1),
            "sustained_window_s": round(t_last - t_first, 2),
            "slowest_1s_window_requests_per_s": round(min(windows), 1) if windows else None,
            "median_1s_window_requests_per_s": round(sorted(windows)[len(windows) // 2], 1) if windows else None,
            "unique_ids": len({r["id"] for r in rows}),
            "errors": sum(1 for r in rows for c in r["results"].values() if c.get("error")), "cpu": cpu}


def kill_and_resume(pool: Path, folder: Path, stops, a, n_workers: int, total: int, processes: int) -> dict:
    out = folder / "killed.jsonl"
    proc = start_record(pool, out, a, processes)
    counter = LineCounter(out)
    while counter.poll() < total * a.kill_at and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # shard processes die with their parent
    kept = read_records(out)  # cuts a torn last line, as the resumed run will
    before = requests_seen(stops)
    time.sleep(1.0)
    after_kill = requests_seen(stops) - before  # calls still going out after the kill (should be 0)
    t0 = time.perf_counter()
    resumed = start_record(pool, out, a, processes)
    resumed.wait()
    wall = time.perf_counter() - t0
    if resumed.returncode != 0:
        raise SystemExit(f"resumed baton record failed ({resumed.returncode}); see {out.with_suffix('.log')}")
    rows = read_records(out)
    ids = [r["id"] for r in rows]
    paid_after = requests_seen(stops) - before
    remaining_cells = (total - len(kept)) * n_workers
    return {"processes": processes, "killed_after_lines": len(kept), "requests_after_kill": after_kill, "kept_unchanged": rows[:len(kept)] == kept,
            "lines_after_resume": len(rows), "unique_ids": len(set(ids)), "complete": len(set(ids)) == total,
            "duplicate_lines": len(ids) - len(set(ids)),
            "stub_requests_on_resume": paid_after, "cells_left_at_kill": remaining_cells,
            "requests_for_finished_queries": max(0, paid_after - remaining_cells),
            "resume_wall_s": round(wall, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="mmlu,gsm8k", help="task spec for baton record (default: 15,361 queries)")
    ap.add_argument("--workers", type=int, default=4, help="stub servers, one per worker")
    ap.add_argument("--concurrency", type=int, default=32, help="baton record --concurrency (calls in flight)")
    ap.add_argument("--worker-concurrency", type=int, default=8,
                    help="each worker's limits.max_concurrency (connections per HTTP client)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds each stub waits before answering")
    ap.add_argument("--processes", default="1,2,4", help="comma list: baton record --processes values to measure")
    ap.add_argument("--kill-at", type=float, default=0.5, help="phase 2 kills the recorder at this share of lines")
    ap.add_argument("--skip-kill", action="store_true")
    ap.add_argument("--baseline-checkout", default=None,
                    help="a checkout of an older commit (git worktree add DIR REV): phase 0 also runs its recorder")
    ap.add_argument("--alone-only", action="store_true", help=argparse.SUPPRESS)  # phase 0 only, JSON on stdout
    ap.add_argument("--json", default=str(REPO / "results" / "bench_record.json"))
    a = ap.parse_args(argv)
    if a.alone_only:
        with tempfile.TemporaryDirectory(prefix="bench_record.") as tmp:
            print(json.dumps(recorder_alone(Path(tmp), a)))
        return 0

    stops = [start_stub_server(faults={"latency_s": a.latency})[1] for _ in range(a.workers)]
    urls = [f"http://127.0.0.1:{s.stub._server.sockets[0].getsockname()[1]}/v1" for s in stops]  # noqa: SLF001
    result: dict = {"tasks": a.tasks, "workers": a.workers, "concurrency": a.concurrency,
                    "worker_concurrency": a.worker_concurrency, "stub_latency_s": a.latency,
                    "cpus": os.cpu_count(), "machine": platform.platform(), "python": platform.python_version(),
                    "target_requests_per_s": 1000}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_record.") as tmp:
            folder = Path(tmp)
            pool = pool_file(folder, urls, a.worker_concurrency)
            result["recorder_alone"] = alone = recorder_alone(folder, a)
            print(json.dumps(alone), flush=True)
            if a.baseline_checkout:
                base = Path(a.baseline_checkout).resolve()
                rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=base, capture_output=True,
                                     text=True).stdout.strip()
                cmd = [sys.executable, __file__, "--alone-only", "--tasks", a.tasks, "--workers", str(a.workers),
                       "--concurrency", str(a.concurrency)]
                got = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                     env={**os.environ, "BENCH_RECORD_CHECKOUT": str(base)})
                result["recorder_alone_baseline"] = old = {"commit": rev, **json.loads(got.stdout.splitlines()[-1])}
                alone["vs_baseline"] = round(alone["requests_per_s"] / old["requests_per_s"], 2)
                print(json.dumps(old), flush=True)
            result["throughput"] = runs = []
            for processes in (int(x) for x in a.processes.split(",")):
                tp = throughput(pool, folder, stops, a, a.workers, processes)
                tp["share_of_recorder_ceiling"] = round(tp["requests_per_s_sustained"] / alone["requests_per_s"], 3)
                tp["vs_first_run"] = round(tp["requests_per_s_sustained"] / runs[0]["requests_per_s_sustained"], 2) \
                    if runs else 1.0
                runs.append(tp)
                print(json.dumps(tp, indent=1), flush=True)
            if not a.skip_kill:
                most = max(runs, key=lambda r: r["processes"])["processes"]
                result["kill_9_resume"] = kr = kill_and_resume(pool, folder, stops, a, a.workers, runs[0]["queries"],
                                                               most)
                print(json.dumps(kr, indent=1), flush=True)
    finally:
        for s in stops:
            s()
    result["meets_1000_per_s_for_a_minute"] = any(r["requests_per_s_sustained"] >= 1000 and r["sustained_window_s"] >= 60
                                                  for r in result["throughput"])
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
