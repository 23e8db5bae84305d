"""`baton demo`: the main job on the embedded default, with no files needed.

Runs TRINITY end to end (SmolLM2 coordinator, the calibrated simulated pool over packaged MMLU and
GSM8K questions): trains, compares against the foundation baselines, writes the checkpoint.
The TRINITY code is reached through the registry's module path, like every trained router.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

DEMO_TARGET = "trinity.demo:run_demo"


def main(args) -> int:
    mod, fn = DEMO_TARGET.split(":")
    run_demo = getattr(importlib.import_module(mod), fn)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run_demo(str(out), quick=bool(getattr(args, "quick", False)))
    (out / "demo_result.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\ndemo finished; results in {out}/")
    return 0
