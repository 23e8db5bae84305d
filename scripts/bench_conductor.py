"""Conductor speed figures, written as JSON (medians and ratios from one run).

1. Executor overhead: a one-step workflow through `conductor.executor.execute` against calling the
   same worker directly (toy pool, no latency, so the ratio is pure bookkeeping), and the
   per-step time of a 3-step chain.
2. GRPO steps per second on CPU with the tiny random Llama (batch 2 prompts x 4 generations,
   16 new tokens), after one warm-up step.

    python scripts/bench_conductor.py --out outputs/bench/conductor.json [--grpo-steps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from conductor.executor import execute
from conductor.toy import ToyPool, ToyTask
from conductor.workflow import Workflow
from routers.serving_router import pool_call


async def _executor_bench(reps: int) -> dict:
    pool = ToyPool()
    items = ToyTask().load(limit=30)
    pool.register(items)
    call = pool_call(pool)
    msgs = [{"role": "user", "content": "Question:\n" + items[0].prompt}]
    one = Workflow(["gamma"], ["Answer."], [[]])
    chain = Workflow(["alpha", "beta", "gamma"], ["a", "b", "c"], [[], [0], "all"])
    direct, wrapped, chained = [], [], []
    for r in range(reps):
        it = items[r % len(items)]
        t = time.perf_counter()
        await call(["gamma"], msgs, {"item_id": it.id})
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        await execute(one, it.prompt, call, item_id=it.id)
        wrapped.append(time.perf_counter() - t)
        t = time.perf_counter()
        await execute(chain, it.prompt, call, item_id=it.id)
        chained.append((time.perf_counter() - t) / 3)
    d, w, c = (statistics.median(x) for x in (direct, wrapped, chained))
    return {"reps": reps, "direct_call_median_us": d * 1e6, "execute_one_step_median_us": w * 1e6,
            "overhead_ratio_one_step": w / d, "chain3_per_step_median_us": c * 1e6,
            "overhead_per_step_us": (w - d) * 1e6}


def _grpo_bench(steps: int, threads: int) -> dict:
    import torch

    from conductor.config import load_config
    from conductor.env import ConductorEnv
    from conductor.train import build_trainer, split_items

    cfg = load_config(None, ["policy.model=tiny", "grpo.max_completion_length=16", f"grpo.max_steps={steps + 1}",
                             "train.prompts_per_step=2", "grpo.num_generations=4", "train.wandb=false",
                             "grpo.save_steps=1000", "data.train_limit=16", "data.eval_limit=0"])
    torch.set_num_threads(threads)
    env = ConductorEnv.from_config(cfg)
    train_items, _ = split_items(env)
    times: list[float] = []
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trainer(cfg, Path(tmp), env, train_items)
        trainer.add_callback(Clock())
        trainer.train()
    per = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {"steps_timed": len(times) - 1, "median_step_s": per, "steps_per_s": 1.0 / per,
            "batch": "2 prompts x 4 generations, 16 new tokens", "torch_threads": threads}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/bench/conductor.json")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--grpo-steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a crowded CPU)")
    a = ap.parse_args()
    res = {"executor": asyncio.run(_executor_bench(a.reps)), "grpo_tiny_cpu": _grpo_bench(a.grpo_steps, a.threads),
           "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
