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


@pytest.mark.parametrize(
    "path", sorted(DOMAIN.rglob("*.py")), ids=lambda p: p.relative_to(DOMAIN).as_posix()
)
def test_domain_modules_do_not_import_outer_layers(path: Path) -> None:
    """No domain module names adapters, entrypoints or an I/O library at top level."""
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)

    bad = {
        m
        for m in imported
        if m.split(".")[0] in IO_LIBRARIES
        or m.startswith(("atlasreg_cursor.adapters", "atlasreg_cursor.entrypoints"))
    }
    assert set() == bad


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
