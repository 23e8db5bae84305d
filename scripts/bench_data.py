"""Benchmark routing data at scale: loading per format, and `baton eval`, at 10k / 100k / 1M queries x 20 models.

Each file is loaded in its own process (so peak RSS is its loads' alone): the child imports baton, notes
its RSS, calls `load_dataset` --repeats times (touching every score and cost: mapped pages count once
read), and reports the least wall and CPU time and the peak RSS above that baseline. Memory is also given as a ratio to the dataset's dense
score+cost arrays (n x m x 8 bytes each), the issue's yardstick (<= 2x); speed as rows/s (>= 200,000
for the Arrow file at 1M). The other formats make a Python object per cell (JSON, CSV, and the long
parquet with one row per query x model); at 1M rows they take minutes and gigabytes on this 2-core
machine, so by default they stop at --max-cell-rows (said in the output).

Then `baton eval` with the baselines that need no text encoder (--eval-routers: random, best-single,
oracle) on an Arrow file of each --eval-sizes (costs all known, so AIQ/APGR are computed; a third of
the rows is the test split), in its own process: wall time of the whole command (load, overlap check,
fit, lam sweep, one bootstrap pass of 1000 resamples, JSON written) and its peak RSS, with the growth
ratios between sizes. Writes JSON (default results/bench_data.json; the eval part under "eval").

    python scripts/bench_data.py                       # 10k, 100k, 1M; per-cell formats to 100k; eval at each
    python scripts/bench_data.py --sizes 10000,100000 --formats native_arrow,scores_json --eval-sizes ""
    python scripts/bench_data.py --formats "" --eval-sizes 10000,100000,1000000   # eval only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FORMATS = ("native_arrow", "native_parquet", "native_jsonl", "scores_json", "routerbench_csv", "routellm_csv")
# formats that make a Python object per cell (text parsing; parquet is long: one row per query x model)
CELL_FORMATS = {"native_parquet", "native_jsonl", "scores_json", "routerbench_csv", "routellm_csv"}
SUFFIX = {"native_arrow": ".arrow", "native_parquet": ".parquet", "native_jsonl": ".jsonl",
          "scores_json": ".json", "routerbench_csv": ".csv", "routellm_csv": ".csv"}


def synthetic(n: int, m: int, seed: int = 0, unknown_cost: float = 0.01):
    """n queries x m models: 0/1 scores with 2% missing, costs with `unknown_cost` unknown, ~70-char prompts."""
    from routers.data import RoutingDataset

    rng = np.random.default_rng(seed)
    scores = (rng.random((n, m)) < 0.6).astype(np.float64)
    scores[rng.random((n, m)) < 0.02] = np.nan
    costs = rng.random((n, m)) * 1e-3
    costs[rng.random((n, m)) < unknown_cost] = np.nan
    perm = rng.permutation(n)
    return RoutingDataset(
        ids=[f"task{i % 40}.{p}" for i, p in enumerate(perm)],
        prompts=[f"Question {p}: what is {p % 997} times {p % 89}, and why does it matter?" for p in perm],
        categories=[f"task{i % 40}" for i in range(n)], splits=[("train", "validation", "test")[i % 3] for i in range(n)],
        models=[f"org/model-{j}" for j in range(m)], scores=scores, costs=costs, name="synthetic")


def write(fmt: str, ds, path: Path) -> None:
    import pandas as pd

    from routers.data import save_arrow, save_jsonl, save_parquet

    if fmt == "native_arrow":
        save_arrow(ds, path)
    elif fmt == "native_parquet":
        save_parquet(ds, path)
    elif fmt == "native_jsonl":
        save_jsonl(ds, path)
    elif fmt == "scores_json":  # {question, scores} as LLMRouter/RouterDC publish it (no costs)
        items = [{"question": p, "scores": {m: (None if np.isnan(v) else float(v)) for m, v in zip(ds.models, row)}}
                 for p, row in zip(ds.prompts, ds.scores)]
        path.write_text(json.dumps(items))
    elif fmt == "routerbench_csv":
        cols = {"sample_id": ds.ids, "prompt": ds.prompts, "eval_name": ds.categories}
        for j, m in enumerate(ds.models):
            cols[m] = ds.scores[:, j]
            cols[m + "|total_cost"] = ds.costs[:, j]
        cols["oracle_model_to_route_to"] = [ds.models[0]] * len(ds)
        pd.DataFrame(cols).to_csv(path, index=False)
    elif fmt == "routellm_csv":  # True/False per model, no missing cells (RouteLLM has none)
        cols = {"prompt": ds.prompts}
        for j, m in enumerate(ds.models):
            cols[m] = np.nan_to_num(ds.scores[:, j]) > 0.5
        pd.DataFrame(cols).to_csv(path, index=False)
    else:
        raise ValueError(fmt)


CHILD = r"""
import json, sys, time, warnings


