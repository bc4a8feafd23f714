"""The service's values: policy, the parsed delivery, results, errors, clocks."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from atlasreg_cursor.domain.errors import ConfigError, CursorError, InvalidMessage, SourceFailed
from atlasreg_cursor.domain.messages import (
    MessageType,
    QueueMessage,
    message_identity,
    parse_message,
)
from atlasreg_cursor.domain.redaction import redact_text
from atlasreg_cursor.domain.runs import RunContext, RunJournal, RunStatus, derive_run_id, gold_key

if TYPE_CHECKING:
    from atlasreg_cursor.ports.queue import Delivery

#: The longest delay a queue takes for a retry (Cloudflare's limit: 12 h).
MAX_QUEUE_DELAY_SECONDS = 43200.0

#: Progress events the entry points turn into log lines and metrics.
EventSink = Callable[[str, Mapping[str, Any]], None]
#: The wall clock: aware UTC now. Injected; the domain never reads one itself.
Clock = Callable[[], dt.datetime]
#: Seconds from a monotonic clock, for timeouts. Injected like :data:`Clock`.
Monotonic = Callable[[], float]


def utc_now() -> dt.datetime:
    """The system wall clock, for callers to inject as the service's ``clock``."""
    return dt.datetime.now(dt.UTC)


def no_events(name: str, data: Mapping[str, Any]) -> None:
    """An :data:`EventSink` that drops everything."""
    return


def error_text(text: str) -> str:
    """
    The one place every error message the service records goes through.

    Source outcomes in the journal (and so the Gold's ``errors``), failure
    notifications, dead-letter reasons and journal errors all pass here, so
    credentials in any URL they quote are hidden for all of them.
    """
    return redact_text(text)


class Outcome(enum.Enum):
    """What happened to a delivery."""

    ACKED = "acked"
    DUPLICATE = "duplicate"
    DEFERRED = "deferred"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    RELEASED = "released"


@attrs.frozen(kw_only=True)
class IngestPolicy:
    """
    Knobs of the service.

    Args:
        consumer_id: who this process is, for journal leases (unique per process).
        max_attempts: times work on a run starts before a failure is final.
        retry_base_seconds: first retry delay; doubles per attempt.
        retry_max_seconds: retry delay cap (≤ 12 h, Cloudflare's limit).
        lease_seconds: how long a journal lease (and a delivery's visibility,
            where the queue can extend it) lasts; the heartbeat renews it
            every third of that.
        source_grace_seconds: wait past a source's timeout before recording it
            as timed out and stopping it.
        source_join_seconds: longest wait for the threads of stopped sources.
        queue_max_deliveries: deliveries after which the queue itself retires a
            message (Cloudflare's ``max_retries``); a duplicate of a live run
            that reaches it is acked, the journal carrying the run.
    """

    consumer_id: str
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    lease_seconds: float = 30.0
    source_grace_seconds: float = 30.0
    source_join_seconds: float = 5.0
    queue_max_deliveries: int | None = None

    @property
    def heartbeat_seconds(self) -> float:
        """How often a run's lease is renewed."""
        return max(0.5, self.lease_seconds / 3)

    def retry_delay(self, attempts: int, *, not_before: float | None = None) -> float:
        """
        Exponential backoff after the *attempts*-th attempt.

        Args:
            not_before: seconds before which trying again cannot help (a
                circuit breaker's next trial); it wins over the backoff cap.
        """
        delay = min(self.retry_max_seconds, self.retry_base_seconds * (2 ** max(0, attempts - 1)))
        if not_before is not None:
            delay = max(delay, not_before + 1.0)
        return float(min(MAX_QUEUE_DELAY_SECONDS, delay))

    def defer_delay(self, remaining: float) -> float:
        """How long a duplicate of a live run waits: the lease's rest, at most one lease."""
        return float(min(self.lease_seconds, max(1.0, remaining + 1.0)))


@attrs.frozen(kw_only=True)
class Job:
    """A delivery parsed once: the message, its identity and its run id."""

    message: QueueMessage
    identity: str
    run_id: str

    @classmethod
    def of(cls, message: QueueMessage, identity: str) -> Job:
        """The job of *message* under *identity*."""
        return cls(message=message, identity=identity, run_id=derive_run_id(message.type, identity))

    @property
    def gold_key(self) -> str:
        """Where this run's Gold is published."""
        reprocessed = self.message.type is MessageType.REPROCESS
        return gold_key(self.run_id, self.message.date, reprocessed=reprocessed)

    def run_context(self, attempts: int) -> RunContext:
        """What the executor is told about this run."""
        return RunContext(
            run_id=self.run_id,
            date=self.message.date,
            message_type=self.message.type,
            identity=self.identity,
            attempts=attempts,
        )


