"""How often one training call wanders between baton's modules: a call trace of a tiny TRINITY run.

    python scripts/call_trace.py [--json]

Runs a seeded, tiny `trinity.train.train_route` (the packaged 1M-parameter random Llama as
coordinator, 3 sep-CMA-ES generations on a 30-query toy dataset with held-out selection rows,
checkpoint written to a temporary folder) under `sys.setprofile`, keeping only functions defined
in `trinity/` and `routers/`, and reports:
- visits per module: the distinct modules that call into it (caller module -> it), each counted
  once however often a loop repeats the call, plus 1 for the module the run starts in;
- returns: visits - 1 summed over modules (entries into a module already entered before);
- callbacks: distinct call edges (function -> function) into a module that is still on the call
  stack below the caller: an earlier stage called back by a later one (a straight line has none).
The numbers depend only on the code's shape, not on the machine's speed.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PACKAGES = ("trinity", "routers")


def _module(filename: str) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(ROOT)
    except ValueError:
        return None
    if rel.parts[0] not in PACKAGES or rel.suffix != ".py":
        return None
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def trace(fn, *args, **kwargs) -> dict:
    """Run fn(*args, **kwargs) under the profiler; the edges and counts described above."""
    stack: list[tuple[str, str] | None] = []     # (module, function) per Python frame, None outside PACKAGES
    seen: dict[tuple, None] = {}                 # ordered set of cross-module edges
    callbacks: dict[tuple, None] = {}
    start: list[str] = []
    modules: dict[str, str | None] = {}

    def prof(frame, event, arg):
        if event == "call":
            fname = frame.f_code.co_filename
            mod = modules[fname] if fname in modules else modules.setdefault(fname, _module(fname))
            here = None if mod is None else (mod, frame.f_code.co_qualname)
            if here is not None:
                caller = next((s for s in reversed(stack) if s is not None), None)
                if caller is None:
                    if not start:
                        start.append(mod)
                elif caller[0] != mod:
                    edge = (caller, here)
                    if edge not in seen:
                        seen[edge] = None
                        if any(s is not None and s[0] == mod for s in stack):
                            callbacks[edge] = None
            stack.append(here)
        elif event == "return" and stack:
            stack.pop()

    old = sys.getprofile()
    sys.setprofile(prof)
    try:
        fn(*args, **kwargs)
    finally:
        sys.setprofile(old)
    pairs = dict.fromkeys((caller[0], callee[0]) for caller, callee in seen)   # module -> module, ordered
    visits = Counter(callee for _, callee in pairs)
    if start:
        visits[start[0]] += 1
    return {"modules": len(visits), "returns": sum(v - 1 for v in visits.values()),
            "callbacks": len(callbacks), "visits": dict(visits.most_common()),
            "callback_edges": [f"{a[0]}.{a[1]} -> {b[0]}.{b[1]}" for a, b in callbacks],
            "module_edges": [f"{a} -> {b}" for a, b in pairs],
            "edges": [f"{a[0]}.{a[1]} -> {b[0]}.{b[1]}" for a, b in seen]}


def toy_dataset(n: int = 30):
    """Two workers: 'math' solves arithmetic, 'words' the rest (the tests' toy data)."""
    import numpy as np

    from routers.data.schema import RoutingDataset
    prompts = [f"compute {i} plus {i + 3}" if i % 2 else f"define the word {['apple', 'river', 'cloud'][i % 3]}"
               for i in range(n)]
    scores = np.array([[1.0, 0.0] if i % 2 else [0.0, 1.0] for i in range(n)])
    return RoutingDataset(ids=[str(i) for i in range(n)], prompts=prompts, categories=["x"] * n,
                          splits=["train"] * (n - 8) + ["test"] * 8, models=["math", "words"],
                          scores=scores, costs=np.tile([2e-3, 1e-3], (n, 1)))


def tiny_route_run(out: Path):
    """The traced call: one seeded `train_route` on the toy data, checkpoint written."""
    from trinity.config import TrinityConfig, apply_overrides
    from trinity.coordinator import Coordinator
    from trinity.train import train_route
    cfg = apply_overrides(TrinityConfig(), ["head.roles=false", "train.wandb=false", "train.iterations=3",
                                            "train.popsize=6", "train.repeats=2", "train.sigma0=0.1",
                                            "data.validation_fraction=0.25"])
    coordinator = Coordinator("tiny", max_tokens=24, disk_cache=False)
    ds = toy_dataset()
    train, test = ds.split("train"), ds.split("test")
    return lambda: train_route(cfg, train, test, out=out, coordinator=coordinator)


def main(argv: list[str]) -> int:
    import os
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="baton-trace-") as tmp:
        run = tiny_route_run(Path(tmp) / "ck")
        report = trace(run)
    if "--json" in argv:
        print(json.dumps(report, indent=1))
        return 0
    print(f"train_route: {report['modules']} modules, {report['returns']} returns to a module already left, "
          f"{report['callbacks']} callbacks into a module still on the stack")
    print("visits: " + ", ".join(f"{m} {v}" for m, v in report["visits"].items()))
    for e in report["callback_edges"]:
        print("callback:", e)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