def peak_rss():
    # VmHWM: this process image's peak RSS. ru_maxrss would also count the parent's pages that the
    # fork before exec copied (a big parent inflates it).
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


import numpy as np, psutil
import pandas, pyarrow, pyarrow.parquet  # fixed import costs, not the load's: before the baseline
from routers.data import load_dataset
warnings.simplefilter("ignore")
base = psutil.Process().memory_info().rss
walls, cpus = [], []
for _ in range(int(sys.argv[2])):  # the least of a few loads: this machine is shared
    ds = None
    t, c = time.perf_counter(), time.process_time()
    ds = load_dataset(sys.argv[1])
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
    touched = float(np.nansum(ds.scores.sum(axis=0)))  # read every score (and cost): mapped pages now count
    if ds.costs is not None:
        touched += float(np.nansum(ds.costs.sum(axis=0)))
load_s, cpu_s = min(walls), min(cpus)
peak = peak_rss()
n, m = ds.scores.shape
print(json.dumps({"rows": n, "models": m, "load_s": load_s, "cpu_s": cpu_s, "walls_s": walls,
                  "peak_mb": (peak - base) / 1e6,
                  "dense_mb": n * m * 8 * (2 if ds.costs is not None else 1) / 1e6, "has_costs": ds.costs is not None}))
"""


def measure(path: Path, repeats: int = 1) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(repeats)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"loading {path} failed:\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["rows_per_s"] = r["rows"] / r["load_s"]
    r["peak_over_dense"] = r["peak_mb"] / r["dense_mb"]
    r["file_mb"] = path.stat().st_size / 1e6
    return r


EVAL_CHILD = r"""
import json, sys, time


def peak_rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


import numpy as np, psutil
import pandas, pyarrow, pyarrow.compute, rich, tqdm  # fixed import costs, not the evaluation's
from routers import evaluate, metrics
from routers.baselines import simple
from routers.cli import main
base = psutil.Process().memory_info().rss
t, c = time.perf_counter(), time.process_time()
rc = main(["eval", "--data", sys.argv[1], "--routers", sys.argv[2], "--json", sys.argv[3]])
wall, cpu = time.perf_counter() - t, time.process_time() - c
out = json.load(open(sys.argv[3]))
print(json.dumps({"rc": rc, "eval_s": wall, "cpu_s": cpu, "peak_mb": (peak_rss() - base) / 1e6,
                  "n_test": out["n_test"], "aiq": {k: r["aiq"] for k, r in out["routers"].items()}}))
