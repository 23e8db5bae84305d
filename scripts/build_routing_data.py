"""Record a routing dataset: run task suites against a worker pool, grade every reply, and write
native JSONL (resumable: rerun the same command after a crash and it continues).

    python scripts/build_routing_data.py --pool configs/pools/smollm2_local.yaml \
        --tasks mmlu:200,gsm8k:50 --out outputs/smollm2_record.jsonl
    python scripts/build_routing_data.py --pool configs/pools/simulated.yaml --tasks mmlu:600,gsm8k:400 \
        --out outputs/simulated.jsonl --max-tokens 64 --temperature 0

Same as `baton record` (routers.record.run_record), plus generation overrides and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from routers.errors import BatonError
from routers.record import run_record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", required=True, help="pool YAML")
    ap.add_argument("--tasks", required=True, help="TASK[=SOURCE][:LIMIT],... e.g. mmlu:200,gsm8k:50")
    ap.add_argument("--out", required=True, help="output JSONL (native format)")
    ap.add_argument("--limit", type=int, default=None, help="items per task without their own :LIMIT")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--cache", default=None, help="SQLite response cache (default OUT.cache.sqlite)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", default=None,
                    help="override the tasks' max_tokens: N for all, or per task: mmlu=8,gsm8k=256")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--summary", default=None, help="write per-task, per-worker accuracy/tokens JSON here")
    a = ap.parse_args(argv)
    params = {"temperature": a.temperature} if a.temperature is not None else {}
    task_params: dict[str, dict] = {}
    for part in (a.max_tokens or "").split(","):
        if "=" in part:
            name, n = part.split("=", 1)
            task_params[name.strip()] = {"max_tokens": int(n)}
        elif part.strip():
            params["max_tokens"] = int(part)
    t0 = time.perf_counter()
    try:
        ds = run_record(a.pool, a.tasks, a.out, limit=a.limit, concurrency=a.concurrency, cache=a.cache,
                        seed=a.seed, params=params or None, task_params=task_params or None)
    except BatonError as e:
        print(f"build_routing_data: error: {e}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    if a.summary:
        tasks = np.array(ds.meta["tasks"])
        out = {"pool": a.pool, "tasks": a.tasks, "out": a.out, "wall_s": wall, "new_queries": ds.meta.get("new"),
               "errors": ds.meta.get("errors"), "per_task": {}}
        for t in sorted(set(tasks.tolist())):
            rows = tasks == t
            out["per_task"][t] = {w: {"accuracy": float(np.nanmean(ds.scores[rows, j])),
                                      "n": int((~np.isnan(ds.scores[rows, j])).sum()),
                                      "output_tokens": float(np.nansum(ds.output_tokens[rows, j])),
                                      "input_tokens": float(np.nansum(ds.input_tokens[rows, j])),
                                      "worker_seconds": float(np.nansum(ds.latencies[rows, j]))}
                                  for j, w in enumerate(ds.models)}
        Path(a.summary).parent.mkdir(parents=True, exist_ok=True)
        Path(a.summary).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
