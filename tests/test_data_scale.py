"""Loading cost grows linearly with rows (issue 15, defect 3: a per-row `[None] * i` made it quadratic)."""

from __future__ import annotations

import json
import time

import pytest

from routers.data import load_dataset

MODELS = [f"model-{j}" for j in range(9)]


def _scores_json(path, n):
    items = [{"question": f"q{i}", "scores": {m: (i + j) % 2 for j, m in enumerate(MODELS)}} for i in range(n)]
    path.write_text(json.dumps(items))


def _native_jsonl(path, n):
    with open(path, "w") as f:
        for i in range(n):
            res = {m: {"score": (i + j) % 2, "cost": 0.001} for j, m in enumerate(MODELS)}
            f.write(json.dumps({"id": f"q{i}", "prompt": f"q{i}", "split": "test", "results": res}) + "\n")


def _best_time(path, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        load_dataset(str(path))
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("write, suffix", [(_scores_json, ".json"), (_native_jsonl, ".jsonl")],
                         ids=["scores_json", "native_jsonl"])
def test_load_time_grows_linearly(tmp_path, write, suffix):
    """16x the rows must cost well under 16^2 = 256x the time; linear is ~16x (allow 2.5x for noise and GC)."""
    small, big = tmp_path / f"small{suffix}", tmp_path / f"big{suffix}"
    write(small, 1000)
    write(big, 16000)
    t_small, t_big = _best_time(small), _best_time(big, repeats=2)
    assert len(load_dataset(str(big))) == 16000
    assert t_big / t_small < 40, f"1k rows {t_small:.3f}s, 16k rows {t_big:.3f}s: ratio {t_big / t_small:.1f}"
