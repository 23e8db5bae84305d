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
