"""The in-memory test double of the queue passes the same contract as the real queues."""

from __future__ import annotations

import time

import pytest

from atlasreg_cursor.ports.queue import MessageQueue
from tests.contract.queue_contract import QueueContract, QueueFactory
from tests.fakes.queue import FakeQueue, QueueState


class TestFakeQueue(QueueContract):
    """The fake the unit tests rely on behaves like a queue."""

    DEAD_LETTER_BOX = False

    @pytest.fixture
    def queue_factory(self) -> QueueFactory:
        """Consumers sharing one in-memory state."""
        state = QueueState(clock=time.monotonic)

        def make(visibility_timeout: float) -> MessageQueue:
            return FakeQueue(visibility_timeout=visibility_timeout, state=state)

        return make
