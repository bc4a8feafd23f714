"""A loopback site for the executor contract, on several 127.0.0.x hosts.

One port, one server per host address (127.0.0.2 … 127.0.0.5), a shared
record of what was asked: requests per path, and per host the requests in
progress and the most seen at once (how per-host limits are checked).

Paths:

- ``/api/avisos`` — a JSON API (``data.items``) of :data:`CATALOGUE`;
- ``/noticias/`` — the same items as a newsroom page (``sample_news`` reads it);
- ``/delay?seconds=S`` — the API answer after *S* seconds;
- ``/slow?seconds=S`` — hangs *S* seconds (the server stops it on close);
- ``/privado/…`` — the same answers under a prefix robots.txt disallows;
- ``/robots.txt`` — ``Disallow: /privado/`` for every agent (not recorded).
"""

from __future__ import annotations

import collections
import html
import json
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOSTS = tuple(f"127.0.0.{n}" for n in range(2, 6))
ROBOTS_TXT = b"User-agent: *\nDisallow: /privado/\n"

#: (slug, title, summary) of every item the site lists.
CATALOGUE = (
    (
        "multa-transmissora",
        "ANEEL aplica multa à Transmissora Paulista",
        "Auto de infração lavrado.",
    ),
    ("leilao-2026", "Leilão de transmissão de 2026 tem data", "Edital publicado."),
    ("consulta-tarifas", "Consulta pública sobre tarifas", "Contribuições até dezembro."),
    ("auto-infracao", "Distribuidora recebe MULTA de R$ 1,5 milhão", "Decisão da diretoria."),
    ("relatorio-anual", "Relatório anual do setor elétrico", "Números de 2025."),
)


class Record:
    """What the site was asked, shared by its servers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits: collections.Counter[str] = collections.Counter()
        self.now: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()

    def enter(self, host: str, path: str) -> None:
        with self._lock:
            self.hits[path] += 1
            self.now[host] += 1
            self.most[host] = max(self.most[host], self.now[host])

    def leave(self, host: str) -> None:
        with self._lock:
            self.now[host] -= 1

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.most.clear()


def _api_body() -> bytes:
    items = [
        {"titulo": title, "link": f"/noticias/{slug}", "resumo": summary, "data": "2026-11-24"}
        for slug, title, summary in CATALOGUE
    ]
    return json.dumps({"data": {"items": items}}, ensure_ascii=False).encode("utf-8")


def _newsroom_body() -> bytes:
    articles = "".join(
        f'<article><h2><a href="/noticias/{slug}">{html.escape(title)}</a></h2>'
        f'<time datetime="2026-11-24T10:00:00-03:00">24/11</time>'
        f'<p class="description">{html.escape(summary)}</p></article>'
        for slug, title, summary in CATALOGUE
    )
    return f"<html><body>{articles}</body></html>".encode()


class ContractSite:
    """The site's servers, one per address of :data:`HOSTS`, on one port."""

    def __init__(self) -> None:
        self.record = Record()
        self.stopping = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        port = 0
        for host in HOSTS:
            server = ThreadingHTTPServer((host, port), _handler(self))
            server.daemon_threads = True
            port = server.server_address[1]
            self._servers.append(server)
        self.port = port
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        for thread in self._threads:
            thread.start()

    def url(self, path: str, host: str = HOSTS[0]) -> str:
        """``http://host:port/path``."""
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        """Stop every server (hanging answers end at once)."""
        self.stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _handler(site: ContractSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parts.query)
            seconds = float((query.get("seconds") or ["0"])[0])
            host = self.server.server_address[0]
            if parts.path == "/robots.txt":
                self._send(200, ROBOTS_TXT, "text/plain")
                return
            site.record.enter(str(host), parts.path)
            path = parts.path.removeprefix("/privado")
            try:
                if path in ("/api/avisos", "/delay"):
                    site.stopping.wait(seconds)
                    self._send(200, _api_body(), "application/json")
                elif path in ("/noticias", "/noticias/"):
                    self._send(200, _newsroom_body(), "text/html; charset=utf-8")
                elif path == "/slow":
                    if self._wait_while_connected(seconds):
                        self._send(200, _newsroom_body(), "text/html; charset=utf-8")
                else:
                    self._send(404, b"", "text/plain")
            finally:
                site.record.leave(str(host))

        def _wait_while_connected(self, seconds: float) -> bool:
            """Wait *seconds*; ``False`` as soon as the client hangs up (or the site stops)."""
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                if site.stopping.is_set():
                    return False
                readable, _, _ = select.select([self.connection], [], [], 0.1)
                if readable:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            return False
                    except OSError:
                        return False
            return True

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


@pytest.fixture(scope="session")
def contract_site() -> Iterator[ContractSite]:
    """The contract site for the whole session (its record reset per test by users)."""
    site = ContractSite()
    time.sleep(0)  # the servers listen from their constructor on
    yield site
    site.close()