"""


def measure_eval(path: Path, routers: str, rows: int) -> dict:
    """`baton eval` on `path` in a child process: its wall and CPU time and peak RSS above the baseline."""
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="offline", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", EVAL_CHILD, str(path), routers, str(path.with_suffix(".json"))],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"baton eval on {path} failed:\n{out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["rc"]:
        raise RuntimeError(f"baton eval on {path} exited {r['rc']}:\n{out.stderr[-2000:]}")
    return {"rows": rows, **r, "test_rows_per_s": r["n_test"] / r["eval_s"]}


def bench_eval(sizes: list[int], m: int, routers: str, tmp: Path) -> dict:
    """`baton eval` at each size and the growth ratios between consecutive sizes."""
    rows = []
    for n in sizes:
        path = tmp / f"eval_{n}.arrow"
        write("native_arrow", synthetic(n, m, unknown_cost=0.0), path)
        r = measure_eval(path, routers, n)
        rows.append(r)
        print(f"eval {routers} {n:>9,} rows ({r['n_test']:,} test): {r['eval_s']:7.1f} s (cpu {r['cpu_s']:6.1f} s)  "
              f"peak {r['peak_mb']:7.0f} MB", flush=True)
        path.unlink()
        path.with_suffix(".json").unlink(missing_ok=True)
    growth = [{"rows": f"{a['rows']}->{b['rows']}", "rows_ratio": b["rows"] / a["rows"],
               "time_ratio": b["eval_s"] / a["eval_s"], "cpu_ratio": b["cpu_s"] / a["cpu_s"],
               "peak_ratio": b["peak_mb"] / max(a["peak_mb"], 1e-9)} for a, b in zip(rows, rows[1:])]
    return {"routers": routers.split(","), "n_boot": 1000, "results": rows, "growth": growth}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--max-cell-rows", type=int, default=100_000,
                    help="largest size for the formats parsed cell by cell (JSON, CSV, long parquet); "
                         "larger sizes are skipped and said so")
    ap.add_argument("--repeats", type=int, default=3,
                    help="loads per file, least time reported (1 for the per-cell formats above 100k rows)")
    ap.add_argument("--eval-sizes", default="10000,100000,1000000",
                    help="rows of the files `baton eval` runs on ('' for none)")
    ap.add_argument("--eval-routers", default="random,best-single,oracle",
                    help="the routers evaluated (default: every baseline that needs no text encoder)")
    ap.add_argument("--out", default=str(REPO / "results" / "bench_data.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    eval_sizes = [int(s) for s in args.eval_sizes.split(",") if s]
    formats = [f for f in args.formats.split(",") if f]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        ap.error(f"unknown formats {bad}; expected some of {FORMATS}")
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        for n in sizes:
            ds = synthetic(n, args.models)
            for fmt in formats:
                if fmt in CELL_FORMATS and n > args.max_cell_rows:
                    skipped.append({"format": fmt, "rows": n, "why": f"per-cell format above --max-cell-rows "
                                    f"{args.max_cell_rows} (minutes and GBs of Python objects on this machine)"})
                    continue
                path = Path(tmp) / f"{fmt}_{n}{SUFFIX[fmt]}"
                t = time.perf_counter()
                write(fmt, ds, path)
                write_s = time.perf_counter() - t
                r = {"format": fmt, **measure(path, args.repeats if n <= 100_000 or fmt == "native_arrow" else 1),
                     "write_s": write_s}
                rows.append(r)
                print(f"{fmt:16s} {n:>9,} rows  load {r['load_s']:7.3f}s (cpu {r['cpu_s']:6.3f}s)  "
                      f"{r['rows_per_s']:>11,.0f} rows/s  "
                      f"peak {r['peak_mb']:7.0f} MB = {r['peak_over_dense']:.2f}x dense  file {r['file_mb']:7.1f} MB",
                      flush=True)
                path.unlink()
            del ds
        evals = bench_eval(eval_sizes, args.models, args.eval_routers, Path(tmp)) if eval_sizes else None
    growth = {}
    for fmt in formats:
        got = sorted((r["rows"], r["load_s"], r["peak_mb"], r["cpu_s"]) for r in rows if r["format"] == fmt)
        growth[fmt] = [{"rows": f"{a[0]}->{b[0]}", "rows_ratio": b[0] / a[0], "time_ratio": b[1] / a[1],
                        "cpu_ratio": b[3] / a[3], "peak_ratio": b[2] / max(a[2], 1e-9)} for a, b in zip(got, got[1:])]
    result = {"benchmark": "bench_data", "python": platform.python_version(), "cpus": os.cpu_count(),
              "models": args.models, "sizes": sizes, "results": rows, "growth": growth, "skipped": skipped,
              "targets": {"arrow_rows_per_s_at_1M": 200_000, "peak_over_dense_max": 2.0}, "eval": evals}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for fmt, g in growth.items():
        for x in g:
            print(f"growth {fmt:16s} {x['rows']:>16s}: rows x{x['rows_ratio']:.0f}, time x{x['time_ratio']:.1f} "
                  f"(cpu x{x['cpu_ratio']:.1f}), peak memory x{x['peak_ratio']:.1f}")
    for x in (evals or {}).get("growth", []):
        print(f"growth eval {x['rows']:>16s}: rows x{x['rows_ratio']:.0f}, time x{x['time_ratio']:.1f} "
              f"(cpu x{x['cpu_ratio']:.1f}), peak memory x{x['peak_ratio']:.1f}")
    for s in skipped:
        print(f"skipped {s['format']} at {s['rows']:,} rows: {s['why']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
