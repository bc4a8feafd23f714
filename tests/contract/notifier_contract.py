"""The Notifier contract (architecture §6, §8), run against every notifier.

:class:`NotifierContract` states what every ``Notifier`` promises — the
exact body reaches the other side under its stable ``webhook-id``, a resend
keeps the id, concurrent sends all arrive whole, failures are typed — and
runs against the webhook notifier, the outbox and the fake. A module plugs
an adapter in by subclassing it and overriding the ``harness`` fixture,
which returns a :class:`NotifierHarness`:

    ``notifier``: the adapter under test, signing with :data:`SECRETS` where
    it signs; ``delivered()``: what reached the far side so far, oldest
    first; ``break_delivery()``: every later send fails transiently;
    ``refuse_with``: ``None`` where nothing can refuse a notification (the
    outbox), else a function making every later send be refused with that
    HTTP status.

Capabilities: ``SIGNS`` (the delivered headers carry signatures that verify
with the ``standardwebhooks`` package), ``REJECTS`` (a receiver can refuse).

:class:`HttpNotifierContract` adds what an HTTP notifier promises (paths
under the endpoint, retries of 408/429/5xx with the same ``webhook-id``, no
retry of other 4xx); its modules override ``notifier_factory``::

    class TestWebhookNotifier(HttpNotifierContract):
        @pytest.fixture
        def notifier_factory(self):
            def make(endpoint: str, signer: WebhookSigner, *, attempts: int) -> Notifier:
                return WebhookNotifier(endpoint, signer, timeout=5, attempts=attempts)
            return make

    ``make(endpoint, signer, *, attempts) -> Notifier``: a notifier POSTing
    to *endpoint* (a base URL, maybe with a path and a trailing slash). The
    receiving side is the real HTTP server of ``tests/support/webhook_receiver.py``,
    which verifies signatures with the ``standardwebhooks`` package. Retry
    timing is checked by each adapter's own tests (stamina runs without
    backoff under test).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar, Protocol

import attrs
import pytest

from atlasreg_cursor.domain.errors import NotificationRejected, NotificationUnavailable
from atlasreg_cursor.domain.notifications import Notification, ingest_complete, processing_error
from atlasreg_cursor.domain.runs import RunStatus
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports.notifier import Notifier
from tests.support.services import free_port
from tests.support.webhook_receiver import (
    SECRETS,
    Reply,
    WebhookReceiver,
    verify_signatures,
)


@attrs.frozen(kw_only=True)
class Delivered:
    """One notification as the far side got it."""

    path: str
    webhook_id: str | None
    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)


class NotifierHarness(Protocol):
    """The adapter under test and a view of the far side."""

    notifier: Notifier
    refuse_with: Callable[[int], None] | None

    def delivered(self) -> list[Delivered]: ...

    def break_delivery(self) -> None: ...


class NotifierFactory(Protocol):
    """Builds the notifier under test."""

    def __call__(self, endpoint: str, signer: WebhookSigner, *, attempts: int) -> Notifier: ...


def complete_notification(run_id: str = "run_a1b2c3d4e5f6") -> Notification:
    """An ``ingest_complete`` notification with non-ASCII content."""
    return ingest_complete(
        run_id=run_id,
        status=RunStatus.PARTIAL,
        completed_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        file_path=f"gold/2026-11-24/{run_id}.json",
        sha256="a" * 64,
        documents_count=65,
        errors_count=1,
        metadata={"nota": "transmissão"},
    )


def error_notification() -> Notification:
    """A ``processing_error`` notification."""
    return processing_error(
        run_id="reprocess_0123456789ab",
        error_type="ExecutorUnavailable",
        error_message="Core did not answer",
        occurred_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        context={"date": "2026-11-20", "attempts": 5},
    )


def signer_for_tests() -> WebhookSigner:
    """Both schemes, with a second secret as during a rotation."""
    return WebhookSigner(SECRETS[0], additional_secrets=(SECRETS[1],))


class NotifierContract:
    """Checks every Notifier adapter must pass."""

    SIGNS: ClassVar[bool] = True
    REJECTS: ClassVar[bool] = True

    @pytest.fixture
    def harness(self) -> NotifierHarness:
        """Return the adapter's harness."""
        raise NotImplementedError

    def test_exact_body_arrives_under_its_webhook_id(self, harness: NotifierHarness) -> None:
        """One send is one delivery of the exact bytes, on the event's path, under its id."""
        notification = complete_notification()

        receipt = harness.notifier.send(notification)
        [delivered] = harness.delivered()

        assert receipt.attempts >= 1
        assert delivered.path.endswith(notification.path)
        assert notification.webhook_id == delivered.webhook_id
        assert notification.body == delivered.body

    def test_processing_error_has_its_own_path(self, harness: NotifierHarness) -> None:
        """``processing_error`` arrives on its own path."""
        notification = error_notification()

        harness.notifier.send(notification)
        [delivered] = harness.delivered()

        assert delivered.path.endswith("/api/v1/hooks/processing-error")
        assert notification.body == delivered.body

    def test_a_resend_keeps_the_webhook_id(self, harness: NotifierHarness) -> None:
        """Sending the same notification again delivers the same id and bytes (receivers dedupe)."""
        notification = complete_notification()

        harness.notifier.send(notification)
        harness.notifier.send(notification)
        delivered = harness.delivered()

        assert [notification.webhook_id] * 2 == [d.webhook_id for d in delivered]
        assert [notification.body] * 2 == [d.body for d in delivered]

    def test_signatures_verify_where_the_adapter_signs(self, harness: NotifierHarness) -> None:
        """Signed adapters' headers verify over the delivered bytes; the others carry none."""
        harness.notifier.send(complete_notification())
        [delivered] = harness.delivered()
        standard, legacy = verify_signatures(delivered.body, delivered.headers)

        assert (SECRETS if self.SIGNS else ()) == standard
        assert self.SIGNS == legacy

    def test_concurrent_sends_all_arrive_whole(self, harness: NotifierHarness) -> None:
        """Eight threads sending at once: eight deliveries, none torn or mixed."""
        notifications = [complete_notification(f"run_{n:012x}") for n in range(8)]
        threads = [threading.Thread(target=harness.notifier.send, args=(n,)) for n in notifications]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        delivered = {d.webhook_id: d.body for d in harness.delivered()}

        assert {n.webhook_id: n.body for n in notifications} == delivered

    def test_unavailable_far_side_is_typed_and_delivers_nothing(
        self, harness: NotifierHarness
    ) -> None:
        """A far side that cannot take it is ``NotificationUnavailable``, nothing delivered."""
        harness.break_delivery()

        with pytest.raises(NotificationUnavailable):
            harness.notifier.send(complete_notification())

        assert [] == harness.delivered()

    def test_refusal_is_typed_where_a_receiver_can_refuse(self, harness: NotifierHarness) -> None:
        """A refusal is ``NotificationRejected`` with the status; the outbox cannot be refused."""
        assert self.REJECTS == (harness.refuse_with is not None)
        if harness.refuse_with is None:
            return
        harness.refuse_with(422)

        with pytest.raises(NotificationRejected) as info:
            harness.notifier.send(complete_notification())

        assert 422 == info.value.status_code


