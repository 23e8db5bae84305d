"""One direction for every import: no cycles among baton's modules (function-level imports count),
and `routers/` reaches `trinity/` and `conductor/` only through the registry (by name, never imported)."""

from __future__ import annotations

from pathlib import Path

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _graph_module():
    return load_script("import_graph")


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
