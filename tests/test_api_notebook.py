"""notebooks/python_api.ipynb runs top to bottom in a Jupyter kernel (a running event loop, so
`answer` takes its helper-thread path), with the tiny coordinator."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "python_api.ipynb"


@pytest.mark.slow
def test_python_api_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_NOTEBOOK_QUICK", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "kNN accuracy" in text and "library_name: baton" in text and "'gpt-4o'" in text
    assert (tmp_path / "runs" / "t1" / "router.safetensors").is_file()
