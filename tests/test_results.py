"""Every number the README states comes from results/: its generated block is exactly what
`scripts/make_results.py` renders from the committed JSON, and no result-like number sits outside it."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _make_results():
    return load_script("make_results")


def test_readme_block_is_rendered_from_committed_results():
    mr = _make_results()
    readme = (REPO / "README.md").read_text()
    assert mr.readme_block(readme) == mr.render(), "README results block is stale: run make results"
    assert (REPO / "results" / "summary.md").read_text() == mr.render()


def test_no_result_numbers_outside_the_generated_block():
    mr = _make_results()
    readme = (REPO / "README.md").read_text()
    outside = readme.split(mr.BEGIN)[0] + readme.split(mr.END)[1]
    # accuracies/AIQ/p-values (0.563), dollar figures, latencies and throughputs are results
    stray = re.findall(r"(?<![\w.])[01]\.\d{3}(?![\w.])|\$\d|\d+(?:\.\d+)?\s?ms\b|\d[\d,]*\s?tokens/s", outside)
    assert not stray, f"numbers outside the generated results block (put them in results/): {stray[:10]}"


def test_render_marks_skipped_suites_instead_of_inventing_numbers():
    mr = _make_results()
    lines = mr.render_suite({"suite": "x", "label": "X", "skipped": "data absent"})
    assert "skipped" in lines[0] and not re.search(r"\d\.\d", lines[0])


def test_conductor_table_renders_every_row_and_its_reference():
    mr = _make_results()
    row = {"ablation": "no_subtasks", "policy": "best", "pool": "p", "accuracy": 0.5, "accuracy_ci": [0.4, 0.6],
           "cost": 0.001, "turns": 1.5, "p_vs": "full", "p": 0.04}
    c = {"n_test": 10, "pool": "p", "note": "n", "command": "c", "seconds": 1.0, "ablations": {"no_subtasks": "x"},
         "not_measured": {"no_few_shot": "needs a policy"}, "configs": "k", "selected": {},
         "rows": {"full": {**row, "ablation": "full", "p_vs": "full", "p": 1.0}, "no_subtasks": row,
                  "best-single": {**row, "ablation": None, "policy": "baseline", "pool": "q", "turns": None}}}
    text = "\n".join(mr.render_conductor(c))
    assert "| no_subtasks | best | 0.500 [0.400, 0.600] | 0.001 | 1.50 | 0.040 (full) |" in text
    assert "| full | best | 0.500 [0.400, 0.600] | 0.001 | 1.50 | - |" in text       # no p against itself
    assert "| best-single (`q`) | baseline |" in text and "needs a policy" in text


def test_feature_table_chose_on_validation_and_is_in_the_readme_block():
    import json
    f = REPO / "results" / "features_llmrouter.json"
    if not f.is_file() or not (REPO / "results" / "trinity_suites.json").is_file():
        return  # the trinity stage has not run (no team data): nothing rendered, nothing to check
    r = json.loads(f.read_text())
    if "skipped" in r:
        assert "TRINITY features" in _make_results().render() and "Skipped" in _make_results().render()
        return
    best = max(r["rows"], key=lambda row: row["validation_accuracy"])
    assert r["chosen"] == best["variant"] and [row["variant"] for row in r["rows"] if row["chosen"]] == [r["chosen"]]
    servable = [row for row in r["rows"] if "+" not in row["variant"]]   # what a checkpoint can serve
    assert r["chosen_servable"] == max(servable, key=lambda row: row["validation_accuracy"])["variant"]
    for row in r["rows"]:   # each row's validation figure is its seeds' mean
        vals = [run["validation_accuracy"] for run in row["runs"]]
        assert abs(row["validation_accuracy"] - sum(vals) / len(vals)) < 1e-12 and len(vals) == len(r["seeds"])
    text = _make_results().render()
    assert f"**{r['chosen']}** (chosen)" in text and "Chosen on validation" in text
