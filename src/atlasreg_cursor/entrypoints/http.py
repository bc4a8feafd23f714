"""The daemon's HTTP side: ``/healthz``, ``/readyz`` and ``/metrics``.

GET only, on a :class:`~._server.BoundedHTTPServer`: a few handler threads,
per-connection timeouts and a whole-request deadline, so idle or slow
clients cannot exhaust the daemon. Bind it to loopback (``METRICS_HOST``,
the default) or a private network: it needs no authentication and must not
be exposed (SECURITY.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ._server import BoundedHTTPServer


class HealthServer:
    """
    Serves health and metrics on a background thread.

    Args:
        host: address to bind (``METRICS_HOST``).
        port: port to bind (``METRICS_PORT``; 0 picks a free one).
        ready: returns ``(ready, detail)`` for ``/readyz``; also called before
            each ``/metrics`` answer, so a readiness gauge it sets is current.
        health: returns ``(alive, detail)`` for ``/healthz`` (default: always alive).
        max_workers: handler threads.
        idle_timeout: seconds a connection may stay silent.
        request_deadline: seconds one request may take in all.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], tuple[bool, dict[str, Any]]],
        health: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
        *,
        max_workers: int = 4,
        idle_timeout: float = 5.0,
        request_deadline: float = 15.0,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    alive, about = health() if health else (True, {})
                    status = {"status": "ok" if alive else "wedged", **about}
                    outer._send(self, 200 if alive else 503, status)
                elif self.path == "/readyz":
                    ok, detail = ready()
                    outer._send(self, 200 if ok else 503, {"ready": ok, **detail})
                elif self.path == "/metrics":
                    ready()  # cursor_ready as of this scrape (a hung probe shows)
                    body = generate_latest()
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    outer._send(self, 404, {"error": "not found"})

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = BoundedHTTPServer(
            (host, port),
            Handler,
            max_workers=max_workers,
            max_pending=max_workers * 4,
            idle_timeout=idle_timeout,
            request_deadline=request_deadline,
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
