"""Test-wide settings: hypothesis profiles, stamina in testing mode, the fault report's parts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import stamina
from hypothesis import HealthCheck, settings

from tests.faults.report import PARTS, PARTS_INPUT, merge_parts, new_parts_dir, report_path

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


# --- the fault suite's report: one part per test process, merged at the end ---------


def pytest_configure(config: pytest.Config) -> None:
    """On the controller (or the only process): name the directory of the report's parts."""
    if not hasattr(config, "workerinput"):
        config.stash[PARTS] = new_parts_dir()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: tell each worker where its part of the fault report goes."""
    node.workerinput[PARTS_INPUT] = str(node.config.stash[PARTS])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On the controller, once every worker is done: merge the parts into one report."""
    config = session.config
    if hasattr(config, "workerinput") or PARTS not in config.stash:
        return
    parts = config.stash[PARTS]
    try:
        merge_parts(parts, report_path())
    finally:
        shutil.rmtree(parts, ignore_errors=True)
