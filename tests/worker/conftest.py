"""Fixtures of the Worker tests: the workerd runtime, started once, and an HTTP pool."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import urllib3

from tests.support.worker_runtime import worker_runtime

__all__ = ["http", "worker_runtime"]


@pytest.fixture(scope="session")
def http() -> Iterator[urllib3.PoolManager]:
    """One connection pool for the hand-made requests."""
    pool = urllib3.PoolManager(num_pools=8, maxsize=4)
    yield pool
    pool.clear()
