"""TRINITY speed figures, as JSON (medians of repeated runs, one process):

- head-only sep-CMA-ES: one generation (ask, fitness of the whole population, tell) of 32
  candidates x 5,000 single-turn queries on cached features (target: under 2 s on the 2-core CPU);
  also fitness evaluations (candidate x query) per second;
- coordinator prefill tokens per second (batched feature passes, cache disabled).

    python scripts/bench_trinity.py --out outputs/bench_trinity.json [--coordinator smollm2|tiny]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def bench_head(n_queries: int, popsize: int, d: int, n_workers: int, repeats: int, sampling: str, reps: int) -> dict:
    from trinity.config import TrainConfig
    from trinity.fitness import SelectionObjective
    from trinity.heads import make_head
    from trinity.optimizers import optimize
    rng = np.random.default_rng(0)
    F = rng.standard_normal((n_queries, d)).astype(np.float32)
    S = (rng.random((n_queries, n_workers)) < 0.5).astype(float)
    head = make_head("selection", n_workers, d)
    obj = SelectionObjective(head, F, S, [f"w{j}" for j in range(n_workers)], repeats=repeats, sampling=sampling)
    cfg = TrainConfig(iterations=reps + 1, popsize=popsize, wandb=False)
    times = []
    optimize(obj, cfg, on_generation=lambda row: times.append(row["seconds"]))
    gen = statistics.median(times[1:])  # the first generation pays one-off allocation
    return {"queries": n_queries, "popsize": popsize, "d": d, "workers": n_workers, "repeats": repeats,
            "sampling": sampling, "generation_s_median": gen,
            "fitness_evals_per_s": popsize * n_queries / gen, "under_2s": gen < 2.0}


def bench_coordinator(model: str, n_texts: int, max_tokens: int, batch_size: int) -> dict:
    from trinity.coordinator import Coordinator
    t0 = time.perf_counter()
    coord = Coordinator(model, max_tokens=max_tokens, batch_size=batch_size, disk_cache=False)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    words = "route the question to the best model given cost and accuracy of each worker".split()
    texts = [f"user: {i} " + " ".join(rng.choice(words, 200)) for i in range(n_texts)]
    ntok = sum(coord.count_tokens(texts))
    t0 = time.perf_counter()
    coord.features(texts)
    s = time.perf_counter() - t0
    return {"model": model, "texts": n_texts, "tokens": ntok, "max_tokens": max_tokens, "batch_size": batch_size,
            "load_s": load_s, "seconds": s, "tokens_per_s": ntok / s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench_trinity.json")
    p.add_argument("--coordinator", default="smollm2")
    p.add_argument("--texts", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    import torch
    res = {"machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                       "cuda": torch.cuda.is_available()},
           "head_only": [bench_head(5000, 32, 576, 9, 1, "expected", a.reps),
                         bench_head(5000, 32, 576, 9, 16, "sample", a.reps)],
           "coordinator": bench_coordinator(a.coordinator, a.texts, 128, 16)}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
