"""The Conductor's ablation rows: train each config and report its held-out evaluation.

    rows = run_ablation(["configs/conductor/demo.yaml", "configs/conductor/ablate_no_subtasks.yaml"],
                        out="outputs/ablate")

Each row: {"name", "config", "accuracy", "mean_reward", "parse_rate", "mean_steps", "worker_cost",
"orchestration_input_tokens", "orchestration_output_tokens", "eval_before_accuracy", "checkpoint"}.
Configs may be paths or `(path, overrides)` pairs; scripts/ablate.py collects the rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conductor.config import load_config
from conductor.train import train


def run_ablation(configs: list, out: str | Path, *, progress: bool = True) -> list[dict[str, Any]]:
    out = Path(out)
    rows = []
    for spec in configs:
        path, overrides = (spec, []) if isinstance(spec, (str, Path)) else (spec[0], list(spec[1]))
        cfg = load_config(path, overrides)
        ckpt = out / cfg.name
        s = train(cfg, ckpt, progress=progress)
        after, before = s.get("eval_after", {}), s.get("eval_before", {})
        rows.append({"name": cfg.name, "config": str(path), "overrides": overrides,
                     **{k: after.get(k) for k in ("accuracy", "mean_reward", "parse_rate", "mean_steps",
                                                  "worker_cost", "orchestration_input_tokens",
                                                  "orchestration_output_tokens")},
                     "eval_before_accuracy": before.get("accuracy"), "checkpoint": str(ckpt)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "conductor_ablation.json").write_text(json.dumps(rows, indent=2))
    return rows
