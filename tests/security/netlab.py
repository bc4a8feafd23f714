"""A loopback test network: an "internal" server, hostile "public" sites, fake DNS.

The URL guard refuses loopback addresses (``ALLOW_PRIVATE_SOURCES`` stays
unset in these tests), yet every server here listens on 127.0.0.1. The seam
that lets a *legitimate* fetch reach a test site is :class:`FakeInternet`:

- :meth:`FakeInternet.resolver` answers fake public names (``news.test``)
  with public addresses from ``93.184.215.0/24`` (other names go to the
  system resolver, so ``localhost`` is still ``127.0.0.1``). It is passed to the guard
  as its resolver, so the guard's own address check runs unchanged on the
  answer: a name mapped to ``127.0.0.1`` (the rebinding trick) is refused
  exactly as a real one would be.
- :meth:`FakeInternet.dial` is the guarded client's ``dial``: it turns one of
  those public addresses into the loopback port of its test site, *after*
  the guard accepted it. An address it does not know raises, so no test
  can send traffic off the machine.

Neither is reachable from settings or the watchlist; production code builds
``GuardedClient(allow_private=...)`` with the system resolver and no dial.

The crawl process gets the same two tables through :meth:`FakeInternet.stub_network`,
passed as ``CrawlSessions(stub_network=...)`` (the process's own config,
never a crawl spec): its guard resolves with the programmed answers (a copy
taken when the process starts) and its resolver dials a vetted public
address at its site's loopback port, a loopback address as is (so a guard
failure would reach the internal server and fail the test), nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

from atlasreg_cursor.adapters._netguard import system_resolver
from atlasreg_cursor.adapters.http import GuardedClient

PUBLIC_NET = "93.184.215."


@attrs.frozen
class Seen:
    """One request a test server received."""

    method: str
    path: str
    headers: dict[str, str]


Route = Callable[[BaseHTTPRequestHandler, dict[str, list[str]]], None]


class RecordingServer:
    """A threaded loopback HTTP server that records every request it gets."""

    def __init__(
        self, routes: dict[str, Route] | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.requests: list[Seen] = []
        self.connections = 0
        self.routes = dict(routes or {})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def do_GET(self) -> None:
                outer.requests.append(
                    Seen(method="GET", path=self.path, headers=dict(self.headers.items()))
                )
                parts = urlsplit(self.path)
                route = outer.routes.get(parts.path)
                if route is None:
                    send(self, 404, b"not here")
                    return
                with contextlib.suppress(OSError):  # the client went away: fine
                    route(self, parse_qs(parts.query))

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    length: str | None = None,
) -> None:
    """Answer with *status* and *body* (``length`` overrides ``Content-Length``)."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", length if length is not None else str(len(body)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    handler.close_connection = True


class FakeInternet:
    """Fake public DNS names and addresses, each served by a loopback server."""

    def __init__(self) -> None:
        self._next = itertools.count(10)
        self._answers: dict[str, list[Sequence[str]]] = {}
        self._sites: dict[str, int] = {}
        self.lookups: list[str] = []
        self.dialled: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def add(self, name: str, server: RecordingServer) -> str:
        """Publish *server* as ``http://<name>:80``; return its public address."""
        address = f"{PUBLIC_NET}{next(self._next)}"
        self._sites[address] = server.port
        self._answers[name] = [[address]]
        return address

    def answer(self, name: str, *answers: Sequence[str]) -> None:
        """Program successive DNS answers for *name* (the last one repeats)."""
        self._answers[name] = [list(a) for a in answers]

    def address_of(self, name: str) -> str:
        """The public address *name* currently answers first."""
        return self._answers[name][0][0]

    def resolver(self, host: str, port: int) -> list[str]:
        """The guard's resolver: programmed answers, the system's for other names."""
        with self._lock:
            self.lookups.append(host)
            answers = self._answers.get(host)
            if not answers:
                return system_resolver(host, port)
            current = answers[0]
            if len(answers) > 1:
                answers.pop(0)
            return list(current)

    def dial(self, address: str, port: int) -> tuple[str, int]:
        """The client's dial: a known public address → its loopback site."""
        with self._lock:
            self.dialled.append((address, port))
        if address in self._sites:
            return "127.0.0.1", self._sites[address]
        raise OSError(f"{address} is not on the test network")

    def stub_network(self) -> dict[str, Any]:
        """The crawl process's ``stub_network``: these names and sites, as they are now."""
        with self._lock:
            answers = {name: [list(a) for a in seq] for name, seq in self._answers.items()}
            return {"answers": answers, "sites": dict(self._sites)}

    def client(self, **kwargs: Any) -> GuardedClient:
        """A guarded client on this network (private addresses NOT allowed)."""
        return GuardedClient(allow_private=False, resolver=self.resolver, dial=self.dial, **kwargs)


# --- hostile routes ----------------------------------------------------------------


def csv_route(body: bytes, content_type: str = "text/csv") -> Route:
    """Serve *body* as a CSV."""
    return lambda h, _q: send(h, 200, body, {"Content-Type": content_type})


def redirect_route(location: str, status: int = 302) -> Route:
    """Redirect to *location*."""
    return lambda h, _q: send(h, status, b"", {"Location": location})


def drip_route(interval: float = 0.2, *, headers_too: bool = False) -> Route:
    """Send one byte every *interval* seconds, forever (or until the client goes)."""

    def route(handler: BaseHTTPRequestHandler, _q: dict[str, list[str]]) -> None:
        out = handler.wfile
        if headers_too:
            out.write(b"HTTP/1.1 200 OK\r\n")
            out.flush()
            for _ in range(100_000):
                out.write(b"X")
                out.flush()
                time.sleep(interval)
            return
        out.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nConnection: close\r\n\r\n")
        out.write(b"title,url\n")
        out.flush()
        for _ in range(100_000):
            out.write(b"a")
            out.flush()
            time.sleep(interval)

    return route


def raw_route(payload: bytes) -> Route:
    """Write *payload* as the whole raw answer (status line and headers included)."""

    def route(handler: BaseHTTPRequestHandler, _q: dict[str, list[str]]) -> None:
        handler.wfile.write(payload)
        handler.wfile.flush()
        handler.close_connection = True

    return route
