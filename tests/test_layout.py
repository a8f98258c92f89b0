"""The shape holds: layers that import only downwards, one MLflow importer, no TensorFlow where a
command promises none, and no import cycle.

Every test reads the source (every import, lazy ones inside functions included; only imports
under `if TYPE_CHECKING:` are names for type hints, not dependencies), so a shortcut taken in a
hurry fails here instead of in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sweep"

# The layers, lowest first: a package may import its own modules and those of the layers below.
LAYERS = (
    ("core",),  # errors and exit codes, masking, the terminal, Ctrl-C, objects, processes, SQLite
    ("train",),  # data, model builders, the compiled loop, plots: no config, no MLflow
    ("config",),  # checks before TensorFlow or MLflow loads; builds the data once (numpy)
    ("tracking",),  # the MLflow adapter
    ("run",),  # one tracked run: config -> data -> model -> training -> record
    ("study",),  # the Optuna study, its workers, summary and registry
    ("replay",),  # rerun and robust, from a run's record
    ("serve",),  # report, ui, server, dashboard
    ("api",),  # the Python API
    ("launch",),  # engines (Ray) that run the API's worker as their tasks; the CLI starts them
    ("cli", "__main__"),  # the command line over the API
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("sweep", *parts)).removesuffix(".__init__")


def _type_only(tree: ast.Module) -> set[int]:
    """Line numbers of the imports under `if TYPE_CHECKING:`."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for inner in node.body:
                lines.add(inner.lineno)
    return lines


def imports(path: Path) -> set[str]:
    """Every module an import statement in the file names (`from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text())
    skip = _type_only(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


MODULES = {module_name(p): imports(p) for p in SRC.rglob("*.py")}


def layer(module: str) -> str | None:
    """`sweep.study.worker` -> `study`; the package root (`sweep`) is no layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def breaches(modules: dict[str, set[str]]) -> list[str]:
    """Each import of a sweep module in a higher layer, as `importer -> imported`."""
    found = []
    for module, names in modules.items():
        mine = layer(module)
        for name in names:
            theirs = layer(name) if name.startswith("sweep.") else None
            if mine and theirs in RANK and theirs != mine and RANK[theirs] > RANK[mine]:
                found.append(f"{module} -> {name}")
    return sorted(found)


def test_every_package_and_top_module_has_a_layer():
    assert {layer(m) for m in MODULES} - {None} <= set(RANK)


def test_layers_import_only_downwards():
    assert breaches(MODULES) == []


def test_a_breach_is_found():
    assert breaches({"sweep.core.console": {"sweep.train.loop"}}) == [
        "sweep.core.console -> sweep.train.loop"
    ]


def test_type_only_imports_are_not_dependencies(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nimport b\n"
    )
    assert imports(source) == {"typing", "typing.TYPE_CHECKING", "b"}


def test_only_the_tracking_package_imports_mlflow():
    outside = sorted(
        m
        for m, names in MODULES.items()
        if not m.startswith("sweep.tracking")
        and any(n == "mlflow" or n.startswith("mlflow.") for n in names)
    )
    assert outside == []


@pytest.mark.parametrize("package", ["sweep.config", "sweep.core"])
def test_config_checks_and_core_never_import_tensorflow_or_mlflow(package: str):
    """What runs before a command knows its input is good stays light (core.sqlite's SQLAlchemy is
    imported inside the function that needs it)."""
    heavy = ("tensorflow", "keras", "mlflow", "sweep.train.backend", "sweep.train.loop")
    found = sorted(
        f"{m} -> {n}"
        for m, names in MODULES.items()
        if m.startswith(package)
        for n in names
        if n.startswith(heavy)
    )
    assert found == []


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
    # a package's __init__ that re-exports its own modules: importing it is importing them
    for package in ("sweep.tracking",):
        graph[package] = {m for m in graph[package] if m.startswith(package)}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
