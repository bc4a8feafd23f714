"""Every class that implements a port, in the package or among the fakes, runs its contract suite.

A class implements a port when it defines every method of the port's
Protocol with the same parameter names (read with :mod:`ast`, as mypy's
structural check would see them in ``tests/typing/ports.py``). A contract
test module runs a port's suite for a class when it subclasses a contract
class from that port's ``*_contract`` module and names the class. And
``tests/typing/ports.py`` assigns an instance of the class to a variable
typed as each port it implements, so mypy checks it against the Protocol.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import atlasreg_cursor

PACKAGE = Path(atlasreg_cursor.__file__).parent
TESTS = Path(__file__).resolve().parents[1]
# Port → the contract module that holds its suite.
SUITES = {
    "MessageQueue": "queue_contract",
    "DeadLetterBox": "queue_contract",  # the queue suite's DEAD_LETTER_BOX checks
    "ConfigSource": "config_contract",
    "Executor": "executor_contract",
    "ObjectStore": "storage_contract",
    "ConditionalWriteProbe": "storage_contract",  # the storage suite's start-up probe check
    "Notifier": "notifier_contract",
}

Signature = tuple[str, tuple[str, ...], tuple[str, ...]]


def _signature(method: ast.FunctionDef) -> Signature:
    args = method.args
    positional = tuple(a.arg for a in [*args.posonlyargs, *args.args])[1:]
    return method.name, positional, tuple(a.arg for a in args.kwonlyargs)


def _classes(root: Path) -> Iterator[tuple[Path, ast.ClassDef]]:
    for path in sorted(root.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                yield path, node


def _methods(node: ast.ClassDef) -> set[Signature]:
    return {_signature(m) for m in node.body if isinstance(m, ast.FunctionDef)}


def ports() -> dict[str, set[Signature]]:
    """Each Protocol in ``ports/`` → the signatures of its methods."""
    return {
        node.name: _methods(node)
        for _, node in _classes(PACKAGE / "ports")
        if any(isinstance(base, ast.Name) and base.id == "Protocol" for base in node.bases)
    }


@cache
def implementations() -> dict[str, frozenset[str]]:
    """Each class of the adapters and the fakes that implements a port → those ports."""
    protocols = ports()
    found: dict[str, set[str]] = {}
    for root in (PACKAGE / "adapters", TESTS / "fakes"):
        for _, node in _classes(root):
            implemented = {p for p, methods in protocols.items() if methods <= _methods(node)}
            if implemented:
                found.setdefault(node.name, set()).update(implemented)
    return {name: frozenset(implemented) for name, implemented in found.items()}


def typed_assignments(path: Path = TESTS / "typing" / "ports.py") -> frozenset[tuple[str, str]]:
    """``(class, port)`` for each ``name: Port = Class(...)`` in *path*."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.annotation, ast.Name)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
        ):
            found.add((node.value.func.id, node.annotation.id))
    return frozenset(found)


@cache
def suite_runs() -> frozenset[tuple[str, str]]:
    """``(suite, name)`` for every name a contract test module uses next to a suite it runs."""
    runs: set[tuple[str, str]] = set()
    for path in sorted((TESTS / "contract").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        contracts: dict[str, str] = {}  # name imported from a contract module → that module
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_contract"):
                suite = (node.module or "").rsplit(".", 1)[-1]
                contracts |= {alias.asname or alias.name: suite for alias in node.names}
            if isinstance(node, ast.ImportFrom):
                names |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
        suites = {
            contracts[base.id]
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            for base in node.bases
            if isinstance(base, ast.Name) and base.id in contracts
        }
        runs |= {(suite, name) for suite in suites for name in names}
    return frozenset(runs)


def test_every_port_has_a_suite() -> None:
    """Each Protocol in ``ports/`` is mapped to the contract module that checks it."""
    assert set(SUITES) == set(ports())
    assert all((TESTS / "contract" / f"{suite}.py").is_file() for suite in SUITES.values())


def test_the_known_adapters_are_found() -> None:
    """The scan sees the wrappers and the fakes, not only the technology adapters."""
    found = implementations()

    assert {"Executor"} == found["BreakerExecutor"]
    assert {"ConfigSource"} == found["CachingConfigSource"]
    assert {"MessageQueue", "DeadLetterBox"} == found["SqliteQueue"]
    assert {"Notifier"} == found["FakeNotifier"]


@pytest.mark.parametrize("name", sorted(implementations()))
def test_every_adapter_runs_the_suites_of_its_ports(name: str) -> None:
    """A class implementing a port is built by a test module that runs that port's suite."""
    runs = suite_runs()
    missing = sorted(port for port in implementations()[name] if (SUITES[port], name) not in runs)

    assert [] == missing


@pytest.mark.parametrize("name", sorted(implementations()))
def test_every_adapter_is_checked_against_its_ports_by_mypy(name: str) -> None:
    """``tests/typing/ports.py`` types an instance of the class as each port it implements."""
    typed = typed_assignments()
    missing = sorted(port for port in implementations()[name] if (name, port) not in typed)

    assert [] == missing


def test_the_typing_scan_reads_annotated_assignments(tmp_path: Path) -> None:
    """Only ``x: Port = Class(...)`` counts: a bare call or another annotation does not."""
    module = tmp_path / "ports.py"
    module.write_text(
        "def _ports() -> None:\n"
        "    a: MessageQueue = SqliteQueue(path)\n"
        "    b = RedisListQueue(url)\n"
        "    c: object = FileObjectStore(root)\n"
    )

    assert {("SqliteQueue", "MessageQueue"), ("FileObjectStore", "object")} == typed_assignments(
        module
    )
