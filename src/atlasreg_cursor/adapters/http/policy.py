"""The retry policy every HTTP client shares, and its one transient error.

Connection errors, 408, 429 and 5xx are :class:`TransientHTTPError`;
:func:`retry_hook` is stamina's ``on=`` for them (a ``Retry-After`` replaces
the backoff, capped at :data:`MAX_RETRY_AFTER`) and :func:`retrying` runs a
call under it. Never any other 4xx.
"""

from __future__ import annotations

import email.utils
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TypeVar

import attrs
import stamina
import urllib3

from atlasreg_cursor.domain.redaction import redact_text

T = TypeVar("T")

USER_AGENT = "atlasreg-cursor"
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({408, 429})


@attrs.frozen
class HttpResponse:
    """A response read whole: status, lower-cased headers, body."""

    status: int
    headers: Mapping[str, str]
    data: bytes = attrs.field(repr=False)

    def header(self, name: str) -> str | None:
        """One header's value (case-insensitive), ``None`` when absent."""
        return self.headers.get(name.lower())


class TransientHTTPError(Exception):
    """Raised when one HTTP attempt failed in a way worth retrying.

    That is a connection error, or a 408, 429 or 5xx answer (then
    ``status``, ``retry_after`` and the ``response`` are set).
    ``maybe_applied`` is true when the request may have reached the server
    and no answer came (the connection broke after it was sent, or the read
    timed out): a request that is not idempotent may have taken effect.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        response: HttpResponse | None = None,
        maybe_applied: bool = False,
    ) -> None:
        reason = redact_text(reason)
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.response = response
        self.maybe_applied = maybe_applied


class ResponseTooLarge(Exception):
    """Raised when a configured endpoint's answer is over the client's ``max_body``."""


def is_retryable_status(status: int) -> bool:
    """408, 429 and every 5xx are worth another attempt; nothing else is."""
    return status in RETRY_STATUSES or 500 <= status <= 599


def parse_retry_after(
    value: str | None, *, now: float | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """
    Read a ``Retry-After`` header (delay seconds or an HTTP date), capped.

    Returns:
        Seconds to wait, between 0 and *cap*; ``None`` when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def retry_hook(exc: Exception) -> bool | float:
    """stamina's ``on=``: retry :class:`TransientHTTPError`; its ``Retry-After`` wins."""
    if not isinstance(exc, TransientHTTPError):
        return False
    return exc.retry_after if exc.retry_after is not None else True


def retrying(
    call: Callable[[], T],
    *,
    attempts: int,
    timeout: float,
    wait_initial: float = 0.5,
    wait_max: float = 30.0,
) -> T:
    """
    Run *call* until it returns, retrying :class:`TransientHTTPError` with backoff.

    Raises:
        TransientHTTPError: the last one, once *attempts* or *timeout* are spent.
    """
    for attempt in stamina.retry_context(
        on=retry_hook,
        attempts=attempts,
        timeout=max(timeout, 0.001),
        wait_initial=wait_initial,
        wait_max=wait_max,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # pragma: no cover


def make_timeout(seconds: float, *, connect_max: float = 10.0) -> urllib3.Timeout:
    """A urllib3 timeout: *seconds* to read, at most *connect_max* to connect."""
    return urllib3.Timeout(connect=min(seconds, connect_max), read=seconds)


def safe_url(url: str) -> str:
    """The URL without user-info, query or fragment, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{shown}:{port}" if port else shown
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
