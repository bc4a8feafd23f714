"""The circuit-breaker executor (wired around every executor) through the Executor contract."""

from __future__ import annotations

import pytest

from atlasreg_cursor.adapters.breakers import BreakerBoard, BreakerExecutor
from atlasreg_cursor.ports.executor import Executor
from tests.contract.executor_contract import ExecutorContract
from tests.contract.test_executor_fake import FakeScenarios
from tests.fakes.executor import FakeExecutor
from tests.support.contract_site import ContractSite, contract_site  # noqa: F401


class TestBreakerExecutor(ExecutorContract):
    """Routing ``run_source`` through its host's breaker changes none of the port's promises."""

    FETCHES_URLS = False
    CUT_GRACE = 1.0
    CANCEL_GRACE = 1.0

    @pytest.fixture
    def inner(self) -> FakeExecutor:
        """The wrapped executor, told what each source does."""
        return FakeExecutor()

    @pytest.fixture
    def executor(self, inner: FakeExecutor) -> Executor:
        """The fake behind per-host breakers (in-memory breaker state)."""
        return BreakerExecutor(inner, BreakerBoard(fail_max=3, reset_seconds=60))

    @pytest.fixture
    def scenarios(self, contract_site: ContractSite, inner: FakeExecutor) -> FakeScenarios:
        return FakeScenarios(contract_site, inner)
