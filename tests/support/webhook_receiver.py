"""A real webhook receiver on 127.0.0.1 that records and verifies requests.

Signatures are checked with the ``standardwebhooks`` package (Standard
Webhooks ``v1``, one verification per secret) and with ``hmac`` for the
legacy ``X-Signature``. Replies are programmed per call with
:meth:`WebhookReceiver.program`; once the program runs out every request
gets 200. :meth:`WebhookReceiver.hold` keeps one chosen request waiting
for its answer (a sender can be killed while it waits).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRETS = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain-legacy-secret")


@attrs.frozen
class Reply:
    """One programmed reply."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b"{}"


@attrs.frozen(kw_only=True)
class ReceivedRequest:
    """A request as the receiver saw it, with what verified."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    standard_verified: tuple[str, ...]
    legacy_verified: bool
    status: int = 200
    received_at: float = attrs.field(factory=time.time)

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


def _standard_key(secret: str) -> str | bytes:
    return secret if secret.startswith("whsec_") else secret.encode("utf-8")


def verify_signatures(
    body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...] = SECRETS
) -> tuple[tuple[str, ...], bool]:
    """
    Verify a webhook as a receiver would, with the ``standardwebhooks`` package.

    Returns:
        The secrets whose ``v1`` signature verifies, and whether the legacy
        ``X-Signature`` verifies with the first secret.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    standard = []
    for secret in secrets:
        try:
            Webhook(_standard_key(secret)).verify(body, lowered)
        except WebhookVerificationError:
            continue
        standard.append(secret)
    given = lowered.get("x-signature", "")
    expected = hmac.new(secrets[0].encode("utf-8"), body, hashlib.sha256).hexdigest()
    legacy = bool(given) and hmac.compare_digest(given, expected)
    legacy = legacy and lowered.get("x-signature-algorithm") == "HMAC-SHA256"
    return tuple(standard), legacy


class WebhookReceiver:
    """
    An HTTP server recording every request.

    Args:
        secrets: secrets to verify against; the first is also the legacy one.
    """

    def __init__(self, secrets: tuple[str, ...] = SECRETS) -> None:
        self.secrets = secrets
        self._lock = threading.Lock()
        self._program: list[Reply] = []
        self._holds: list[tuple[bytes, float, threading.Event]] = []
        self._requests: list[ReceivedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the receiver."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Requests received so far, in order."""
        with self._lock:
            return list(self._requests)

    def program(self, *replies: int | Reply) -> None:
        """Answer the next requests with these statuses or replies, then 200."""
        with self._lock:
            self._program = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    def hold(self, needle: bytes, seconds: float) -> threading.Event:
        """
        Answer the next request whose body contains *needle* only after *seconds*.

        Returns:
            An event set when that request arrives (it is recorded at once).
        """
        arrived = threading.Event()
        with self._lock:
            self._holds.append((needle, seconds, arrived))
        return arrived

    def _held(self, body: bytes) -> float:
        """Seconds to keep the request with *body* waiting (0 when none); its hold is used up."""
        with self._lock:
            for hold in self._holds:
                needle, seconds, arrived = hold
                if needle in body:
                    self._holds.remove(hold)
                    arrived.set()
                    return seconds
        return 0.0

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> tuple[tuple[str, ...], bool]:
        """Return the secrets whose ``v1`` signature verifies, and the legacy verdict."""
        return verify_signatures(body, headers, self.secrets)

    def _record(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        standard, legacy = self.verify(body, headers)
        with self._lock:
            reply = self._program.pop(0) if self._program else Reply(200)
            self._requests.append(
                ReceivedRequest(
                    method=method,
                    path=path,
                    headers=dict(headers),
                    body=body,
                    standard_verified=standard,
                    legacy_verified=legacy,
                    status=reply.status,
                )
            )
            return reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                reply = receiver._record("POST", self.path, dict(self.headers.items()), body)
                time.sleep(receiver._held(body))
                # the sender may be gone by now (killed while it waited)
                with contextlib.suppress(ConnectionError):
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)

            def finish(self) -> None:
                with contextlib.suppress(ConnectionError):  # a sender killed mid-request
                    super().finish()

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A started receiver verifying with :data:`SECRETS`; stopped afterwards."""
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
