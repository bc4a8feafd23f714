"""Notifier over HTTP: signed webhooks to the Worker (architecture §8), with urllib3.

POSTs exactly ``notification.body`` to ``HOOK_ENDPOINT`` + the notification's
path, signed by :class:`~atlasreg_cursor.domain.signing.WebhookSigner`
(Standard Webhooks and/or the legacy ``X-Signature``), with a fresh
``webhook-timestamp`` per attempt and the same ``webhook-id`` throughout.

2xx is delivered. 408, 429, 5xx and network errors are retried (the shared
HTTP layer, :mod:`atlasreg_cursor.adapters.http`: exponential backoff with
jitter; a ``Retry-After`` in seconds or as
a date is honoured, capped), then ``NotificationUnavailable``.
Any other status (3xx included: redirects are never followed) is
``NotificationRejected``. Neither the body nor a secret is ever logged.

Settings read (by the composition root): ``HOOK_ENDPOINT``,
``HOOK_HMAC_SECRET``, ``HOOK_HMAC_ADDITIONAL_SECRETS``.
"""

from __future__ import annotations

import time
import urllib.parse

import structlog
import urllib3

from atlasreg_cursor.domain.errors import NotificationRejected, NotificationUnavailable
from atlasreg_cursor.domain.notifications import Notification
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports.notifier import Receipt

from . import metrics
from .http import MAX_RETRY_AFTER, HttpClient, TransientHTTPError, parse_retry_after, retrying
from .http import safe_url as _safe_url

log = structlog.get_logger()

USER_AGENT = "atlasreg-cursor"

__all__ = ["MAX_RETRY_AFTER", "WebhookNotifier", "parse_retry_after"]


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
        self._attempts = attempts
        self._retry_timeout = retry_timeout
        self._http = HttpClient(
            timeout=timeout,
            pool=pool or urllib3.PoolManager(num_pools=4, maxsize=4),
            user_agent=USER_AGENT,
        )

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

        def attempt() -> int:
            nonlocal count
            count += 1
            return self._post(url, notification, ctx, count)

        try:
            status = retrying(
                attempt,
                attempts=self._attempts,
                timeout=self._retry_timeout,
                wait_initial=1.0,
                wait_max=30.0,
            )
        except TransientHTTPError as exc:
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
        try:
            response = self._http.send(
                "POST", url, body=notification.body, headers=headers, read_body=False
            )
        except TransientHTTPError as exc:
            log.debug(
                "webhook.attempt_failed", attempt=n, status_code=exc.status, error=exc.reason, **ctx
            )
            raise
        status = response.status
        log.debug("webhook.attempt", attempt=n, status_code=status, **ctx)
        if 200 <= status < 300:
            return status
        log.warning("webhook.rejected", status_code=status, attempt=n, **ctx)
        raise NotificationRejected(
            f"webhook {notification.webhook_id} to {ctx['url']} rejected with HTTP {status}",
            status_code=status,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()
