"""`baton logs summarize LOG`: what a decision log says about the workers.

Per worker: share of answered calls, calls answered, failed attempts, cost, call latency p50/p95.
Overall: requests, errors by status, fallback rate (share of answered requests in which some
call was answered by a worker other than the first one tried), total cost.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from routers.serve.decision_log import read_log


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    answered: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    cost: defaultdict[str, float] = defaultdict(float)
    lat: defaultdict[str, list[float]] = defaultdict(list)
    status: Counter[str] = Counter()
    ok = with_fallback = 0
    for r in records:
        status[str(r.get("status"))] += 1
        for call in r.get("calls") or []:
            for a in call.get("attempts") or []:
                w = a.get("worker")
                if a.get("ok"):
                    answered[w] += 1
                    lat[w].append(float(a.get("latency_s") or 0.0))
                else:
                    failed[w] += 1
        for s in r.get("steps") or []:
            cost[s["worker"]] += float(s.get("cost") or 0.0)
        if r.get("outcome") == "ok":
            ok += 1
            with_fallback += int((r.get("fallbacks") or 0) > 0)
    total_calls = sum(answered.values())
    workers = {}
    for w in sorted(set(answered) | set(failed)):
        xs = np.asarray(lat[w]) if lat[w] else None
        workers[w] = {"share": answered[w] / total_calls if total_calls else 0.0, "calls": answered[w],
                      "failed_attempts": failed[w], "cost": cost[w],
                      "latency_p50_s": None if xs is None else float(np.percentile(xs, 50)),
                      "latency_p95_s": None if xs is None else float(np.percentile(xs, 95))}
    return {"requests": len(records), "answered": ok, "errors": len(records) - ok, "status": dict(status),
            "fallback_rate": with_fallback / ok if ok else 0.0, "cost": float(sum(cost.values())),
            "workers": workers}


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"{s['requests']} requests, {s['answered']} answered, {s['errors']} errors "
             f"(status {', '.join(f'{k}: {v}' for k, v in sorted(s['status'].items()))}); "
             f"fallback rate {s['fallback_rate']:.1%}; cost ${s['cost']:.6f}",
             f"{'worker':<24}{'share':>8}{'calls':>8}{'failed':>8}{'cost $':>12}{'p50 s':>9}{'p95 s':>9}"]
    for w, r in s["workers"].items():
        p50 = "-" if r["latency_p50_s"] is None else f"{r['latency_p50_s']:.3f}"
        p95 = "-" if r["latency_p95_s"] is None else f"{r['latency_p95_s']:.3f}"
        lines.append(f"{w:<24}{r['share']:>8.1%}{r['calls']:>8}{r['failed_attempts']:>8}{r['cost']:>12.6f}"
                     f"{p50:>9}{p95:>9}")
    return "\n".join(lines)


def cli_summarize(args) -> int:
    s = summarize(read_log(args.log))
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0
