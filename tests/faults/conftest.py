"""Fixtures of the fault suite: the session's report, the sample site, a seeded random."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from atlasreg_cursor.sample_site import start_sample_site
from tests.faults.support import FaultReport, report_path

SEED = int(os.environ.get("FAULT_SEED", "20261124"))


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    """The figures of every scenario, written to the report at the end of the session."""
    report = FaultReport(path=report_path(), seed=SEED)
    yield report
    report.write()


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """The bundled sample site (CSV feed, slow endpoint) on a free loopback port."""
    with start_sample_site() as site:
        yield site.base_url


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source seeded per test (FAULT_SEED), so a failing run can be replayed."""
    return random.Random(f"{SEED}:{request.node.name}")
