"""The message queue port (architecture §6 MessageQueue)."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import attrs


@attrs.frozen(kw_only=True)
class Delivery:
    """
    One received message, leased to this consumer.

    ``queue_message_id`` is the backend's id of the message, for logs, dead
    letters and ``dlq replay`` (not the producer's ``message_id`` inside the
    body). ``identity_from_queue`` says whether that id names the message
    durably (Cloudflare); then it can be the run identity (architecture §3).
    """

    queue_message_id: str
    body: bytes = attrs.field(repr=False)
    attempts: int
    lease_token: str = attrs.field(repr=False)
    identity_from_queue: bool = False


@attrs.frozen(kw_only=True)
class QueueStats:
    """Queue depth by state; ``None`` where the backend cannot tell."""

    ready: int | None
    in_flight: int | None
    delayed: int | None
    dead: int | None


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A dead-lettered message with the reason it was given."""

    queue_message_id: str
    body: bytes = attrs.field(repr=False)
    reason: str
    attempts: int
    dead_at: dt.datetime | None = None


class MessageQueue(Protocol):
    """
    Protocol: at-least-once job queue with leases.

    An un-acked delivery becomes receivable again after the visibility timeout
    with ``attempts + 1``. Two consumers never hold the same message at once.
    Every method raises :class:`QueueError` subclasses only:
    :class:`QueueUnavailable` when the backend cannot be reached (transient),
    :class:`LeaseExpired` when a lease is no longer held,
    :class:`QueueConfigurationError` for settings that cannot work.
    """

    def receive(self, max_messages: int = 1, wait_seconds: float = 0.0) -> list[Delivery]:
        """
        Lease up to *max_messages*, blocking up to *wait_seconds* for the first.

        Blocks without busy polling; returns ``[]`` when nothing came.
        """
        ...

    def ack(self, delivery: Delivery) -> None:
        """
        Delete a delivered message for good.

        Raises:
            LeaseExpired: the lease expired (where the backend can tell).
        """
        ...

    def retry(self, delivery: Delivery, delay_seconds: float) -> None:
        """
        Release a delivered message, receivable again after *delay_seconds*.

        Raises:
            LeaseExpired: the lease expired (where the backend can tell).
        """
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """
        Move a delivered message to the dead-letter queue with *reason*.

        Raises:
            LeaseExpired: the lease expired (where the backend can tell).
        """
        ...

    def send(self, body: bytes) -> str:
        """Enqueue *body*; return the backend's message id."""
        ...

    def extend(self, delivery: Delivery, seconds: float) -> None:
        """
        Renew the delivery's lease for *seconds* from now.

        A no-op where the backend cannot (declared by its contract suite).

        Raises:
            LeaseExpired: the lease expired (where the backend can tell).
        """
        ...

    def stats(self) -> QueueStats:
        """Return the queue depth by state."""
        ...

    def close(self) -> None:
        """Release connections; the queue is not used afterwards."""
        ...


class DeadLetterBox(Protocol):
    """Protocol: a queue whose dead letters can be listed, replayed and purged."""

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Return up to *limit* dead letters, oldest first."""
        ...

    def replay_dead(self, queue_message_id: str) -> bool:
        """Move a dead letter back to the queue; ``False`` if it is not there."""
        ...

    def purge_dead(self) -> int:
        """Delete every dead letter; return how many."""
        ...
