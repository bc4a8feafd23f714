"""The notifier port (architecture §6 Notifier)."""

from __future__ import annotations

from typing import Protocol

import attrs

from atlasreg_cursor.domain.notifications import Notification


@attrs.frozen(kw_only=True)
class Receipt:
    """How a notification was delivered."""

    status_code: int
    attempts: int


class Notifier(Protocol):
    """Protocol: deliver signed webhooks, retrying what is worth retrying."""

    def send(self, notification: Notification) -> Receipt:
        """
        Deliver *notification* (same ``webhook-id`` on every attempt).

        Raises:
            NotificationRejected: a 4xx other than 408/429; not retried.
            NotificationUnavailable: 5xx, 408, 429 or network errors on every attempt.
        """
        ...
