"""Every class that implements a port, in the package or among the fakes, runs its contract suite.

A class implements a port when it defines every method of the port's
Protocol with the same parameter names (read with :mod:`ast`, as mypy's
structural check would see them in ``tests/typing/ports.py``). A class that
defines at least half of a port's methods but not all (one forgotten when
the port gained a method, or a parameter renamed) fails the scan, since it
would otherwise drop out of every check below unnoticed. A contract
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


def ports(root: Path = PACKAGE / "ports") -> dict[str, set[Signature]]:
    """Each Protocol in *root* (``ports/``) → the signatures of its methods."""
    return {
        node.name: _methods(node)
        for _, node in _classes(root)
        if any(isinstance(base, ast.Name) and base.id == "Protocol" for base in node.bases)
    }


SCANNED = (PACKAGE / "adapters", TESTS / "fakes")


@cache
def implementations(
    ports_root: Path = PACKAGE / "ports", roots: tuple[Path, ...] = SCANNED
) -> dict[str, frozenset[str]]:
    """Each class of *roots* (the adapters and the fakes) that implements a port → those ports."""
    protocols = ports(ports_root)
    found: dict[str, set[str]] = {}
    for root in roots:
        for _, node in _classes(root):
            implemented = {p for p, methods in protocols.items() if methods <= _methods(node)}
            if implemented:
                found.setdefault(node.name, set()).update(implemented)
    return {name: frozenset(implemented) for name, implemented in found.items()}


def _show(signature: Signature) -> str:
    name, positional, keyword = signature
    return f"{name}({', '.join([*positional, *(['*', *keyword] if keyword else [])])})"


def partial_implementations(
    ports_root: Path = PACKAGE / "ports", roots: tuple[Path, ...] = SCANNED
) -> list[str]:
    """
    One message per class of *roots* that defines at least half of a port's methods, not all.

    Such a class is not found by :func:`implementations`, so neither the
    contract suites nor the typing checks would see it.
    """
    protocols = ports(ports_root)
    found: list[str] = []
    for root in roots:
        for path, node in _classes(root):
            defined = _methods(node)
            for port, methods in sorted(protocols.items()):
                missing = methods - defined
                if missing and 2 * len(methods & defined) >= len(methods):
                    found.append(
                        f"{node.name} ({path.relative_to(root.parent).as_posix()}) defines"
                        f" {len(methods) - len(missing)} of the {len(methods)} methods of"
                        f" {port}; missing, or with other parameter names:"
                        f" {', '.join(sorted(_show(m) for m in missing))}"
                    )
    return found


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


def test_no_class_implements_a_port_in_part() -> None:
    """A class with at least half of a port's methods has them all, so the checks above see it."""
    assert [] == partial_implementations(), "\n".join(partial_implementations())


def test_the_scan_fails_a_class_missing_a_port_method(tmp_path: Path) -> None:
    """Half or more of a port's methods but not all, or one with renamed parameters, is reported."""
    (tmp_path / "ports").mkdir()
    (tmp_path / "ports" / "box.py").write_text(
        "from typing import Protocol\n"
        "class Box(Protocol):\n"
        "    def put(self, key, body, *, if_match=None): ...\n"
        "    def get(self, key): ...\n"
        "    def delete(self, key): ...\n"
        "    def close(self): ...\n"
        "class Bell(Protocol):\n"
        "    def send(self, notification): ...\n"
        "class Shape:\n"  # not a Protocol: never a port
        "    def area(self): ...\n"
    )
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "boxes.py").write_text(
        "class Whole:\n"
        "    def put(self, key, body, *, if_match=None): ...\n"
        "    def get(self, key): ...\n"
        "    def delete(self, key): ...\n"
        "    def close(self): ...\n"
        "    def extra(self): ...\n"
        "class NoDelete:\n"
        "    def put(self, key, body, *, if_match=None): ...\n"
        "    def get(self, key): ...\n"
        "    def close(self): ...\n"
        "class Renamed:\n"
        "    def put(self, key, body, *, if_none_match=None): ...\n"
        "    def get(self, key): ...\n"
        "    def delete(self, key): ...\n"
        "    def close(self): ...\n"
        "class Closer:\n"  # one of four: not taken for a Box
        "    def close(self): ...\n"
        "    def area(self): ...\n"
        "class Sender:\n"  # a method of the same name but other parameters
        "    def send(self, body): ...\n"
    )
    (tmp_path / "fakes").mkdir()
    (tmp_path / "fakes" / "box.py").write_text(
        "class FakeBox:\n    def get(self, key): ...\n    def delete(self, key): ...\n"
    )
    roots = (tmp_path / "adapters", tmp_path / "fakes")

    found = partial_implementations(tmp_path / "ports", roots)

    assert {"Whole": frozenset({"Box"})} == implementations(tmp_path / "ports", roots)
    assert [
        "NoDelete (adapters/boxes.py) defines 3 of the 4 methods of Box;"
        " missing, or with other parameter names: delete(key)",
        "Renamed (adapters/boxes.py) defines 3 of the 4 methods of Box;"
        " missing, or with other parameter names: put(key, body, *, if_match)",
        "FakeBox (fakes/box.py) defines 2 of the 4 methods of Box;"
        " missing, or with other parameter names: close(), put(key, body, *, if_match)",
    ] == found
