"""configs/trinity/hard.yaml end to end at test size (tiny coordinator, a few generations): scripts/ablate.py
trains base and an ablation on the hard task set over the hard simulated pool, re-runs each held-out
episode from the checkpoint, and reports per-question intervals and a paired p-value."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ablate():
    spec = importlib.util.spec_from_file_location("ablate", REPO / "scripts" / "ablate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hard_config_trains_and_ablation_rows_get_intervals_from_held_out_episodes(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    assert _ablate().main([
        "--base", str(REPO / "configs/trinity/hard.yaml"), "--out", str(out), "--seeds", "0,1",
        "--set", "coordinator.model=tiny", "coordinator.max_tokens=32", "data.train=mmlu:6,gsm8k:6,gpqa:6,humaneval:6,aime:6",
        "data.validation_fraction=0.5", "train.iterations=2", "train.popsize=4", "train.batch_size=8",
        "--", str(REPO / "configs/trinity/ablations/no_thinker.yaml")]) == 0
    table = json.loads((out / "ablations.json").read_text())
    base, no_thinker, ref = table["rows"]
    assert [base["ablation"], no_thinker["ablation"]] == ["base", "no_thinker"]
    for row in (base, no_thinker):
        assert [r["seed"] for r in row["runs"]] == [0, 1]
        for run in row["runs"]:
            assert len(run["test_scores"]) == 15 == len(run["test_ids"])            # held-out episodes, graded
            assert sum(run["test_scores"]) / 15 == run["test_accuracy"]
        assert row["test_pooled_n"] == 30
        lo, hi = row["test_ci95"]
        assert lo <= row["test_pooled_accuracy"] <= hi
        assert abs(sum(row["test_role_share"].values()) - 1) < 1e-9
    assert {i.split("/")[0] for r in base["runs"] for i in r["test_ids"]} == {"mmlu", "gsm8k", "gpqa", "humaneval", "aime"}
    assert no_thinker["test_role_share"]["thinker"] == 0.0                    # the ablation took effect
    assert 0.0 <= no_thinker["p_vs_base"] <= 1.0 and "p_vs_base" not in base
    assert (out / "base" / "seed1" / "router.safetensors").is_file()
    # the coordinator-free reference: one script per seed, chosen on that seed's training questions,
    # scored on the same held-out questions (paired with base)
    assert ref["ablation"] == "best fixed script" and len(ref["scripts"]) == 2 and 0.0 <= ref["p_vs_base"] <= 1.0
    assert [r["test_ids"] for r in ref["runs"]] == [r["test_ids"] for r in base["runs"]]
    assert all(r["train_accuracy"] >= 0 and len(r["test_scores"]) == 15 for r in ref["runs"])
    # re-rendering adds the reference to a finished table without retraining, and keeps one of it
    assert _ablate().main(["x", "--base", str(REPO / "configs/trinity/hard.yaml"), "--out", str(out), "--seeds", "0,1",
                           "--set", "coordinator.model=tiny", "coordinator.max_tokens=32",
                           "data.train=mmlu:6,gsm8k:6,gpqa:6,humaneval:6,aime:6", "data.validation_fraction=0.5",
                           "--references-only"]) == 0
    again = json.loads((out / "ablations.json").read_text())
    assert [r["ablation"] for r in again["rows"]] == ["base", "no_thinker", "best fixed script"]
    assert again["rows"][2]["runs"][0]["test_scores"] == ref["runs"][0]["test_scores"]
    md = (out / "ablations.md").read_text()
    assert "test acc pooled [95% CI]" in md and "p vs base" in md and "| no_thinker |" in md
