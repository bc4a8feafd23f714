"""Notifier over HTTP: signed webhooks to the Worker (DESIGN §8), with urllib3.

POSTs exactly ``notification.body`` to ``HOOK_ENDPOINT`` + the notification's
path, signed by :class:`~atlasreg_cursor.domain.signing.WebhookSigner`
(Standard Webhooks and/or the legacy ``X-Signature``), with a fresh
``webhook-timestamp`` per attempt and the same ``webhook-id`` throughout.

2xx is delivered. 408, 429, 5xx and network errors are retried with
stamina (exponential backoff with jitter; a ``Retry-After`` in seconds or as
a date on 429/503 is honoured, capped), then ``NotificationUnavailable``.
Any other status (3xx included: redirects are never followed) is
``NotificationRejected``. Neither the body nor a secret is ever logged.

Settings read (by the composition root): ``HOOK_ENDPOINT``,
``HOOK_HMAC_SECRET``, ``HOOK_HMAC_ADDITIONAL_SECRETS``.
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse

import stamina
import structlog
import urllib3

from atlasreg_cursor.domain.errors import NotificationRejected, NotificationUnavailable
from atlasreg_cursor.domain.notifications import Notification
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports.notifier import Receipt

from . import metrics

log = structlog.get_logger()

USER_AGENT = "atlasreg-cursor"
RETRY_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 60.0


class _Transient(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(
        self, reason: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.retry_after = retry_after


def _backoff_hook(exc: Exception) -> bool | float:
    """Retry transient failures; a ``Retry-After`` replaces the computed backoff."""
    if not isinstance(exc, _Transient):
        return False
    if exc.retry_after is not None:
        return exc.retry_after
    return True


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Read a ``Retry-After`` header (delay seconds or an HTTP date), capped.

    Returns:
        Seconds to wait, between 0 and :data:`MAX_RETRY_AFTER`; ``None`` when
        absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _safe_url(url: str) -> str:
    """The URL without user info, query or fragment, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WebhookNotifier:
    """
    Deliver signed webhooks over HTTP(S).

    Args:
        endpoint: base URL (``HOOK_ENDPOINT``); the notification path is appended.
        signer: produces the signature headers.
        timeout: seconds per request (connect and read).
        attempts: most requests per notification.
        retry_timeout: most seconds spent retrying one notification.
        pool: a urllib3 pool to share (one is made otherwise).
    """

    def __init__(
        self,
        endpoint: str,
        signer: WebhookSigner,
        *,
        timeout: float = 15.0,
        attempts: int = 6,
        retry_timeout: float = 120.0,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        if urllib.parse.urlsplit(endpoint).scheme not in {"http", "https"}:
            raise ValueError("the webhook endpoint must be an http(s) URL")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.endpoint = endpoint
        self._signer = signer
        self._timeout = urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
        self._attempts = attempts
        self._retry_timeout = retry_timeout
        self._pool = pool or urllib3.PoolManager(num_pools=4, maxsize=4)

    def __repr__(self) -> str:
        return f"WebhookNotifier(endpoint={_safe_url(self.endpoint)!r})"

    def send(self, notification: Notification) -> Receipt:
        """
        POST *notification*, retrying what is worth retrying.

        Returns:
            The 2xx status and how many requests it took.

        Raises:
            NotificationRejected: the receiver answered a non-retryable status.
            NotificationUnavailable: every attempt failed transiently.
        """
        url = self.endpoint.rstrip("/") + notification.path
        ctx = {
            "event_type": notification.event_type,
            "run_id": notification.run_id,
            "webhook_id": notification.webhook_id,
            "url": _safe_url(url),
        }
        count = 0
        try:
            for attempt in stamina.retry_context(
                on=_backoff_hook,
                attempts=self._attempts,
                timeout=self._retry_timeout,
                wait_initial=1.0,
                wait_max=30.0,
            ):
                with attempt:
                    count += 1
                    status = self._post(url, notification, ctx, count)
        except _Transient as exc:
            metrics.NOTIFICATIONS.labels(notification.event_type, "unavailable").inc()
            log.warning("webhook.unavailable", attempts=count, error=exc.reason, **ctx)
            raise NotificationUnavailable(
                f"webhook {notification.webhook_id} to {ctx['url']} failed after "
                f"{count} attempts: {exc.reason}"
            ) from None
        except NotificationRejected:
            metrics.NOTIFICATIONS.labels(notification.event_type, "rejected").inc()
            raise
        metrics.NOTIFICATIONS.labels(notification.event_type, "delivered").inc()
        log.info("webhook.delivered", status_code=status, attempts=count, **ctx)
        return Receipt(status_code=status, attempts=count)

    def _post(self, url: str, notification: Notification, ctx: dict[str, str], n: int) -> int:
        """One request; return the 2xx status or raise."""
        headers = self._signer.headers(
            notification.webhook_id, notification.body, timestamp=int(time.time())
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        try:
            response = self._pool.request(
                "POST",
                url,
                body=notification.body,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            log.debug("webhook.attempt_failed", attempt=n, error=type(exc).__name__, **ctx)
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        try:
            response.drain_conn()
        finally:
            response.release_conn()
        status = response.status
        log.debug("webhook.attempt", attempt=n, status_code=status, **ctx)
        if 200 <= status < 300:
            return status
        if status in RETRY_STATUSES or 500 <= status < 600:
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _Transient(f"HTTP {status}", status_code=status, retry_after=retry_after)
        log.warning("webhook.rejected", status_code=status, attempt=n, **ctx)
        raise NotificationRejected(
            f"webhook {notification.webhook_id} to {ctx['url']} rejected with HTTP {status}",
            status_code=status,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.clear()
