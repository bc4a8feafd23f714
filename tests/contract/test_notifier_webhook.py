"""WebhookNotifier through the Notifier contract, plus HTTP-only checks."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import stamina
from structlog.testing import capture_logs

from atlasreg_cursor.adapters.webhook import MAX_RETRY_AFTER, WebhookNotifier, parse_retry_after
from atlasreg_cursor.domain.errors import NotificationRejected, NotificationUnavailable
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports.notifier import Notifier
from tests.contract.notifier_contract import (
    HttpNotifierContract,
    NotifierFactory,
    complete_notification,
)
from tests.support.webhook_receiver import SECRETS, Reply, WebhookReceiver


class TestWebhookNotifier(HttpNotifierContract):
    """The urllib3 notifier honours the whole contract."""

    @pytest.fixture
    def notifier_factory(self) -> NotifierFactory:
        """Notifiers with a short request timeout."""

        def make(endpoint: str, signer: WebhookSigner, *, attempts: int) -> Notifier:
            return WebhookNotifier(endpoint, signer, timeout=5.0, attempts=attempts)

        return make


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A started receiver."""
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def signer() -> WebhookSigner:
    """The primary test secret, both schemes."""
    return WebhookSigner(SECRETS[0])


def test_user_agent_and_fresh_timestamps(receiver: WebhookReceiver, signer: WebhookSigner) -> None:
    """Every attempt says who sends it and carries its own valid timestamp."""
    receiver.program(503)

    WebhookNotifier(receiver.url, signer).send(complete_notification())
    requests = receiver.requests

    assert ["atlasreg-cursor"] * 2 == [r.header("User-Agent") for r in requests]
    assert all(abs(int(r.header("webhook-timestamp") or 0) - time.time()) < 60 for r in requests)


def test_retry_after_is_honoured(receiver: WebhookReceiver, signer: WebhookSigner) -> None:
    """With real backoff, a 429 ``Retry-After: 1`` delays the next attempt about 1 s."""
    receiver.program(Reply(429, {"Retry-After": "1"}))

    with stamina.set_testing(False):
        start = time.monotonic()
        receipt = WebhookNotifier(receiver.url, signer).send(complete_notification())
        elapsed = time.monotonic() - start

    assert 2 == receipt.attempts
    assert 0.9 <= elapsed < 5


def test_redirect_not_followed(receiver: WebhookReceiver, signer: WebhookSigner) -> None:
    """A 3xx is rejected after one request; its Location is never visited."""
    receiver.program(Reply(307, {"Location": receiver.url + "/elsewhere"}))

    with pytest.raises(NotificationRejected) as info:
        WebhookNotifier(receiver.url, signer).send(complete_notification())

    assert 307 == info.value.status_code
    assert ["/api/v1/hooks/ingest-complete"] == [r.path for r in receiver.requests]


def test_slow_receiver_times_out(signer: WebhookSigner) -> None:
    """A receiver that never answers is ``NotificationUnavailable`` after the timeouts."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        notifier = WebhookNotifier(f"http://127.0.0.1:{port}", signer, timeout=0.3, attempts=2)

        with pytest.raises(NotificationUnavailable, match="attempts"):
            notifier.send(complete_notification())


def test_logs_hold_no_body_or_secret(receiver: WebhookReceiver, signer: WebhookSigner) -> None:
    """Logs name the run and webhook but never carry the body or a secret."""
    receiver.program(503, 400)
    notification = complete_notification()

    with capture_logs() as logs, pytest.raises(NotificationRejected):
        WebhookNotifier(receiver.url, signer).send(notification)
    text = repr(logs)

    assert any(e["event"] == "webhook.rejected" for e in logs)
    assert notification.webhook_id in text
    assert notification.body.decode() not in text
    assert "transmissão" not in text
    assert SECRETS[0] not in text


def test_repr_hides_credentials(signer: WebhookSigner) -> None:
    """User info and query strings of the endpoint stay out of the repr."""
    notifier = WebhookNotifier("https://user:pw@worker.example/hooks?token=abc", signer)

    assert "WebhookNotifier(endpoint='https://worker.example/hooks')" == repr(notifier)
    assert SECRETS[0] not in repr(notifier)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0", 0.0),
        ("100000", MAX_RETRY_AFTER),
        ("soon", None),
        ("Wed, 25 Nov 2026 10:00:05 GMT", 5.0),
        ("Wed, 25 Nov 2026 09:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Seconds and HTTP dates are read and capped; nonsense is ignored."""
    now = 1795600800.0  # 2026-11-25T10:00:00Z

    assert expected == parse_retry_after(header, now=now)


@pytest.mark.parametrize("endpoint", ["ftp://x", "worker.example", ""])
def test_endpoint_must_be_http(endpoint: str, signer: WebhookSigner) -> None:
    """Only http(s) endpoints are accepted."""
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier(endpoint, signer)
