"""Sandbox cost and containment: per-run overhead of the namespace and tripwire modes against a plain
subprocess, HumanEval grading time in both modes, and the escape table (secret read, loopback
connect, fork bomb, write outside, memory bomb) x (namespace, tripwire), each attack run with the
audit hook on and with its check switched off (as if the code had bypassed it).

    python scripts/bench_sandbox.py --out results/bench_sandbox.json

The attacks are harmless by construction (a 200-process fork with a cap, a file in a fresh /tmp
name, a server of our own), because in tripwire mode as root nothing else stops them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from routers.tasks import get_task
from routers.tasks.sandbox import namespace_support, run_code

MODES = ("namespace", "tripwire")
MAX_PROCS = 32


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def overhead(repeats: int) -> dict:
    """Median wall time of a trivial program: plain `python -c pass` and run_code in each mode."""
    plain = _median_s(lambda: subprocess.run([sys.executable, "-I", "-S", "-B", "-c", "pass"], check=True), repeats)
    res = {"repeats": repeats, "plain_subprocess_s": plain}
    for mode in MODES:
        def one(mode=mode):
            r = run_code("pass", isolation=mode)
            assert r.ok and r.sandbox == mode, r
        res[f"{mode}_s"] = _median_s(one, repeats)
        res[f"{mode}_over_plain"] = res[f"{mode}_s"] / plain
    res["namespace_over_tripwire"] = res["namespace_s"] / res["tripwire_s"]
    return res


def humaneval(n: int) -> dict:
    """Median time to grade a canonical HumanEval reply, and how many pass, in each mode."""
    task = get_task("humaneval")
    items = task.load(n, seed=0)
    rng = np.random.default_rng(0)
    replies = [task.render_answer(it, True, rng) for it in items]
    res = {"n": len(items)}
    for mode in MODES:
        times, passed = [], 0
        for it, reply in zip(items, replies):
            code = task.extract(reply, it)
            t = time.perf_counter()
            r = run_code(task.program(code, it), timeout_s=task.timeout_s, isolation=mode)
            times.append(time.perf_counter() - t)
            passed += int(r.ok)
        res[f"{mode}_grade_median_s"] = statistics.median(times)
        res[f"{mode}_passed"] = passed
    return res


def _verdict(contained: bool, detail: str) -> dict:
    return {"contained": contained, "detail": detail}


def secret_read(mode: str, bypass: bool) -> dict:
    """Read a token planted in $HOME and the repository's pyproject.toml (reads are never hooked)."""
    secret = Path.home() / f".baton-bench-secret-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    secret.write_text(token)
    try:
        r = run_code(f"print(open({str(secret)!r}).read())", isolation=mode)
    finally:
        secret.unlink()
    leaked = token in r.stdout
    return _verdict(not leaked, "read the token" if leaked else _last_line(r.stderr))


def loopback_connect(mode: str, bypass: bool) -> dict:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    try:
        r = run_code(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'x')",
                     allow_network=bypass, isolation=mode, timeout_s=8)
        srv.settimeout(0.5)
        try:
            srv.accept()[0].close()
            connected = True
        except TimeoutError:
            connected = False
    finally:
        srv.close()
    return _verdict(not connected, "connected to 127.0.0.1" if connected else _last_line(r.stderr))


def fork_bomb(mode: str, bypass: bool) -> dict:
    """Try 200 forks (children wait on a pipe); contained if it stops below max_procs."""
    code = ("import os\nr, w = os.pipe()\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        os.read(r, 1)\n        os._exit(0)\n"
            "    n += 1\nprint(n)")
    r = run_code(code, max_procs=MAX_PROCS, allow_subprocess=bypass, isolation=mode, timeout_s=10)
    if r.blocked:
        return _verdict(True, f"blocked: {r.blocked[0]}")
    forked = int(r.stdout) if r.stdout.strip().isdigit() else None
    return _verdict(forked is not None and forked < MAX_PROCS, f"{forked} processes (max_procs {MAX_PROCS})")


def write_outside(mode: str, bypass: bool) -> dict:
    """Create a file in the host's /tmp: by open() (hook on) or by a shell child (hook bypassed)."""
    target = Path("/tmp") / f"baton_bench_outside_{uuid.uuid4().hex}"
    code = (f"import subprocess\nsubprocess.run(['sh', '-c', 'echo x > {target}'], check=True)" if bypass
            else f"open({str(target)!r}, 'w').write('x')")
    try:
        r = run_code(code, allow_subprocess=bypass, isolation=mode)
        wrote = target.exists()
    finally:
        target.unlink(missing_ok=True)
    detail = "wrote the host file" if wrote else (
        f"blocked: {r.blocked[0]}" if r.blocked else "the host file was not touched (private /tmp)")
    return _verdict(not wrote, detail)


def memory_bomb(mode: str, bypass: bool) -> dict:
    """Allocate without end (in a child process when bypassing), under a 256 MB limit."""
    bomb = "a = []\nwhile True:\n    a.append(bytearray(10**7))"
    code = (f"import subprocess, sys\nr = subprocess.run([sys.executable, '-c', {bomb!r}])\nraise SystemExit(r.returncode)"
            if bypass else bomb)
    t = time.perf_counter()
    r = run_code(code, memory_mb=256, allow_subprocess=bypass, isolation=mode, timeout_s=10)
    took = time.perf_counter() - t
    stopped = not r.ok and not r.timed_out and "MemoryError" in r.stderr
    return _verdict(stopped, f"MemoryError at 256 MB after {took:.2f}s" if stopped else f"rc {r.returncode}")


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


ATTACKS = {"secret_read": secret_read, "loopback_connect": loopback_connect, "fork_bomb": fork_bomb,
           "write_outside": write_outside, "memory_bomb": memory_bomb}


def escape_table() -> dict:
    return {name: {mode: {hook: fn(mode, hook == "hook_bypassed") for hook in ("hook_on", "hook_bypassed")}
                   for mode in MODES}
            for name, fn in ATTACKS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--humaneval", type=int, default=20, help="problems to grade in each mode")
    ap.add_argument("--out", default="results/bench_sandbox.json")
    a = ap.parse_args(argv)
    usable, why = namespace_support()
    if not usable:
        print(f"bench_sandbox: namespaces unavailable here ({why}); nothing to compare", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    res = {"machine": {"python": platform.python_version(), "kernel": platform.release(), "euid": os.geteuid(),
                       "cpus": os.cpu_count()},
           "overhead": overhead(a.repeats), "humaneval": humaneval(a.humaneval), "escapes": escape_table()}
    res["wall_s"] = time.perf_counter() - t0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
