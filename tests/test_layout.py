"""The shape holds: only the MLflow adapter imports mlflow, and no module imports its way back.

Both read the source (every import, lazy ones inside functions included), so a shortcut taken in
a hurry fails here instead of in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sweep"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("sweep", *parts)).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Every module an import statement in the file names (`from a import b` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


MODULES = {module_name(p): imports(p) for p in SRC.rglob("*.py")}


def test_only_the_tracking_package_imports_mlflow():
    outside = sorted(
        m
        for m, names in MODULES.items()
        if not m.startswith("sweep.tracking")
        and any(n == "mlflow" or n.startswith("mlflow.") for n in names)
    )
    assert outside == []


def sweep_graph() -> dict[str, set[str]]:
    """module -> the sweep modules it imports (a package's __init__ that only re-exports its
    own submodules counts as the package)."""
    return {m: {n for n in names if n in MODULES and n != m} for m, names in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = sweep_graph()
    # the adapter's __init__ re-exports its own modules; importing it is importing them
    graph["sweep.tracking"] = {m for m in graph["sweep.tracking"] if m.startswith("sweep.tracking")}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
