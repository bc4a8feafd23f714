"""The fake notifier through the Notifier contract (it stands in for adapters in unit tests)."""

from __future__ import annotations

import attrs
import pytest

from tests.contract.notifier_contract import Delivered, NotifierContract, NotifierHarness
from tests.fakes import FakeNotifier


@attrs.define
class FakeHarness:
    """The fake's own list of what it was given is the far side."""

    notifier: FakeNotifier = attrs.Factory(FakeNotifier)

    def delivered(self) -> list[Delivered]:
        return [
            Delivered(path=n.path, webhook_id=n.webhook_id, body=n.body) for n in self.notifier.sent
        ]

    def break_delivery(self) -> None:
        self.notifier.fail_next = 1_000_000

    def refuse_with(self, status: int) -> None:
        self.notifier.reject_with = status


class TestFakeNotifier(NotifierContract):
    """The fake records, fails and refuses like a webhook; it signs nothing."""

    SIGNS = False

    @pytest.fixture
    def harness(self) -> NotifierHarness:
        """A fresh fake."""
        return FakeHarness()
