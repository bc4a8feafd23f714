"""The shared HTTP layer: one retry predicate, one transient error, bounded reads."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atlasreg_cursor.adapters.http import (
    HttpClient,
    ResponseTooLarge,
    TransientHTTPError,
    is_retryable_status,
    parse_retry_after,
    retry_hook,
    retrying,
)


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (408, True),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
        (400, False),
        (404, False),
        (409, False),
        (301, False),
        (200, False),
    ],
)
def test_one_retry_predicate(status: int, retry: bool) -> None:
    """408, 429 and 5xx are retried; nothing else."""
    assert retry == is_retryable_status(status)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("-4", 0.0),
        ("9999", 60.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Seconds are read and capped; junk and non-finite values are ignored."""
    assert expected == parse_retry_after(value)


def test_parse_retry_after_http_date() -> None:
    """An HTTP date in the future is the time until then."""
    when = email.utils.formatdate(1_000_010, usegmt=True)

    assert 10.0 == parse_retry_after(when, now=1_000_000)


def test_retry_hook_honours_retry_after() -> None:
    """The hook retries only TransientHTTPError, with its Retry-After as the wait."""
    assert 7.0 == retry_hook(TransientHTTPError("HTTP 429", status=429, retry_after=7.0))
    assert retry_hook(TransientHTTPError("reset")) is True
    assert retry_hook(ValueError("no")) is False


def test_retrying_raises_the_last_transient_error() -> None:
    """After the attempts are spent the last TransientHTTPError comes out."""
    calls = []

    def flaky() -> int:
        calls.append(1)
        raise TransientHTTPError(f"HTTP 503 #{len(calls)}", status=503)

    with pytest.raises(TransientHTTPError, match="#3"):
        retrying(flaky, attempts=3, timeout=5)


def test_transient_reasons_are_redacted() -> None:
    """A reason built from a URL with credentials carries them hidden."""
    error = TransientHTTPError("GET http://u:PASSWORD@h/x?token=T failed")

    assert "PASSWORD" not in error.reason
    assert "token=***" in str(error)


@pytest.fixture
def server() -> Iterator[str]:
    """A loopback server: /busy answers 503 with Retry-After, /big a 2 KiB body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"x" * 2048 if self.path == "/big" else b"{}"
            self.send_response(503 if self.path == "/busy" else 200)
            if self.path == "/busy":
                self.send_header("Retry-After", "2")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_client_raises_transient_with_the_response(server: str) -> None:
    """A 503 is a TransientHTTPError carrying status, Retry-After and the answer."""
    with pytest.raises(TransientHTTPError) as info:
        HttpClient(timeout=5).send("GET", f"{server}/busy")

    assert (503, 2.0) == (info.value.status, info.value.retry_after)
    assert info.value.response is not None
    assert b"{}" == info.value.response.data


def test_http_client_bounds_the_body(server: str) -> None:
    """An answer over max_body is ResponseTooLarge, not a 2 KiB read into memory."""
    with pytest.raises(ResponseTooLarge):
        HttpClient(timeout=5, max_body=1000).send("GET", f"{server}/big")


def test_http_client_connection_error_is_transient() -> None:
    """Nothing listening is a TransientHTTPError without a status."""
    started = time.monotonic()
    with pytest.raises(TransientHTTPError) as info:
        HttpClient(timeout=2).send("GET", "http://127.0.0.1:9/")

    assert info.value.status is None
    assert info.value.maybe_applied is False  # never connected: it cannot have landed
    assert time.monotonic() - started < 5


def test_http_client_reply_lost_after_sending_may_have_landed() -> None:
    """A server that reads the request and hangs up: maybe_applied, and the request did arrive."""
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(65536))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(TransientHTTPError) as info:
            HttpClient(timeout=5).send(
                "POST", f"http://127.0.0.1:{listener.getsockname()[1]}/x", body=b"{}"
            )
    finally:
        thread.join(timeout=5)
        listener.close()

    assert (None, True) == (info.value.status, info.value.maybe_applied)
    [request] = got
    assert request.startswith(b"POST /x")
