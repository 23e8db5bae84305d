"""One direction for every import: no cycles among baton's modules (function-level imports count),
and `routers/` reaches `trinity/` and `conductor/` only through the registry (by name, never imported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _graph_module():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_cycles():
    g = _graph_module()
    edges = g.graph(["routers", "trinity", "conductor", "baton"])
    assert len(edges) > 100                      # it read the tree
    assert g.cycles(edges) == []


def test_routers_never_imports_the_trainers():
    g = _graph_module()
    edges = g.graph(["routers", "trinity", "conductor", "baton"])
    bad = [(a, b) for a, out in edges.items() if a.startswith("routers")
           for b in out if b.split(".")[0] in ("trinity", "conductor")]
    assert not bad, bad
