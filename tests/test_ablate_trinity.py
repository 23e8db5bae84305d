"""scripts/ablate.py on a single-turn base: one row per ablation, each run under several seeds,
with train / validation / test columns (mean ± sd) and rows that cannot run listed with a reason."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_ablation_table_with_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    topics = ["add the numbers", "spell the word", "name the capital"]
    def rows(n):
        out = []
        for i in range(n):
            k = i % 3
            out.append({"question": f"{topics[k]} {rng.integers(1000)}",
                        "scores": {m: float(j == k or rng.random() < 0.2) for j, m in enumerate(["a", "b", "c"])}})
        return out
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(rows(60)))
    (data / "test.json").write_text(json.dumps(rows(15)))
    spec = importlib.util.spec_from_file_location("ablate", REPO / "scripts" / "ablate.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    out = tmp_path / "abl"
    abl = REPO / "configs" / "trinity" / "ablations"
    assert ab.main(["--base", str(REPO / "configs/trinity/route.yaml"), "--train", str(data), "--out", str(out),
                    "--seeds", "0,1", "--set", "coordinator.model=tiny", "train.iterations=3", "train.popsize=6",
                    "train.wandb=false", "--", str(abl / "head_lowrank.yaml"), str(abl / "opt_random_search.yaml"),
                    str(abl / "head_blockdiag10.yaml")]) == 0
    table = json.loads((out / "ablations.json").read_text())
    assert table["seeds"] == [0, 1]
    names = [r["ablation"] for r in table["rows"]]
    assert names == ["base", "head_lowrank", "opt_random_search", "head_blockdiag10"]
    base = table["rows"][0]
    assert [r["seed"] for r in base["runs"]] == [0, 1] and base["seeds"] == [0, 1]
    accs = [r["test_accuracy"] for r in base["runs"]]
    assert base["test_accuracy"] == np.mean(accs) and base["test_accuracy_sd"] == np.std(accs, ddof=1)
    assert all(r["validation_accuracy"] is not None for r in base["runs"])     # route.yaml holds out 10%
    assert (out / "base" / "seed1" / "router.safetensors").is_file()
    assert "skipped" in table["rows"][3] and "blocks" in table["rows"][3]["skipped"]
    md = (out / "ablations.md").read_text()
    assert "Seeds 0, 1: mean ± standard deviation." in md and "validation acc" in md and " ± " in md
    assert (out / "ablations.png").is_file()
