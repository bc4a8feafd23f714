"""The guarded client: every request made on behalf of a watchlist URL.

Each hop (redirects included, at most ``max_redirects``) passes the URL guard
(:func:`~atlasreg_cursor.adapters._netguard.vet_url`), which parses the URL
with urllib3's own parser and resolves the host once; the connection is then
opened to a vetted address, keeping the host name for SNI, the certificate
check and the ``Host`` header. The whole fetch has a deadline, enforced by a
watchdog that shuts the socket, so a server dripping a byte a second cannot
hold it past the deadline; a garbage ``Content-Length`` and a body over
``max_bytes`` (compressed bodies counted decompressed, inflated in bounded
steps) are refused. Messages never echo the response's content.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import socket
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from atlasreg_cursor.adapters._netguard import Resolver, VettedURL, vet_url
from atlasreg_cursor.domain.errors import SourceFailed

from .policy import USER_AGENT, TransientHTTPError, is_retryable_status, parse_retry_after, safe_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")

#: ``(address, port) -> (address, port)`` actually dialled; the identity in production.
Dialer = Callable[[str, int], tuple[str, int]]


@attrs.frozen(kw_only=True)
class Fetched:
    """A guarded GET's outcome: the final (vetted) URL, status, headers and body."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes = attrs.field(repr=False)


class _Watchdog:
    """Shut the current connection's socket at the deadline, or when *cancel* is set."""

    def __init__(self, deadline: float, cancel: threading.Event | None = None) -> None:
        self.fired = False
        self.cancelled = False
        self._lock = threading.Lock()
        self._conn: HTTPConnection | None = None
        self._done = threading.Event()
        self._cancel = cancel or threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(deadline,), name="fetch-watchdog", daemon=True
        )
        self._thread.start()

    def watch(self, conn: HTTPConnection | None) -> None:
        with self._lock:
            self._conn = conn
            if self.fired:
                _shut(conn)

    def _run(self, deadline: float) -> None:
        while not self._done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._cancel.wait(min(left, 0.25)):
                self.cancelled = True
                break
        if self._done.is_set():
            return
        with self._lock:
            self.fired = True
            _shut(self._conn)

    def cancel(self) -> None:
        self._done.set()


