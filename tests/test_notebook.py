"""The evaluation notebook runs top to bottom on a JSON that evaluate() wrote from synthetic data."""

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from routers.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from test_evaluate import CategoryRouter, ConstantRouter, synthetic  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "routing_eval.ipynb"


def test_routing_eval_notebook_executes(tmp_path, monkeypatch):
    ds = synthetic(n=90)
    res = evaluate({"category": CategoryRouter(), "constant": ConstantRouter()}, ds.split("train"),
                   ds.split("test"), n_boot=50)
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(res))
    monkeypatch.setenv("BATON_EVAL_JSON", str(path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # env is inherited
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "synthetic, 30 test queries" in outputs
    assert "category" in outputs and "best_single (dear)" in outputs
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in nb.cells for o in c.get("outputs", []))
