"""A loopback webhook receiver that verifies both signature schemes.

Used by the demo to show the whole flow; the checks are the library's own
(:mod:`atlasreg_cursor.domain.signing`). It runs on a
:class:`~._server.BoundedHTTPServer` (bounded threads, per-connection
timeouts) and reads at most ``max_body`` bytes after validating
``Content-Length``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import attrs

from atlasreg_cursor.domain.errors import SignatureMismatch
from atlasreg_cursor.domain.signing import verify_legacy, verify_standard

from ._server import DEFAULT_MAX_BODY, BoundedHTTPServer, read_body


@attrs.frozen(kw_only=True)
class ReceivedWebhook:
    """One request the receiver got, and what verification said."""

    path: str
    headers: dict[str, str]
    body: bytes
    standard_ok: bool
    legacy_ok: bool

    @property
    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class WebhookReceiver:
    """Listens on 127.0.0.1; answers 204 when both signatures verify, else 401."""

    def __init__(
        self,
        secrets: tuple[str, ...],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        record_to: Path | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_workers: int = 4,
        idle_timeout: float = 5.0,
        request_deadline: float = 15.0,
    ) -> None:
        self.received: list[ReceivedWebhook] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = read_body(self, max_body)
                if body is None:
                    return
                headers = dict(self.headers.items())
                standard_ok = legacy_ok = True
                try:
                    verify_standard(body, headers, secrets)
                except SignatureMismatch:
                    standard_ok = False
                try:
                    verify_legacy(body, headers, secrets)
                except SignatureMismatch:
                    legacy_ok = False
                received = ReceivedWebhook(
                    path=self.path,
                    headers=headers,
                    body=body,
                    standard_ok=standard_ok,
                    legacy_ok=legacy_ok,
                )
                with outer._lock:
                    outer.received.append(received)
                    if record_to is not None:
                        outer._record(record_to, received)
                self.send_response(204 if standard_ok and legacy_ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

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
        self._thread.start()

    @staticmethod
    def _record(path: Path, received: ReceivedWebhook) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = {
            "path": received.path,
            "headers": received.headers,
            "body": received.body.decode("utf-8", "replace"),
            "standard_ok": received.standard_ok,
            "legacy_ok": received.legacy_ok,
        }
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")

    @property
    def url(self) -> str:
        """Base URL to use as ``HOOK_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
