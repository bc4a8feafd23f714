"""Fixtures of the fault suite: this process's part of the report, the sample site, a seeded random."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from atlasreg_cursor.sample_site import start_sample_site
from tests.faults.report import FaultReport, parts_of

SEED = int(os.environ.get("FAULT_SEED", "20261124"))


@pytest.fixture(scope="session")
def fault_report(request: pytest.FixtureRequest) -> Iterator[FaultReport]:
    """This process's scenarios, written as its part; the parts are merged at the end of the run."""
    parts, worker = parts_of(request.config)
    report = FaultReport(parts=parts, worker=worker, seed=SEED)
    yield report
    report.write_part()


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """The bundled sample site (CSV feed, slow endpoint) on a free loopback port."""
    with start_sample_site() as site:
        yield site.base_url


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random source seeded per test (FAULT_SEED), so a failing run can be replayed."""
    return random.Random(f"{SEED}:{request.node.name}")
