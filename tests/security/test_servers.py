"""Idle, slow and lying clients against the health/metrics server and the demo receiver."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3

from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.entrypoints.http import HealthServer
from atlasreg_cursor.entrypoints.receiver import WebhookReceiver
from tests.support.services import wait_until

pytestmark = pytest.mark.security

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WORKERS = 4


@pytest.fixture
def health() -> Iterator[HealthServer]:
    """The health server with short timeouts."""
    server = HealthServer(
        "127.0.0.1",
        0,
        lambda: (True, {}),
        max_workers=WORKERS,
        idle_timeout=1.0,
        request_deadline=2.0,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The demo receiver with short timeouts and a 64 KiB body limit."""
    server = WebhookReceiver(
        (SECRET,), max_body=64 * 1024, max_workers=WORKERS, idle_timeout=1.0, request_deadline=2.0
    )
    yield server
    server.stop()


def _idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    return socks


def _get(port: int, path: str = "/healthz") -> int:
    http = urllib3.PoolManager(retries=False)
    return http.request("GET", f"http://127.0.0.1:{port}{path}", timeout=2).status


@pytest.mark.parametrize("which", ["health", "receiver"])
def test_300_idle_connections_do_not_make_300_threads(
    which: str, health: HealthServer, receiver: WebhookReceiver
) -> None:
    """Threads stay bounded by the worker pool, and the server answers again soon after."""
    port = health.port if which == "health" else int(receiver.url.rsplit(":", 1)[1])
    before = threading.active_count()

    socks = _idle(port, 300)
    time.sleep(0.5)
    during = threading.active_count()
    try:
        answered = wait_until(lambda: _get(port, "/healthz") in {200, 404, 501}, timeout=15)
    finally:
        for sock in socks:
            sock.close()

    assert 300 == len(socks)
    assert during - before <= WORKERS + 2
    assert answered


def test_a_slow_header_drip_is_cut_at_the_request_deadline(health: HealthServer) -> None:
    """A client dripping a header byte every 0.3 s is disconnected by the 2 s deadline."""
    sock = socket.create_connection(("127.0.0.1", health.port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    cut = False
    try:
        while time.monotonic() - started < 8:
            sock.sendall(b"X")
            time.sleep(0.3)
    except OSError:
        cut = True
    finally:
        sock.close()
    elapsed = time.monotonic() - started

    assert cut
    assert elapsed < 2.0 + 2.0


def _post(receiver: WebhookReceiver, headers: dict[str, str], body: bytes = b"") -> int:
    port = int(receiver.url.rsplit(":", 1)[1])
    lines = ["POST /api/v1/hooks/ingest-complete HTTP/1.1", "Host: x"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        reply = sock.recv(200)
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 411),
        ({"Content-Length": "abc"}, 400),
        ({"Content-Length": "-5"}, 400),
        ({"Content-Length": "+5"}, 400),
        ({"Content-Length": "99999999999999999999"}, 400),
        ({"Content-Length": str(10 * 2**20)}, 413),
        ({"Transfer-Encoding": "chunked"}, 411),
    ],
)
def test_receiver_validates_content_length(
    receiver: WebhookReceiver, headers: dict[str, str], status: int
) -> None:
    """A missing, malformed, oversized or chunked body is refused before it is read."""
    assert status == _post(receiver, headers)
    assert [] == receiver.received


def test_receiver_still_verifies_a_good_request(receiver: WebhookReceiver) -> None:
    """Control: a signed request within the limits is accepted."""
    body = b'{"event_type":"ingest_complete"}'
    headers = WebhookSigner(SECRET).headers("id-1", body, timestamp=int(time.time()))
    headers["Content-Length"] = str(len(body))

    assert 204 == _post(receiver, headers, body)
    assert [(True, True)] == [(r.standard_ok, r.legacy_ok) for r in receiver.received]


def test_health_server_refuses_other_methods(health: HealthServer) -> None:
    """Only GET is served."""
    http = urllib3.PoolManager(retries=False)

    status = http.request("POST", f"http://127.0.0.1:{health.port}/metrics", body=b"x").status

    assert 501 == status
