"""scripts/trinity_suite.py: TRINITY on a routing file nobody has seen, by the suite rule (features
chosen on validation, a frontier checkpoint, the evaluator's table beside every baseline), for the
two outside formats the issue names: RouterBench (costs per query in the file) and
`{question, scores}` JSON (continuous scores, extra columns, costs from a price table)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import load_script

MODELS = ["cheap-math", "cheap-history", "dear-all"]


def _rows(n: int = 160):
    """Two topics; each cheap model is right on its own topic, the dear one on both (and costs 50x)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        topic = "math" if i % 2 else "history"
        q = (f"Compute {i} plus {3 * i} and give the number." if topic == "math"
             else f"In which century did event number {i} of the old kingdom happen?")
        acc = {"cheap-math": 0.9 if topic == "math" else 0.1, "cheap-history": 0.9 if topic == "history" else 0.1,
               "dear-all": 0.8}
        scores = {m: float(rng.random() < p) for m, p in acc.items()}
        rows.append((i, topic, q, scores))
    return rows


def _routerbench(path):
    recs = []
    for i, topic, q, scores in _rows():
        r = {"sample_id": f"{topic}.{i}", "prompt": q, "eval_name": topic, "oracle_model_to_route_to": "x"}
        for m in MODELS:
            r[m] = scores[m]
            r[m + "|model_response"] = "answer"
            r[m + "|total_cost"] = 5e-3 if m == "dear-all" else 1e-4
        recs.append(r)
    pd.DataFrame(recs).to_csv(path)  # pandas writes its index as an unnamed first column, as publishers do
    return str(path), None


def _scores_json(path):
    rows = [{"question": q, "scores": {m: s * 0.9 + 0.05 for m, s in sc.items()}, "category": topic, "source": "gen"}
            for i, topic, q, sc in _rows()]
    path.write_text(json.dumps(rows))
    prices = path.with_name("prices.json")
    prices.write_text(json.dumps({m: {"input_per_mtok": 20.0 if m == "dear-all" else 0.4, "output_per_mtok":
                                      40.0 if m == "dear-all" else 0.8} for m in MODELS}))
    return str(path), str(prices)


@pytest.mark.parametrize("make", [_routerbench, _scores_json], ids=["routerbench", "question-scores"])
def test_an_unseen_routing_file_gets_the_suite_treatment(tmp_path, monkeypatch, make):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    suite = load_script("trinity_suite")
    data, prices = make(tmp_path / ("bench.csv" if make is _routerbench else "scores.json"))
    fast = ["coordinator.model=tiny", "coordinator.max_tokens=32", "train.iterations=6", "train.popsize=8"]
    res = suite.run(data, prices, tmp_path / "out", seeds="0", variants="smollm2,smollm2-mean,smollm2+minilm",
                    overrides=fast)
    feats = json.loads((tmp_path / "out" / "features.json").read_text())
    # the feature choice: made on validation among servable variants, test read after it
    servable = [r for r in feats["rows"] if r["variant"] != "smollm2+minilm"]
    assert feats["chosen_servable"] == max(servable, key=lambda r: r["validation_accuracy"])["variant"]
    assert res["trinity"]["features"] == feats["chosen_servable"]
    # the checkpoint is a frontier and the evaluator swept it beside every baseline
    cfg = json.loads((tmp_path / "out" / "checkpoint" / "config.json").read_text())
    assert len(cfg["frontier"]["lams"]) >= 2
    t = res["routers"]["trinity"]
    assert t["kind"] == "recorded" and t["aiq"] is not None and 0 <= t["accuracy"] <= 1
    assert {"knn", "mlp", "best-single"} <= set(res["routers"])
    row = suite.summary_row(res)
    assert row["features"] == feats["chosen_servable"] and row["best_baseline"] != "trinity"
    assert row["aiq_highest"] == (row["best_aiq_router"] == "trinity")
    assert (tmp_path / "out" / "suite.json").is_file()