@attrs.define
class _HttpHarness:
    notifier: Notifier
    receiver: WebhookReceiver

    def delivered(self) -> list[Delivered]:
        return [
            Delivered(
                path=r.path, webhook_id=r.header("webhook-id"), body=r.body, headers=r.headers
            )
            for r in self.receiver.requests
            if 200 <= r.status < 300
        ]

    def break_delivery(self) -> None:
        self.receiver.program(*[503] * 50)

    @property
    def refuse_with(self) -> Callable[[int], None]:
        return lambda status: self.receiver.program(*[status] * 50)


class HttpNotifierContract(NotifierContract):
    """Checks every HTTP Notifier adapter must pass, beyond the port's."""

    @pytest.fixture
    def notifier_factory(self) -> NotifierFactory:
        """Return ``make(endpoint, signer, *, attempts)``."""
        raise NotImplementedError

    @pytest.fixture
    def receiver(self) -> Iterator[WebhookReceiver]:
        """The real HTTP receiver, verifying with :data:`SECRETS`."""
        server = WebhookReceiver()
        server.start()
        try:
            yield server
        finally:
            server.stop()

    @pytest.fixture
    def signer(self) -> WebhookSigner:
        """Both schemes, with a second secret as during a rotation."""
        return signer_for_tests()

    @pytest.fixture
    def harness(
        self, notifier_factory: NotifierFactory, receiver: WebhookReceiver, signer: WebhookSigner
    ) -> NotifierHarness:
        """The notifier for the receiver, one attempt."""
        return _HttpHarness(notifier_factory(receiver.url, signer, attempts=1), receiver)

    @pytest.fixture
    def make(
        self,
        notifier_factory: NotifierFactory,
        receiver: WebhookReceiver,
        signer: WebhookSigner,
    ) -> Callable[..., Notifier]:
        """Build a notifier for the receiver (``attempts`` defaults to 3)."""

        def build(*, attempts: int = 3, endpoint: str | None = None) -> Notifier:
            return notifier_factory(endpoint or receiver.url, signer, attempts=attempts)

        return build

    def test_delivered_once_and_verified(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
    ) -> None:
        """A 200 is one attempt; the exact body arrives signed by every scheme."""
        notification = complete_notification()

        receipt = make().send(notification)
        [request] = receiver.requests

        assert (200, 1) == (receipt.status_code, receipt.attempts)
        assert "POST" == request.method
        assert "/api/v1/hooks/ingest-complete" == request.path
        assert notification.body == request.body
        assert notification.webhook_id == request.header("webhook-id")
        assert "application/json" == request.header("Content-Type")
        assert SECRETS == request.standard_verified
        assert 2 == len((request.header("webhook-signature") or "").split(" "))
        assert request.legacy_verified

    def test_processing_error_path(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
    ) -> None:
        """``processing_error`` goes to its own path."""
        notification = error_notification()

        make().send(notification)
        [request] = receiver.requests

        assert "/api/v1/hooks/processing-error" == request.path
        assert notification.body == request.body

    def test_endpoint_with_base_path(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
    ) -> None:
        """A base path on the endpoint is kept; a trailing slash is not doubled."""
        make(endpoint=receiver.url + "/worker/").send(complete_notification())
        [request] = receiver.requests

        assert "/worker/api/v1/hooks/ingest-complete" == request.path

    def test_retry_on_503_then_success(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
    ) -> None:
        """A 503 is retried with the same webhook-id; the receipt counts attempts."""
        receiver.program(503, 200)
        notification = complete_notification()

        receipt = make().send(notification)
        requests = receiver.requests

        assert (200, 2) == (receipt.status_code, receipt.attempts)
        assert [notification.webhook_id] * 2 == [r.header("webhook-id") for r in requests]
        assert [notification.body] * 2 == [r.body for r in requests]
        assert all(r.standard_verified == SECRETS and r.legacy_verified for r in requests)

    @pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
    def test_transient_statuses_retried(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
        status: int,
    ) -> None:
        """408, 429 and 5xx are retried."""
        receiver.program(status)

        receipt = make().send(complete_notification())

        assert (200, 2) == (receipt.status_code, receipt.attempts)
        assert 2 == len(receiver.requests)

    def test_429_with_retry_after_retried(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
    ) -> None:
        """A 429 with ``Retry-After`` is retried."""
        receiver.program(Reply(429, {"Retry-After": "1"}), 201)

        receipt = make().send(complete_notification())

        assert (201, 2) == (receipt.status_code, receipt.attempts)

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
    def test_4xx_rejected_without_retry(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
        status: int,
    ) -> None:
        """A 4xx other than 408/429 is ``NotificationRejected`` after one request."""
        receiver.program(status)

        with pytest.raises(NotificationRejected) as info:
            make().send(complete_notification())

        assert status == info.value.status_code
        assert 1 == len(receiver.requests)

    def test_persistent_503_unavailable(
        self,
        make: Callable[..., Notifier],
        receiver: WebhookReceiver,
    ) -> None:
        """Every attempt failing with 503 is ``NotificationUnavailable``."""
        receiver.program(*[503] * 10)

        with pytest.raises(NotificationUnavailable):
            make(attempts=3).send(complete_notification())

        assert 3 == len(receiver.requests)

    def test_connection_refused_unavailable(self, make: Callable[..., Notifier]) -> None:
        """Nobody listening is ``NotificationUnavailable``."""
        endpoint = f"http://127.0.0.1:{free_port()}"

        with pytest.raises(NotificationUnavailable):
            make(endpoint=endpoint).send(complete_notification())

    @pytest.mark.parametrize("scheme", ["standard", "legacy"])
    def test_single_scheme(
        self,
        notifier_factory: NotifierFactory,
        receiver: WebhookReceiver,
        scheme: str,
    ) -> None:
        """A signer with one scheme sends only that scheme's headers."""
        signer = WebhookSigner(SECRETS[0], standard=scheme == "standard", legacy=scheme == "legacy")

        notifier_factory(receiver.url, signer, attempts=1).send(complete_notification())
        [request] = receiver.requests

        assert (scheme == "standard") == (request.header("webhook-signature") is not None)
        assert (scheme == "legacy") == (request.header("X-Signature") is not None)
        assert (scheme == "standard") == (request.standard_verified == (SECRETS[0],))
        assert (scheme == "legacy") == request.legacy_verified
