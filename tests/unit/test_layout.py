"""The package stays readable: short modules, no import cycle, imports pointing inwards.

The import graph is read with :mod:`ast` from module-level imports:
imports under ``if TYPE_CHECKING:`` and inside functions run after the
importing module is loaded, so they cannot close a cycle at load time; a
second check takes the imports inside functions too, so no deferred import
leads back to its own module either. Relative imports
are resolved; importing a package is importing its ``__init__``; ``from
package import name`` also imports ``package.name`` when that is a module.
What the domain may import is checked in ``test_purity.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import atlasreg_cursor

PACKAGE = Path(atlasreg_cursor.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 500
# Layer → the layers it must not import (imports point inwards: domain ← ports ← adapters ← entrypoints).
OUTER_LAYERS = {
    "atlasreg_cursor.ports": ("atlasreg_cursor.adapters", "atlasreg_cursor.entrypoints"),
    "atlasreg_cursor.adapters": ("atlasreg_cursor.entrypoints",),
}


def module_name(path: Path) -> str:
    """The dotted name of a source file (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module loads: not in functions, not under ``TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level_imports(block)
            for handler in node.handlers:
                yield from _module_level_imports(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _module_level_imports(node.body)


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The modules one import statement loads (before their parent packages)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    imported = _resolve(module, path, node)
    submodules = {f"{imported}.{alias.name}" for alias in node.names}
    return submodules | {imported}


def _all_runtime_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: also those inside functions, not under ``TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _all_runtime_imports(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _all_runtime_imports([child])


def import_graph(
    modules: Mapping[str, Path],
    imports: Callable[[list[ast.stmt]], Iterator[ast.Import | ast.ImportFrom]] = (
        _module_level_imports
    ),
) -> dict[str, set[str]]:
    """
    Each module of the package → the modules of the package it loads at import time.

    With ``imports=_all_runtime_imports``: the modules it may load at all,
    imports inside functions included.

    ``from package import submodule`` needs the package's ``__init__`` only
    when the package is not already loading (an ancestor of the importer) or
    when a name imported from it is not a submodule.
    """
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        own = set(_ancestors(module))
        edges: set[str] = set()
        for node in imports(ast.parse(path.read_text()).body):
            named = {t for t in _targets(module, path, node) if t in modules}
            for target in named:
                edges |= {a for a in _ancestors(target) if a not in own}
            loaded = {t for t in named if t not in own or not _only_submodules(node, t, modules)}
            edges |= loaded
        graph[module] = edges - {module}
    return graph


def _only_submodules(
    node: ast.Import | ast.ImportFrom, package: str, modules: Mapping[str, Path]
) -> bool:
    """Whether *node* takes nothing but submodules from *package* (never true of ``import``)."""
    if isinstance(node, ast.Import):
        return False
    return all(f"{package}.{alias.name}" in modules for alias in node.names)


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """
    One cycle per strongly connected component of more than one module.

    Returns:
        Paths ``[a, b, ..., a]``, each starting at its smallest module name.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while (member := stack.pop()) != node:
                component.add(member)
            components.append(component | {node})

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, c) for c in components if len(c) > 1]


def _path_through(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle from the component's smallest module back to itself."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_no_module_is_longer_than_500_lines() -> None:
    """Every module can be read in one sitting."""
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in sources().values()
    }

    offenders = {path: n for path, n in sorted(lengths.items()) if n > MAX_LINES}

    assert {} == offenders, "; ".join(f"{path}: {n} lines" for path, n in offenders.items())


def test_no_import_cycle_between_modules() -> None:
    """Loading any module never needs a module that is still loading."""
    found = [" -> ".join(cycle) for cycle in cycles(import_graph(sources()))]

    assert [] == found, "; ".join(found)


def test_no_import_loop_even_through_imports_in_functions() -> None:
    """A deferred import never leads back to its module (the cron checks are a leaf)."""
    found = [" -> ".join(c) for c in cycles(import_graph(sources(), _all_runtime_imports))]

    assert [] == found, "; ".join(found)


def test_the_deferred_import_graph_sees_function_imports(tmp_path: Path) -> None:
    """Imports in functions and methods are edges; ``TYPE_CHECKING`` ones still are not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.c import C\n"
        "class K:\n    def m(self):\n        from . import b\n"
    )
    (package / "b.py").write_text("def f():\n    if True:\n        import pkg.a\n")
    (package / "c.py").write_text("")
    modules = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }

    graph = import_graph(modules, _all_runtime_imports)

    assert {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()} == graph
    assert [["pkg.a", "pkg.b", "pkg.a"]] == cycles(graph)


def test_ports_and_adapters_import_no_outer_layer() -> None:
    """Imports point inwards: ports name no adapter, adapters name no entry point."""
    graph = import_graph(sources())
    outward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for layer, outer in OUTER_LAYERS.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if target.startswith(outer)
    )

    assert [] == outward


def test_the_cycle_finder_reports_the_path() -> None:
    """A three-module loop is reported once, from its smallest name; a chain is not."""
    graph = {"c": {"a"}, "a": {"b"}, "b": {"c", "d"}, "d": set(), "e": {"d"}}

    assert [["a", "b", "c", "a"]] == cycles(graph)


def test_the_import_graph_skips_type_checking_and_function_imports(tmp_path: Path) -> None:
    """Only load-time imports are edges; relative imports resolve; a loading package is no edge."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .a import A\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from pkg.c import C\n"
        "def f():\n    import pkg.c\n"
    )
    (package / "b.py").write_text("import pkg\n")
    (package / "c.py").write_text("")
    modules = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }

    graph = import_graph(modules)

    assert {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg"}, "pkg.c": set()} == graph
    assert [["pkg", "pkg.a", "pkg.b", "pkg"]] == cycles(graph)
