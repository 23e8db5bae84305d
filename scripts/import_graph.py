"""Print the import graph of baton's packages (module-level AND function-level imports) and any cycles.

    python scripts/import_graph.py [--edges] [packages...]     # default: routers trinity conductor baton

An edge A -> B means module A imports module B somewhere (a function-level import is marked `(fn)`;
imports under `if TYPE_CHECKING:` never run and are left out);
a cycle is a strongly connected component of more than one module. Exit status 1 when a cycle exists.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph(packages: list[str]) -> dict[str, dict[str, bool]]:
    """{module: {imported module: True if only imported inside a function}}."""
    files = {module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    edges: dict[str, dict[str, bool]] = {m: {} for m in files}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"
        fn_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(f)}
        typing_only = {id(n) for f in ast.walk(tree) if isinstance(f, ast.If) and "TYPE_CHECKING" in ast.unparse(f.test)
                       for n in ast.walk(f)}   # `if TYPE_CHECKING:` imports never run
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in files:       # `from x import name` -> module x
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    fn = id(node) in fn_nodes
                    edges[mod][t] = edges[mod].get(t, True) and fn
    return edges


def cycles(edges: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components of size > 1 (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    show = "--edges" in argv
    packages = [a for a in argv if not a.startswith("--")] or ["routers", "trinity", "conductor", "baton"]
    edges = graph(packages)
    if show:
        for m in sorted(edges):
            for t, fn in sorted(edges[m].items()):
                print(f"{m} -> {t}{' (fn)' if fn else ''}")
    found = cycles(edges)
    n_edges = sum(len(e) for e in edges.values())
    print(f"{len(edges)} modules, {n_edges} import edges, {len(found)} cycle(s)")
    for c in found:
        inner = [f"{a} -> {b}{' (fn)' if edges[a][b] else ''}" for a in c for b in edges[a] if b in c]
        print("cycle:", ", ".join(inner))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
