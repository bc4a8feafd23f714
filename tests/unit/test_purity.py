"""The domain imports no I/O library and nothing from outer layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import atlasreg_cursor.domain

DOMAIN = Path(atlasreg_cursor.domain.__file__).parent
IO_LIBRARIES = {
    "redis",
    "botocore",
    "boto3",
    "urllib3",
    "requests",
    "httpx",
    "celery",
    "kombu",
    "scrapy",
    "twisted",
    "sqlite3",
    "socket",
    "http",
    "subprocess",
    "structlog",
    "stamina",
    "prometheus_client",
}


def test_importing_the_domain_loads_no_io_library() -> None:
    """A fresh interpreter importing the domain has no I/O module in sys.modules."""
    code = (
        "import sys, atlasreg_cursor.domain, atlasreg_cursor.ports;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(IO_LIBRARIES)!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "" == out.stdout.strip()


def _module_name(path: Path, root: Path = DOMAIN, package: str = "atlasreg_cursor.domain") -> str:
    """The dotted name of the module at *path* under *root* (a package is its ``__init__``)."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """
    Every module *source* imports, relative imports resolved against *module*.

    ``from ..adapters import x`` in ``pkg.domain.m`` gives ``pkg.adapters`` and
    ``pkg.adapters.x`` (``x`` may be a module); ``import a.b`` gives ``a.b``.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            imported.add(target)
            imported |= {f"{target}.{a.name}" for a in node.names}
    return imported


def outer_imports(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The imports of *source* that reach an I/O library, the adapters or the entrypoints."""
    return {
        m
        for m in imported_modules(source, module, is_package=is_package)
        if m.split(".")[0] in IO_LIBRARIES
        or m.startswith(("atlasreg_cursor.adapters", "atlasreg_cursor.entrypoints"))
    }


@pytest.mark.parametrize(
    "path", sorted(DOMAIN.rglob("*.py")), ids=lambda p: p.relative_to(DOMAIN).as_posix()
)
def test_domain_modules_do_not_import_outer_layers(path: Path) -> None:
    """No domain module imports adapters, entrypoints or an I/O library, relatively or not."""
    module = _module_name(path)

    assert set() == outer_imports(path.read_text(), module, is_package=path.name == "__init__.py")


@pytest.mark.parametrize(
    ("source", "module", "is_package"),
    [
        ("from ..adapters import webhook", "atlasreg_cursor.domain.gold", False),
        ("from ... import entrypoints", "atlasreg_cursor.domain.ingest.runner", False),
        ("from ...adapters.s3 import S3ObjectStore", "atlasreg_cursor.domain.ingest", True),
        ("import redis.client", "atlasreg_cursor.domain.gold", False),
        ("from atlasreg_cursor.entrypoints import settings", "atlasreg_cursor.domain.gold", False),
    ],
)
def test_the_import_check_sees_relative_imports(source: str, module: str, is_package: bool) -> None:
    """An outer layer reached through a relative import is caught like an absolute one."""
    assert outer_imports(source, module, is_package=is_package)


def test_the_import_check_allows_the_domains_own_relative_imports() -> None:
    """``from .errors import X`` and ``from ..ports import Y`` are inside the rules."""
    source = "from .errors import CursorError\nfrom ..ports import MessageQueue\n"

    assert set() == outer_imports(source, "atlasreg_cursor.domain.gold")


def test_the_ingest_service_reads_no_clock_itself() -> None:
    """Wall and monotonic clocks are injected: only utc_now, the default handed in, reads one."""
    reads = ("datetime.now(", "time.time(", "time.monotonic(", "date.today(", "time.sleep(")
    offenders = [
        f"{path.relative_to(DOMAIN).as_posix()}: {line.strip()}"
        for path in sorted((DOMAIN / "ingest").rglob("*.py"))
        for line in path.read_text().splitlines()
        if any(read in line for read in reads)
    ]

    assert ["ingest/model.py: return dt.datetime.now(dt.UTC)"] == offenders
