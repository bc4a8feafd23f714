"""Test-wide settings: hypothesis profiles, stamina in testing mode."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import stamina
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _stamina_testing() -> Iterator[None]:
    """No backoff sleeps and at most three attempts in tests."""
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """A test that configured logging (the CLI does) must not leak it to the next."""
    yield
    import structlog

    structlog.reset_defaults()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests of one heavy session service on one xdist worker.

    Each worker starts its own session fixtures; the two Airflow stacks cost
    about 30 s and 1 GB each, so every ``airflow`` test joins one group; the
    Workers runtime (workerd) and Prometheus are started once for their tests.
    """
    for item in items:
        for group in ("airflow", "worker", "prometheus"):
            if item.get_closest_marker(group) is not None:
                item.add_marker(pytest.mark.xdist_group(group))
                break
