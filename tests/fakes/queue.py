"""An in-memory MessageQueue with leases driven by an injectable clock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import attrs

from atlasreg_cursor.domain.errors import LeaseExpired
from atlasreg_cursor.ports.queue import Delivery, QueueStats


@attrs.define
class _Entry:
    message_id: str
    body: bytes
    attempts: int = 0
    visible_at: float = 0.0
    token: str | None = None


class FakeQueue:
    """Messages in a list; state per instance."""

    def __init__(
        self, *, visibility_timeout: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.visibility_timeout = visibility_timeout
        self.clock = clock
        self._lock = threading.Lock()
        self.entries: list[_Entry] = []
        self.dead: list[tuple[bytes, str]] = []
        self.acked: list[str] = []
        self.retries: list[tuple[str, float]] = []

    def receive(self, max_messages: int = 1, wait_seconds: float = 0.0) -> list[Delivery]:
        with self._lock:
            now = self.clock()
            out = []
            for entry in self.entries:
                if len(out) >= max_messages:
                    break
                if entry.visible_at <= now:
                    entry.attempts += 1
                    entry.token = uuid.uuid4().hex
                    entry.visible_at = now + self.visibility_timeout
                    out.append(
                        Delivery(
                            message_id=entry.message_id,
                            body=entry.body,
                            attempts=entry.attempts,
                            lease_token=entry.token,
                        )
                    )
            return out

    def _take(self, delivery: Delivery) -> _Entry:
        for entry in self.entries:
            if entry.message_id == delivery.message_id and entry.token == delivery.lease_token:
                if entry.visible_at <= self.clock():
                    break
                return entry
        raise LeaseExpired(f"lease of {delivery.message_id} expired")

    def ack(self, delivery: Delivery) -> None:
        with self._lock:
            entry = self._take(delivery)
            self.entries.remove(entry)
            self.acked.append(entry.message_id)

    def retry(self, delivery: Delivery, delay_seconds: float) -> None:
        with self._lock:
            entry = self._take(delivery)
            entry.token = None
            entry.visible_at = self.clock() + delay_seconds
            self.retries.append((entry.message_id, delay_seconds))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._lock:
            entry = self._take(delivery)
            self.entries.remove(entry)
            self.dead.append((entry.body, reason))

    def send(self, body: bytes) -> str:
        with self._lock:
            mid = uuid.uuid4().hex
            self.entries.append(_Entry(message_id=mid, body=body))
            return mid

    def extend(self, delivery: Delivery, seconds: float) -> None:
        with self._lock:
            self._take(delivery).visible_at = self.clock() + seconds

    def stats(self) -> QueueStats:
        with self._lock:
            now = self.clock()
            ready = sum(1 for e in self.entries if e.visible_at <= now)
            return QueueStats(
                ready=ready, in_flight=len(self.entries) - ready, delayed=0, dead=len(self.dead)
            )

    def close(self) -> None:
        return None
