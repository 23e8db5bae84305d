"""Sandbox overhead: median wall time of `run_code` for a trivial program and of grading HumanEval
canonical solutions (the cost the recorder and the simulated pool pay per code reply).

    python scripts/bench_sandbox.py --out outputs/bench_sandbox.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from routers.tasks import get_task
from routers.tasks.sandbox import run_code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--humaneval", type=int, default=20, help="problems to grade")
    ap.add_argument("--out", default="outputs/bench_sandbox.json")
    a = ap.parse_args(argv)
    trivial = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        assert run_code("print(1)").ok
        trivial.append(time.perf_counter() - t)
    task = get_task("humaneval")
    rng = np.random.default_rng(0)
    grade, passed = [], 0
    for item in task.load(a.humaneval, seed=0):
        reply = task.render_answer(item, True, rng)
        t = time.perf_counter()
        passed += int(task.grade(reply, item) == 1.0)
        grade.append(time.perf_counter() - t)
    res = {"trivial_median_s": statistics.median(trivial), "trivial_n": len(trivial),
           "humaneval_grade_median_s": statistics.median(grade), "humaneval_n": len(grade),
           "humaneval_canonical_passed": passed}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
