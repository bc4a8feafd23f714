"""An in-memory MessageQueue with leases; consumers may share one state."""

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
    delayed: bool = False


@attrs.define
class QueueState:
    """What several consumers of one fake queue share."""

    clock: Callable[[], float] = time.monotonic
    cond: threading.Condition = attrs.Factory(threading.Condition)
    entries: list[_Entry] = attrs.Factory(list)
    dead: list[tuple[bytes, str]] = attrs.Factory(list)
    acked: list[str] = attrs.Factory(list)
    retries: list[tuple[str, float]] = attrs.Factory(list)


class FakeQueue:
    """One consumer; pass ``state`` to make another consumer of the same queue."""

    def __init__(
        self,
        *,
        visibility_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        state: QueueState | None = None,
    ) -> None:
        self.visibility_timeout = visibility_timeout
        self.state = state or QueueState(clock=clock)

    @property
    def entries(self) -> list[_Entry]:
        """Messages not yet acked or dead-lettered."""
        return self.state.entries

    @property
    def dead(self) -> list[tuple[bytes, str]]:
        """Dead letters as (body, reason)."""
        return self.state.dead

    @property
    def retries(self) -> list[tuple[str, float]]:
        """Retries as (message id, delay)."""
        return self.state.retries

    def receive(self, max_messages: int = 1, wait_seconds: float = 0.0) -> list[Delivery]:
        st = self.state
        deadline = time.monotonic() + wait_seconds
        with st.cond:
            while True:
                out = self._take_ready(max_messages)
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                st.cond.wait(min(left, 0.05))

    def _take_ready(self, max_messages: int) -> list[Delivery]:
        now = self.state.clock()
        out: list[Delivery] = []
        for entry in self.state.entries:
            if len(out) >= max_messages:
                break
            if entry.visible_at <= now:
                entry.attempts += 1
                entry.token = uuid.uuid4().hex
                entry.delayed = False
                entry.visible_at = now + self.visibility_timeout
                out.append(
                    Delivery(
                        queue_message_id=entry.message_id,
                        body=entry.body,
                        attempts=entry.attempts,
                        lease_token=entry.token,
                    )
                )
        return out

    def _take(self, delivery: Delivery) -> _Entry:
        for entry in self.state.entries:
            if (
                entry.message_id == delivery.queue_message_id
                and entry.token == delivery.lease_token
            ):
                if entry.visible_at <= self.state.clock():
                    break
                return entry
        raise LeaseExpired(f"lease of {delivery.queue_message_id} expired")

    def ack(self, delivery: Delivery) -> None:
        with self.state.cond:
            entry = self._take(delivery)
            self.state.entries.remove(entry)
            self.state.acked.append(entry.message_id)

    def retry(self, delivery: Delivery, delay_seconds: float) -> None:
        with self.state.cond:
            entry = self._take(delivery)
            entry.token = None
            entry.delayed = delay_seconds > 0
            entry.visible_at = self.state.clock() + delay_seconds
            self.state.retries.append((entry.message_id, delay_seconds))
            self.state.cond.notify_all()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self.state.cond:
            entry = self._take(delivery)
            self.state.entries.remove(entry)
            self.state.dead.append((entry.body, reason))

    def send(self, body: bytes) -> str:
        with self.state.cond:
            mid = uuid.uuid4().hex
            self.state.entries.append(_Entry(message_id=mid, body=bytes(body)))
            self.state.cond.notify_all()
            return mid

    def extend(self, delivery: Delivery, seconds: float) -> None:
        with self.state.cond:
            self._take(delivery).visible_at = self.state.clock() + seconds

    def stats(self) -> QueueStats:
        with self.state.cond:
            now = self.state.clock()
            ready = sum(1 for e in self.state.entries if e.visible_at <= now)
            waiting = [e for e in self.state.entries if e.visible_at > now]
            delayed = sum(1 for e in waiting if e.token is None)
            return QueueStats(
                ready=ready,
                in_flight=len(waiting) - delayed,
                delayed=delayed,
                dead=len(self.state.dead),
            )

    def close(self) -> None:
        return None