def _shut(conn: HTTPConnection | None) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class GuardedClient:
    """
    GET watchlist URLs through the URL guard, pinned to the vetted addresses.

    Args:
        allow_private: ``ALLOW_PRIVATE_SOURCES`` (lifts only the address check).
        user_agent: the ``User-Agent`` header.
        max_redirects: most redirects followed (each hop vetted again).
        connect_timeout: most seconds to open one connection.
        resolver: resolves host names for the guard (the system's by default).
        ssl_context: the TLS context (system CAs by default).
        dial: where to open the TCP connection for a vetted address; the
            identity by default. Tests map their fake public addresses to
            loopback servers with it; it is applied only after the guard
            accepted the address, so it cannot widen what is fetched.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        user_agent: str = USER_AGENT,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        connect_timeout: float = 10.0,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        dial: Dialer | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.max_redirects = max_redirects
        self.connect_timeout = connect_timeout
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._dial = dial

    def __repr__(self) -> str:
        return f"GuardedClient(allow_private={self.allow_private!r})"

    def vet(self, url: str) -> VettedURL:
        """
        Vet *url* with this client's rules (what :meth:`fetch` does per hop).

        Raises:
            SourceFailed: ``invalid_url``, ``forbidden_address`` or ``network_error``.
        """
        return vet_url(url, allow_private=self.allow_private, resolver=self._resolver)

    def fetch(
        self,
        url: str,
        *,
        deadline: float,
        max_bytes: int,
        accept: str = "*/*",
        cancel: threading.Event | None = None,
        user_agent: str | None = None,
    ) -> Fetched:
        """
        GET *url*, following redirects, and return the 2xx body.

        Args:
            url: the (untrusted) URL.
            deadline: ``time.monotonic()`` by which everything must be done.
            max_bytes: refuse bodies larger than this (decompressed).
            accept: the ``Accept`` header.
            cancel: when set (from another thread), the connection is shut
                and the fetch fails as ``cancelled``.
            user_agent: the ``User-Agent`` for this fetch (the client's otherwise).

        Raises:
            SourceFailed: ``invalid_url``, ``forbidden_address``,
                ``network_error`` (does not resolve), ``http_error`` (another
                status, too many redirects), ``too_large``, ``timeout``,
                ``invalid_response`` (garbage ``Content-Length``, unknown
                encoding, malformed answer), ``tls_error`` or ``cancelled``.
            TransientHTTPError: a connection error or a 408/429/5xx answer.
        """
        watchdog = _Watchdog(deadline, cancel)
        headers = {"User-Agent": user_agent or self.user_agent, "Accept": accept}
        try:
            for _hop in range(self.max_redirects + 1):
                vetted = self.vet(url)
                _check_time(deadline, vetted.url, watchdog)
                outcome = self._once(vetted, deadline, max_bytes, headers, watchdog)
                if isinstance(outcome, Fetched):
                    return outcome
                url = outcome
            raise SourceFailed(
                f"more than {self.max_redirects} redirects from {safe_url(url)}",
                error_type="http_error",
            )
        finally:
            watchdog.cancel()

    # --- one hop ------------------------------------------------------------------

    def _once(
        self,
        vetted: VettedURL,
        deadline: float,
        max_bytes: int,
        headers: Mapping[str, str],
        watchdog: _Watchdog,
    ) -> Fetched | str:
        shown = safe_url(vetted.url)
        conn = self._connect(vetted, deadline, watchdog)
        try:
            try:
                conn.request(
                    "GET",
                    vetted.request_target,
                    headers={
                        "Host": vetted.host_header,
                        **headers,
                        "Accept-Encoding": "gzip, deflate",
                        "Connection": "close",
                    },
                    preload_content=False,
                    decode_content=False,
                )
                response = conn.getresponse()
            except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
                raise _read_failure(exc, shown, deadline, watchdog) from None
            status = response.status
            location = response.headers.get("Location")
            if status in REDIRECT_STATUSES and location:
                return urllib.parse.urljoin(vetted.url, location.strip())
            if is_retryable_status(status):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    retry_after = min(retry_after, max(0.0, deadline - time.monotonic()))
                raise TransientHTTPError(
                    f"HTTP {status} from {shown}", status=status, retry_after=retry_after
                )
            if not 200 <= status < 300:
                raise SourceFailed(f"HTTP {status} from {shown}", error_type="http_error")
            body = self._read(response, shown, max_bytes, deadline, watchdog)
            headers = {k.lower(): v for k, v in response.headers.items()}
            return Fetched(url=vetted.url, status=status, headers=headers, body=body)
        finally:
            watchdog.watch(None)
            conn.close()

    def _connect(self, vetted: VettedURL, deadline: float, watchdog: _Watchdog) -> HTTPConnection:
        """Open a connection to the first vetted address that answers."""
        failure = "no address"
        for address in vetted.addresses:
            remaining = _check_time(deadline, vetted.url, watchdog)
            host, port = self._dial(address, vetted.port) if self._dial else (address, vetted.port)
            timeout = min(self.connect_timeout, remaining)
            conn: HTTPConnection
            if vetted.scheme == "https":
                conn = HTTPSConnection(
                    host,
                    port,
                    timeout=timeout,
                    server_hostname=vetted.host,
                    ssl_context=self._ssl_context,
                    cert_reqs="CERT_REQUIRED",
                )
            else:
                conn = HTTPConnection(host, port, timeout=timeout)
            watchdog.watch(conn)
            try:
                conn.connect()
            except (urllib3.exceptions.SSLError, ssl.SSLError) as exc:
                conn.close()
                raise SourceFailed(
                    f"TLS with {safe_url(vetted.url)} failed: {exc}", error_type="tls_error"
                ) from None
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                conn.close()
                failure = f"{type(exc).__name__}"
                continue
            if conn.sock is not None:
                conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
            return conn
        _check_time(deadline, vetted.url, watchdog)
        raise TransientHTTPError(f"cannot connect to {safe_url(vetted.url)}: {failure}")

    def _read(
        self,
        response: urllib3.BaseHTTPResponse,
        shown: str,
        max_bytes: int,
        deadline: float,
        watchdog: _Watchdog,
    ) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None:
            if not _CONTENT_LENGTH.fullmatch(declared.strip()):
                raise SourceFailed(
                    f"{shown} sent a malformed Content-Length", error_type="invalid_response"
                )
            if int(declared) > max_bytes:
                raise SourceFailed(
                    f"{shown} is {int(declared)} bytes, over the {max_bytes}-byte limit",
                    error_type="too_large",
                )
        decoder = _decoder(response.headers.get("Content-Encoding"), shown)
        buffer = bytearray()
        try:
            while True:
                chunk = response.read1(CHUNK_BYTES, decode_content=False)
                if not chunk:
                    break
                buffer += _decode(decoder, chunk, max_bytes - len(buffer), shown)
                if len(buffer) > max_bytes:
                    raise SourceFailed(
                        f"{shown} is over the {max_bytes}-byte limit", error_type="too_large"
                    )
                _check_time(deadline, shown, watchdog)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            raise _read_failure(exc, shown, deadline, watchdog) from None
        _check_time(deadline, shown, watchdog)
        if decoder is not None:
            buffer += _decode(decoder, b"", max_bytes - len(buffer), shown, final=True)
        return bytes(buffer)


def _check_time(deadline: float, url: str, watchdog: _Watchdog) -> float:
    if watchdog.cancelled:
        raise SourceFailed(f"download of {safe_url(url)} was cancelled", error_type="cancelled")
    remaining = deadline - time.monotonic()
    if remaining <= 0 or watchdog.fired:
        raise SourceFailed(f"download of {safe_url(url)} ran out of time", error_type="timeout")
    return remaining


def _read_failure(
    exc: BaseException, shown: str, deadline: float, watchdog: _Watchdog
) -> Exception:
    """Classify a failure while talking to the source."""
    if watchdog.cancelled:
        return SourceFailed(f"download of {shown} was cancelled", error_type="cancelled")
    if watchdog.fired or time.monotonic() >= deadline:
        return SourceFailed(f"download of {shown} ran out of time", error_type="timeout")
    if isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError):
        return SourceFailed(f"download of {shown} timed out", error_type="timeout")
    malformed = isinstance(
        exc, urllib3.exceptions.InvalidHeader | urllib3.exceptions.HeaderParsingError
    ) or (
        isinstance(exc, http.client.HTTPException)
        and not isinstance(exc, http.client.RemoteDisconnected | http.client.IncompleteRead)
    )
    if malformed:
        return SourceFailed(
            f"{shown} sent a malformed answer ({type(exc).__name__})",
            error_type="invalid_response",
        )
    return TransientHTTPError(f"download of {shown} failed: {type(exc).__name__}")


_Decoder = Any


def _decoder(encoding: str | None, shown: str) -> _Decoder | None:
    name = (encoding or "identity").strip().lower()
    if name in {"identity", ""}:
        return None
    if name in {"gzip", "x-gzip"}:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise SourceFailed(
        f"{shown} sent an unsupported Content-Encoding {name[:40]!r}",
        error_type="invalid_response",
    )


def _decode(
    decoder: _Decoder | None, chunk: bytes, room: int, shown: str, *, final: bool = False
) -> bytes:
    """Decompress at most *room* + 1 bytes of *chunk* (a bomb is cut, not inflated)."""
    if decoder is None:
        return chunk
    try:
        out: bytes = decoder.flush() if final else decoder.decompress(chunk, max(room, 0) + 1)
    except zlib.error:
        raise SourceFailed(
            f"{shown} sent a corrupt compressed body", error_type="invalid_response"
        ) from None
    if len(out) > room or (not final and decoder.unconsumed_tail):
        raise SourceFailed(
            f"{shown} is over the size limit once decompressed", error_type="too_large"
        )
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(body: bytes, *, max_depth: int = 64, origin: str = "the answer") -> Any:
    """
    Parse strict UTF-8 JSON: no ``NaN``/``Infinity``, finite floats, bounded nesting.

    Raises:
        SourceFailed: ``parse_error`` naming the problem, never echoing the body.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceFailed(f"{origin} is not UTF-8", error_type="parse_error") from None
    depth = 0
    deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                raise SourceFailed(
                    f"{origin} is nested more than {max_depth} levels", error_type="parse_error"
                )
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:80]
        raise SourceFailed(
            f"{origin} is not valid JSON: {reason}", error_type="parse_error"
        ) from None
