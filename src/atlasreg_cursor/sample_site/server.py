"""The bundled sample site: a small Brazilian power-sector portal on loopback.

Serves the files under ``content/`` (package data) over a stdlib
``ThreadingHTTPServer`` in a daemon thread:

- ``/`` — an index page;
- ``/noticias/`` and ``/noticias/?page=N`` — a newsroom listing in three pages
  of ``<article>`` items linked by a "próxima" link;
- ``/api/avisos`` — a JSON API shaped ``{"data": {"items": [...]}}``;
- ``/dados/ocorrencias.csv`` — a ``;``-delimited CSV (``?stream=1`` sends it
  without ``Content-Length``);
- ``/broken`` — always HTTP 500;
- ``/slow?seconds=N`` — answers after sleeping N seconds (at most 120).

Reads no settings. Used by ``atlasreg-cursor demo`` and by the tests.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType

import structlog

log = structlog.get_logger()

MAX_SLOW_SECONDS = 120.0
NEWSROOM_PAGES = 3

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}


def _content(relative: str) -> bytes:
    """Return the bytes of a file under ``content/``."""
    return resources.files(__package__).joinpath("content", relative).read_bytes()


def _route(path: str, query: dict[str, list[str]]) -> str | None:
    """Map a request path to a file under ``content/``, or ``None``."""
    if path in ("/", "/index.html"):
        return "index.html"
    if path in ("/noticias", "/noticias/"):
        page = (query.get("page") or ["1"])[0]
        if page.isdigit() and 1 <= int(page) <= NEWSROOM_PAGES:
            return f"noticias/pagina-{int(page)}.html"
        return None
    if path in ("/api/avisos", "/api/avisos/"):
        return "api/avisos.json"
    if path == "/dados/ocorrencias.csv":
        return "dados/ocorrencias.csv"
    return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "SampleSite/1.0"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        if parsed.path == "/broken":
            self._send(500, b"<h1>Erro interno</h1>", "text/html; charset=utf-8")
            return
        if parsed.path == "/slow":
            self._slow(query)
            return
        name = _route(parsed.path, query)
        if name is None:
            self._send(404, b"<h1>Nao encontrado</h1>", "text/html; charset=utf-8")
            return
        body = _content(name)
        content_type = _TYPES[name[name.rfind(".") :]]
        if (query.get("stream") or ["0"])[0] == "1":
            self._send_streamed(body, content_type)
        else:
            self._send(200, body, content_type)

    def _slow(self, query: dict[str, list[str]]) -> None:
        try:
            seconds = float((query.get("seconds") or ["30"])[0])
        except ValueError:
            seconds = 30.0
        time.sleep(max(0.0, min(seconds, MAX_SLOW_SECONDS)))
        with contextlib.suppress(OSError):
            self._send(200, _content("noticias/pagina-3.html"), _TYPES[".html"])

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_streamed(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for start in range(0, len(body), 64):
            self.wfile.write(body[start : start + 64])

    def log_message(self, format: str, *args: object) -> None:
        log.debug("sample_site.request", line=format % args)


class SampleSite:
    """
    The sample site, serving in a daemon thread until :meth:`stop`.

    Args:
        host: address to bind (loopback by default).
        port: TCP port; 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sample-site",
            daemon=True,
        )
        self._stopped = False

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the site, without a trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SampleSite:
        """Start serving; returns the site itself."""
        self._thread.start()
        log.debug("sample_site.started", url=self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> SampleSite:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sample_site(host: str = "127.0.0.1", port: int = 0) -> SampleSite:
    """
    Serve the sample site in a daemon thread.

    Args:
        host: address to bind (loopback by default).
        port: TCP port; 0 picks a free one.

    Returns:
        The running :class:`SampleSite`; call ``stop()`` or use it as a
        context manager.
    """
    return SampleSite(host, port).start()
