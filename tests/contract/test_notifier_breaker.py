"""The circuit-breaker notifier (wired around the webhook) through the Notifier contract."""

from __future__ import annotations

import pytest

from atlasreg_cursor.adapters.breakers import BreakerBoard, BreakerNotifier
from atlasreg_cursor.adapters.webhook import WebhookNotifier
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports.notifier import Notifier
from tests.contract.notifier_contract import HttpNotifierContract, NotifierFactory


class TestBreakerNotifier(HttpNotifierContract):
    """Wrapping the webhook notifier in its breaker changes none of the port's promises."""

    @pytest.fixture
    def notifier_factory(self) -> NotifierFactory:
        """Webhook notifiers behind the ``webhook`` breaker of a board of their own."""

        def make(endpoint: str, signer: WebhookSigner, *, attempts: int) -> Notifier:
            inner = WebhookNotifier(endpoint, signer, timeout=5.0, attempts=attempts)
            return BreakerNotifier(inner, BreakerBoard(fail_max=3, reset_seconds=60))

        return make