@attrs.frozen
class Poison:
    """A delivery that is not a job message, with the reason."""

    reason: str


def read_job(delivery: Delivery) -> Job | Poison:
    """Parse a delivery once (the daemon logs with the result, the service runs with it)."""
    try:
        message = parse_message(delivery.body)
    except InvalidMessage as exc:
        return Poison(f"invalid message: {exc.reason}")
    queue_id = delivery.queue_message_id if delivery.identity_from_queue else None
    return Job.of(message, message_identity(message, delivery.body, queue_id))


def job_of_journal(journal: RunJournal) -> Job:
    """The job a journal records, to resume the run without its message."""
    message = QueueMessage(
        type=journal.message_type,
        date=journal.date,
        payload=dict(journal.payload),
        # Deliberately the run identity, not the producer's id (the journal
        # keeps only the identity): ``message_identity`` of this message is
        # then that identity, so it re-derives this very run, whether the
        # identity was a producer id, a queue id or a body hash.
        message_id=journal.identity,
    )
    return Job(message=message, identity=journal.identity, run_id=journal.run_id)


@attrs.frozen(kw_only=True)
class RunSummary:
    """The result of a run: the JSON line of architecture §10."""

    run_id: str
    status: RunStatus
    gold_key: str | None
    sha256: str | None
    size: int | None
    documents_count: int
    events_count: int
    errors_count: int
    notified: bool
    duplicate: bool = False

    def to_json_line(self) -> str:
        """The one JSON line scripts read."""
        data = {
            "run_id": self.run_id,
            "status": self.status.value,
            "gold_key": self.gold_key,
            "sha256": self.sha256,
            "size": self.size,
            "documents_count": self.documents_count,
            "events_count": self.events_count,
            "errors_count": self.errors_count,
            "notified": self.notified,
        }
        return json.dumps(data, sort_keys=False, separators=(", ", ": "))


def summary_of(journal: RunJournal, *, duplicate: bool = False) -> RunSummary:
    """The summary of what a journal records."""
    gold = journal.gold
    if gold is None:
        return RunSummary(
            run_id=journal.run_id,
            status=journal.status or RunStatus.FAILED,
            gold_key=None,
            sha256=None,
            size=None,
            documents_count=len(journal.documents),
            events_count=0,
            errors_count=sum(1 for o in journal.sources if not o.ok),
            notified=bool(journal.failure and journal.failure.delivered),
            duplicate=duplicate,
        )
    return RunSummary(
        run_id=journal.run_id,
        status=gold.status,
        gold_key=gold.key,
        sha256=gold.sha256,
        size=gold.size,
        documents_count=gold.documents_count,
        events_count=gold.events_count,
        errors_count=gold.errors_count,
        notified=bool(journal.notification and journal.notification.delivered),
        duplicate=duplicate,
    )


@attrs.frozen(kw_only=True)
class HandleResult:
    """What :func:`handle_delivery` did with one delivery."""

    outcome: Outcome
    run_id: str | None = None
    summary: RunSummary | None = None
    reason: str | None = None
    delay_seconds: float | None = None


# --- errors ---------------------------------------------------------------------


class LeaseHeld(CursorError):
    """Raised when another live consumer works the run."""

    def __init__(self, run_id: str, remaining: float) -> None:
        super().__init__(f"run {run_id} is leased by another consumer for {remaining:.0f}s")
        self.remaining = remaining


class LeaseLost(CursorError):
    """Raised when the journal changed under us (our lease expired and was taken)."""

    transient = True


class AllSourcesFailed(CursorError):
    """Raised when every source of a run failed: nothing usable to publish."""

    transient = True


class UnreadableJournal(CursorError):
    """Raised when a run's journal cannot be read (corrupted, or another version's).

    Retried like a transient failure (a newer consumer may be rolling out),
    then dead-lettered with this reason.
    """

    transient = True


class RunAborted(CursorError):
    """Raised inside a run whose daemon was told to stop at once (a second signal)."""


class RunCrashed(CursorError):
    """Raised for an exception that is not a ``CursorError`` (a bug, bad data).

    Retried through the queue, then dead-lettered with this reason.
    """

    transient = True

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"unexpected error: {type(exc).__name__}: {exc}")
        self.original = exc


class RunFailed(CursorError):
    """Raised by :func:`run_message` when a run ends ``failed``."""

    def __init__(self, message: str, *, summary: RunSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def retryable(exc: CursorError) -> bool:
    """Whether a failure is worth another attempt through the queue."""
    return exc.transient or isinstance(exc, ConfigError)


def error_type(exc: BaseException) -> str:
    """The short machine-readable kind of a failure (``all_sources_failed``, …)."""
    if isinstance(exc, SourceFailed):
        return exc.error_type
    if isinstance(exc, RunCrashed):
        return "unexpected_error"
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
