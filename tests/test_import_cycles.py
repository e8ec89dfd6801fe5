"""No module of the app imports one that imports it back, at any depth, lazy imports (inside functions) included;
nor does a package (``app.auth``, ``app.documents``...) import one that imports it back.

Imports are read from the source with ``ast``, so an import inside a function counts as much as one at the top.
``from package import module`` is an import of that module. Importing ``a.b.c`` also runs the ``__init__`` of ``a``
and ``a.b``: those count too, except the importer's own parent packages, which Python has already begun to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from app.ask.parsing import AST_LOCK
from tests.conftest import ROOT

PACKAGE = "app"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules() -> dict[str, Path]:
    """Every module of the app by its dotted name (a package by its own name, for its ``__init__``)."""
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    files = app_modules()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        with AST_LOCK:  # an index job another test started may still be parsing in its thread
            tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                while target and target not in files:  # import a.b.c of a module a.b: the module a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                own_parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
                parts = target.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in files and parent not in own_parents and parent != name:
                        graph[name].add(parent)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_detector_finds_a_cycle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_reads_lazy_and_relative_imports():
    graph = import_graph()
    assert "app.api" in graph["app.api.routes"]  # from app.api import bp
    assert "app.ask.indexdb" in graph["app.ask.index"]  # from app.ask import indexdb
    assert "app.ask" not in graph["app.ask.index"]  # its own package: already being run
    assert {"app.ask", "app.ask.workspaces"} <= graph["app.cli"]  # lazy, in a function; app.ask runs first


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between packages: at each level, each subpackage or module of a package is one node.

    ``app.auth.hook`` importing ``app.services`` is ``app.auth`` -> ``app.services``; ``app.ask.overview.x``
    importing ``app.ask.engine`` is ``app.ask.overview`` -> ``app.ask.engine``. A package and what is inside it
    are never two nodes of one level, so a package's own ``__init__`` is no circle.
    """
    packages: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = source.split("."), target.split(".")
            common = 0
            while common < min(len(a), len(b)) and a[common] == b[common]:
                common += 1
            if common < len(a) and common < len(b):  # neither is inside the other
                unit_a, unit_b = ".".join(a[: common + 1]), ".".join(b[: common + 1])
                packages.setdefault(unit_a, set()).add(unit_b)
                packages.setdefault(unit_b, set())
    return packages


def test_the_package_graph_sees_a_circle_between_packages():
    graph = {"app.a.x": {"app.b"}, "app.b": {"app.a.y"}, "app.a.y": {"app.a"}}
    assert package_graph(graph) == {"app.a": {"app.b"}, "app.b": {"app.a"}}
    assert cycles(package_graph(graph)) == [["app.a", "app.b"]]


def test_no_import_cycles_between_packages():
    """A module of one package never imports a package that imports the first one back (at any depth)."""
    assert cycles(package_graph(import_graph())) == []


def _imports_between(graph: dict[str, set[str]], source: str, target: str) -> list[tuple[str, str]]:
    inside = lambda module, package: module == package or module.startswith(package + ".")  # noqa: E731
    return sorted((a, b) for a, bs in graph.items() if inside(a, source) for b in bs if inside(b, target))


def test_the_api_guard_and_the_api_and_the_pages_stay_apart():
    graph = import_graph()
    assert _imports_between(graph, "app.auth", "app.api") == []  # the API uses the guard, never the reverse
    assert _imports_between(graph, "app.api", "app.web") == []  # the answer renderer is app.answer_html
    assert _imports_between(graph, "app.web", "app.api") == []
