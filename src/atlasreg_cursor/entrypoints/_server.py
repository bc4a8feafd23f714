"""A small HTTP server that cannot be exhausted by idle or slow clients.

The health/metrics server and the demo webhook receiver use it instead of
``ThreadingHTTPServer`` (one unbounded thread per connection, no timeout):

- a fixed pool of ``max_workers`` handler threads; at most ``max_pending``
  connections are accepted and waiting or being served, any more are
  closed at once (so 300 idle connections never make 300 threads);
- every connection has an idle timeout (each read and write) and a whole
  request deadline, enforced by one reaper thread that shuts the socket of
  a request still running after ``request_deadline`` seconds (a client
  dripping a header byte at a time is cut);
- one request per connection (HTTP/1.0), and :func:`read_body` validates
  ``Content-Length`` (digits only, one value, at most ``max_body`` bytes;
  chunked bodies are refused).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import structlog

log = structlog.get_logger()

DEFAULT_MAX_WORKERS = 8
DEFAULT_MAX_PENDING = 32
DEFAULT_IDLE_TIMEOUT = 5.0
DEFAULT_REQUEST_DEADLINE = 15.0
DEFAULT_MAX_BODY = 1 * 2**20
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")


class _Reaper:
    """One thread that shuts sockets whose request outlived its deadline."""

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-reaper", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            self._deadlines[sock] = deadline

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                late = [s for s, deadline in self._deadlines.items() if deadline <= now]
                for sock in late:
                    del self._deadlines[sock]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class BoundedHTTPServer(HTTPServer):
    """
    An ``HTTPServer`` with bounded threads, per-connection timeouts and deadlines.

    Args:
        address: ``(host, port)`` to bind.
        handler: the request handler class (its ``timeout`` is set to *idle_timeout*).
        max_workers: handler threads.
        max_pending: most connections accepted at once (served or waiting).
        idle_timeout: seconds a connection may stay silent.
        request_deadline: seconds one request may take in all.
    """

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_pending: int = DEFAULT_MAX_PENDING,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
    ) -> None:
        if max_workers < 1 or max_pending < max_workers:
            raise ValueError("need max_workers >= 1 and max_pending >= max_workers")
        handler.timeout = idle_timeout
        self.idle_timeout = idle_timeout
        self.request_deadline = request_deadline
        self.rejected = 0
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="http")
        self._reaper = _Reaper()
        # Last: a failed bind calls server_close(), which needs the parts above.
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to the pool, or close it when the server is full."""
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            self.shutdown_request(request)
            return
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is closing
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request: socket.socket, client_address: Any) -> None:
        self._reaper.add(request, time.monotonic() + self.request_deadline)
        try:
            request.settimeout(self.idle_timeout)
            self.finish_request(request, client_address)
        except Exception as exc:  # a broken client must not kill a worker
            log.debug("http.request_failed", error=type(exc).__name__)
        finally:
            self._reaper.remove(request)
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about broken clients (no tracebacks with client data)."""
        log.debug("http.client_error")

    def server_close(self) -> None:
        """Close the socket, stop the workers and the reaper."""
        super().server_close()
        self._reaper.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


def read_body(handler: BaseHTTPRequestHandler, max_body: int = DEFAULT_MAX_BODY) -> bytes | None:
    """
    Read a request body after validating ``Content-Length``.

    Returns:
        The body, or ``None`` after answering 400, 411 or 413 (the caller stops).
    """
    if handler.headers.get("Transfer-Encoding") is not None:
        _refuse(handler, 411, "chunked bodies are not accepted; send Content-Length")
        return None
    values = handler.headers.get_all("Content-Length") or []
    if not values:
        _refuse(handler, 411, "Content-Length is required")
        return None
    if len(values) > 1 or not _CONTENT_LENGTH.fullmatch(values[0].strip()):
        _refuse(handler, 400, "malformed Content-Length")
        return None
    length = int(values[0])
    if length > max_body:
        _refuse(handler, 413, f"the body is over {max_body} bytes")
        return None
    body = handler.rfile.read(length)
    if len(body) != length:
        _refuse(handler, 400, "the body is shorter than its Content-Length")
        return None
    return body


def _refuse(handler: BaseHTTPRequestHandler, status: int, reason: str) -> None:
    data = reason.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(data)
