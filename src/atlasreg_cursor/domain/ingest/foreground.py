"""Runs in the foreground, without a queue: ``ingest`` and ``reprocess``.

The run goes through the same journal, flow and outbox as a queued one; at
the end its notification is delivered here and now (the command waits for
it), and stays in the outbox for the daemon if it could not be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atlasreg_cursor.domain.errors import CursorError
from atlasreg_cursor.domain.messages import QueueMessage

from .journals import ActiveRun, JournalStore
from .model import (
    Clock,
    EventSink,
    IngestPolicy,
    Job,
    LeaseHeld,
    LeaseLost,
    Monotonic,
    RunFailed,
    RunSummary,
    error_text,
    error_type,
    retryable,
    summary_of,
)
from .outbox import Outbox, OutboxPolicy, deliver
from .runner import fail_run, work

if TYPE_CHECKING:
    from atlasreg_cursor.ports.config import ConfigSource
    from atlasreg_cursor.ports.executor import Executor
    from atlasreg_cursor.ports.notifier import Notifier
    from atlasreg_cursor.ports.storage import ObjectStore


def run_message(
    message: QueueMessage,
    *,
    identity: str,
    config: ConfigSource,
    executor: Executor,
    storage: ObjectStore,
    notifier: Notifier,
    policy: IngestPolicy,
    clock: Clock,
    monotonic: Monotonic,
    on_event: EventSink,
    outbox_policy: OutboxPolicy | None = None,
) -> RunSummary:
    """
    Run one message in the foreground and deliver its notification.

    Raises:
        RunFailed: the run failed; its ``processing_error`` was queued (and tried).
        LeaseHeld: another consumer is working the same run right now.
        CursorError: a transient failure (retry the command).
    """
    job = Job.of(message, identity)
    journals = JournalStore(
        storage, owner=policy.consumer_id, lease_seconds=policy.lease_seconds, clock=clock
    )
    outbox = Outbox(storage, clock=clock, policy=outbox_policy)
    opened = journals.open(job)
    active = opened.active
    if active is None:
        return summary_of(opened.journal, duplicate=True)
    try:
        work(
            job,
            active,
            config=config,
            executor=executor,
            storage=storage,
            journals=journals,
            outbox=outbox,
            policy=policy,
            clock=clock,
            monotonic=monotonic,
            on_event=on_event,
        )
    except (LeaseHeld, LeaseLost):
        raise
    except CursorError as exc:
        if retryable(exc) or active.value.gold is not None:
            _release(journals, active, exc, on_event)
            raise
        record = fail_run(
            job,
            active=active,
            journals=journals,
            outbox=outbox,
            error_type=error_type(exc),
            error_message=str(exc),
            attempts=active.value.attempts,
            dead_lettered=False,
            clock=clock,
            on_event=on_event,
        )
        if record is None:  # its Gold is in the store after all: the next try adopts it
            _release(journals, active, exc, on_event)
            raise
        if record.outbox_key is not None:
            deliver(outbox, journals, record.outbox_key, notifier, on_event=on_event)
        raise RunFailed(str(exc)) from exc
    record = active.value.notification
    if record is not None and record.outbox_key is not None:
        deliver(outbox, journals, record.outbox_key, notifier, on_event=on_event)
    found = journals.read(job.run_id)
    return summary_of(found[0] if found is not None else active.value)


def _release(
    journals: JournalStore, active: ActiveRun, exc: CursorError, on_event: EventSink
) -> None:
    """Give the lease up with no retry due: the command is what is retried, as a new run."""
    try:
        journals.release(active, last_error=error_text(str(exc)))
    except CursorError as error:
        on_event("run.release_failed", {"run_id": active.value.run_id, "error": str(error)})
