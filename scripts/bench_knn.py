"""Benchmark the kNN router's blocked nearest-neighbour search: time and peak memory at 10k / 100k / 1M
training queries (384-d vectors, MiniLM's size; 20 models), routing a batch of test queries.

Vectors are random and unit-length, served by an index encoder (no model, no cache), so the numbers
are the search's alone. Each size runs in its own process (peak RSS is that run's). Reported per size:
fit time (with a validation split, so k is tuned), routing time and queries/s, peak RSS above the
baseline, what one full (test x train) similarity matrix would have needed, and the routing time for
1M test queries extrapolated from the measured rate (labelled as an estimate: the search is exact,
so time is linear in test queries x train queries). Then the embedding cache (routers.embed): texts
through a cached encoder cold (embed + write) and warm (read back), in a temporary cache folder.
Writes JSON (default results/bench_knn.json).

    python scripts/bench_knn.py
    python scripts/bench_knn.py --sizes 10000,100000 --test 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time


def peak_rss():
    # VmHWM: this process image's peak RSS. ru_maxrss would also count the parent's pages that the
    # fork before exec copied (a big parent inflates it).
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


import numpy as np, psutil
from routers.baselines.knn import QUERY_BLOCK, TRAIN_BLOCK, KNNRouter
from routers.data import RoutingDataset
from routers.embed import register_encoder

n_train, n_test, n_val, dim, m = (int(x) for x in sys.argv[1:6])
rng = np.random.default_rng(0)
total = n_train + n_val + n_test
vec = rng.standard_normal((total, dim), dtype=np.float32)
vec /= np.linalg.norm(vec, axis=1, keepdims=True)


class IndexEncoder:  # text "t<i>" -> row i: no model, no cache, no per-text dict
    id, dim = "bench-knn", dim

    def encode(self, texts, batch_size=64, max_length=256, progress=True):
        return vec[np.fromiter((int(t[1:]) for t in texts), dtype=np.int64, count=len(texts))]

    def count_tokens(self, text):
        return 1


register_encoder("bench-knn", IndexEncoder())


def part(a, b, split):
    n = b - a
    scores = (rng.random((n, m)) < 0.6).astype(np.float64)
    return RoutingDataset(ids=[f"t{i}" for i in range(a, b)], prompts=[f"t{i}" for i in range(a, b)],
                          categories=["c"] * n, splits=[split] * n, models=[f"m{j}" for j in range(m)],
                          scores=scores, costs=rng.random((n, m)) * 1e-3)


train, val = part(0, n_train, "train"), part(n_train, n_train + n_val, "validation")
test_prompts = [f"t{i}" for i in range(n_train + n_val, total)]
proc = psutil.Process()
base = proc.memory_info().rss
t = time.perf_counter()
r = KNNRouter(encoder="bench-knn").fit(train, val)
fit_s = time.perf_counter() - t
t = time.perf_counter()
choice = r.route(test_prompts, 0.0)
route_s = time.perf_counter() - t
assert len(choice) == n_test
peak = peak_rss()
print(json.dumps({"train": n_train, "test": n_test, "validation": n_val, "dim": dim, "models": m,
                  "k": r.params["k"], "fit_s": fit_s, "route_s": route_s, "peak_mb": (peak - base) / 1e6,
                  "block": [QUERY_BLOCK, TRAIN_BLOCK],
                  "full_matrix_mb": n_test * n_train * 4 / 1e6,
                  "train_vectors_mb": n_train * dim * 4 / 1e6}))
"""


CACHE_CHILD = r"""
import json, os, shutil, sys, tempfile, time
os.environ["BATON_CACHE"] = tempfile.mkdtemp(prefix="bench_knn_cache_")  # never the user's cache
import numpy as np, psutil
from routers import embed


def peak_rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


class Fake(embed._CachedEncoder):  # the cache path of every model encoder, with a free "model"
    id, dim = "bench-knn-cache", int(sys.argv[2])

    def _embed_batch(self, texts, max_length):
        v = np.random.default_rng(len(texts)).standard_normal((len(texts), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


n = int(sys.argv[1])
texts = [f"question number {i} about topic {i % 97}" for i in range(n)]
base = psutil.Process().memory_info().rss
t = time.perf_counter()
x = Fake().encode(texts, batch_size=512, progress=False)
cold = time.perf_counter() - t
warm_enc = Fake()
t = time.perf_counter()
y = warm_enc.encode(texts, progress=False)
warm = time.perf_counter() - t
assert warm_enc.computed == 0 and np.array_equal(x, y)
size = sum(f.stat().st_size for f in __import__("pathlib").Path(os.environ["BATON_CACHE"]).rglob("*") if f.is_file())
shutil.rmtree(os.environ["BATON_CACHE"])
print(json.dumps({"texts": n, "dim": Fake.dim, "cold_s": cold, "warm_s": warm, "peak_mb": (peak_rss() - base) / 1e6,
                  "vectors_mb": x.nbytes / 1e6, "cache_file_mb": size / 1e6}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="training queries")
    ap.add_argument("--test", type=int, default=2000, help="test queries routed per size")
    ap.add_argument("--validation", type=int, default=500, help="validation queries (k is tuned on them)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--cache-sizes", default="10000,100000",
                    help="texts through the embedding cache (cold: embed+write, warm: read); 1M writes ~1.6 GB")
    ap.add_argument("--out", default=str(REPO / "results" / "bench_knn.json"))
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(args.test), str(args.validation),
                              str(args.dim), str(args.models)], capture_output=True, text=True, env=env, cwd=REPO)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["route_queries_per_s"] = r["test"] / r["route_s"]
        r["estimated_route_s_for_1M_test_queries"] = 1_000_000 / r["route_queries_per_s"]
        rows.append(r)
        print(f"train {n:>9,}: fit {r['fit_s']:6.1f}s  route {r['test']:,} queries {r['route_s']:6.2f}s "
              f"({r['route_queries_per_s']:,.0f}/s; 1M would take ~{r['estimated_route_s_for_1M_test_queries'] / 60:.0f} min)  "
              f"peak {r['peak_mb']:6.0f} MB (train vectors {r['train_vectors_mb']:.0f} MB; a full "
              f"{r['test']:,} x {n:,} similarity matrix alone: {r['full_matrix_mb']:,.0f} MB)", flush=True)
    cache_rows = []
    for n in (int(x) for x in args.cache_sizes.split(",") if x):
        out = subprocess.run([sys.executable, "-c", CACHE_CHILD, str(n), str(args.dim)], capture_output=True,
                             text=True, env=env, cwd=REPO)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        cache_rows.append(r)
        print(f"embedding cache {n:>9,} texts: cold (embed + write) {r['cold_s']:6.1f}s  warm (read) {r['warm_s']:6.1f}s "
              f"({n / r['warm_s']:,.0f}/s)  peak {r['peak_mb']:6.0f} MB (vectors {r['vectors_mb']:.0f} MB)  "
              f"file {r['cache_file_mb']:.0f} MB", flush=True)
    result = {"benchmark": "bench_knn", "python": platform.python_version(), "cpus": os.cpu_count(),
              "search": "exact; QUERY_BLOCK x TRAIN_BLOCK similarities at once, top-k lists merged (routers.baselines.knn)",
              "results": rows, "embedding_cache": cache_rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
