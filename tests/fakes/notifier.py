"""A Notifier that records what it was given; failures are programmable."""

from __future__ import annotations

import threading

from atlasreg_cursor.domain.errors import NotificationRejected, NotificationUnavailable
from atlasreg_cursor.domain.notifications import Notification
from atlasreg_cursor.ports.notifier import Receipt


class FakeNotifier:
    """``fail_next`` raises unavailable N times; ``reject_with`` rejects always."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[Notification] = []
        self.fail_next = 0
        self.reject_with: int | None = None

    def send(self, notification: Notification) -> Receipt:
        with self._lock:
            if self.reject_with is not None:
                raise NotificationRejected("rejected (fake)", status_code=self.reject_with)
            if self.fail_next:
                self.fail_next -= 1
                raise NotificationUnavailable("receiver is down (fake)")
            self.sent.append(notification)
            return Receipt(status_code=200, attempts=1)
