"""Sweeping: runs in flight found from their journals and resumed, without their message.

Where the queue cannot extend a lease (Cloudflare), a crashed consumer's
message stays invisible until its long visibility timeout ends. The journals
in the store are the record of the runs in flight, so any daemon sweeps
them: a run whose lease expired while it was held (its consumer died) is an
*orphan* and is resumed at once; a run released for a retry that nobody
took long after it was due (its message is gone) is *overdue* and is resumed
too. When the message comes back later, its run is complete and it is acked
as a duplicate.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from atlasreg_cursor.domain.errors import CursorError
from atlasreg_cursor.domain.runs import RunJournal

from .journals import ActiveRun, JournalStore
from .model import (
    Clock,
    EventSink,
    HandleResult,
    IngestPolicy,
    Job,
    LeaseHeld,
    LeaseLost,
    Monotonic,
    Outcome,
    RunAborted,
    error_type,
    job_of_journal,
    retryable,
    summary_of,
)
from .outbox import Outbox
from .runner import RunControl, fail_run, release_for_retry, work

if TYPE_CHECKING:
    from atlasreg_cursor.ports.config import ConfigSource
    from atlasreg_cursor.ports.executor import Executor
    from atlasreg_cursor.ports.storage import ObjectStore


class Sweeper:
    """
    Find runs to resume from the journals in *journals*' store.

    Args:
        journals: the journal store (its owner is this consumer).
        overdue_seconds: how long past its ``retry_at`` a released run waits
            for its message before it is swept.
        clock: the injected wall clock.
    """

    def __init__(self, journals: JournalStore, *, overdue_seconds: float, clock: Clock) -> None:
        self.journals = journals
        self.overdue_seconds = overdue_seconds
        self.clock = clock
        self._complete: set[str] = set()

    def stranded(self) -> list[str]:
        """
        The run ids of orphaned and overdue runs, oldest change first.

        Complete runs are remembered, so each journal is read about once.

        Raises:
            StorageError: the store could not be reached.
        """
        now = self.clock()
        fresh = dt.timedelta(seconds=self.journals.lease_seconds)
        found: list[tuple[dt.datetime, str]] = []
        for key, modified in self.journals.listing():
            if key in self._complete:
                continue
            if modified is not None and now - modified < fresh:
                continue  # written within a lease: its lease cannot have expired yet
            run_id = key.removeprefix("runs/").removesuffix(".json")
            try:
                current = self.journals.read(run_id)
            except CursorError:
                continue  # unreadable: left to its message (which dead-letters it)
            if current is None:
                continue
            journal = current[0]
            if journal.complete:
                self._complete.add(key)
            elif self._stranded(journal, now):
                found.append((journal.updated_at, run_id))
        return [run_id for _, run_id in sorted(found)]

    def _stranded(self, journal: RunJournal, now: dt.datetime) -> bool:
        if journal.lease is not None:
            return journal.lease.expires_at <= now  # held, then abandoned
        if journal.retry_at is None:
            return False  # released with no retry due: waits for its message
        overdue = journal.retry_at + dt.timedelta(seconds=self.overdue_seconds)
        return overdue <= now


def resume_run(
    run_id: str,
    *,
    config: ConfigSource,
    executor: Executor,
    storage: ObjectStore,
    policy: IngestPolicy,
    clock: Clock,
    monotonic: Monotonic,
    on_event: EventSink,
    control: RunControl | None = None,
) -> HandleResult:
    """
    Resume a run from its journal alone (no message in hand).

    Returns:
        ``ACKED`` when the run was finished, ``RETRIED`` when it failed
        transiently (released with a retry due), ``DEAD_LETTERED`` when it
        failed for good (its message, when it comes, is dead-lettered),
        ``DEFERRED`` when another consumer took it first.
    """
    journals = JournalStore(
        storage, owner=policy.consumer_id, lease_seconds=policy.lease_seconds, clock=clock
    )
    outbox = Outbox(storage, clock=clock)
    try:
        found = journals.read(run_id)
        if found is None:
            return HandleResult(outcome=Outcome.DEFERRED, run_id=run_id, reason="no journal")
        job = job_of_journal(found[0])
        opened = journals.open(job)
    except (LeaseHeld, LeaseLost) as exc:
        return HandleResult(outcome=Outcome.DEFERRED, run_id=run_id, reason=str(exc))
    except CursorError as exc:
        return HandleResult(outcome=Outcome.DEFERRED, run_id=run_id, reason=str(exc))
    active = opened.active
    if active is None:
        return HandleResult(outcome=Outcome.DUPLICATE, run_id=run_id)
    on_event("run.swept", {"run_id": run_id, "attempts": active.value.attempts})
    if active.value.gold is None and active.value.attempts > policy.max_attempts:
        reason = f"gave up after {active.value.attempts - 1} attempts"
        return _fail(
            job, active, journals, outbox, "max_attempts_exceeded", reason, policy, on_event
        )
    if control is not None:
        control.attach(journals, active, None)
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
    except (RunAborted, LeaseLost) as exc:
        return HandleResult(outcome=Outcome.RELEASED, run_id=run_id, reason=str(exc))
    except CursorError as exc:
        attempts = active.value.attempts
        if (retryable(exc) and attempts < policy.max_attempts) or active.value.gold is not None:
            delay = policy.retry_delay(attempts)
            release_for_retry(
                journals, active, delay=delay, error=str(exc), clock=clock, on_event=on_event
            )
            return HandleResult(
                outcome=Outcome.RETRIED, run_id=run_id, reason=str(exc), delay_seconds=delay
            )
        return _fail(job, active, journals, outbox, error_type(exc), str(exc), policy, on_event)
    finally:
        if control is not None:
            control.detach()
    return HandleResult(outcome=Outcome.ACKED, run_id=run_id, summary=summary_of(active.value))


def _fail(
    job: Job,
    active: ActiveRun,
    journals: JournalStore,
    outbox: Outbox,
    kind: str,
    message: str,
    policy: IngestPolicy,
    on_event: EventSink,
) -> HandleResult:
    """Fail a swept run; no message is in hand, so it is not dead-lettered yet."""
    record = fail_run(
        job,
        active=active,
        journals=journals,
        outbox=outbox,
        error_type=kind,
        error_message=message,
        attempts=active.value.attempts,
        dead_lettered=False,
        clock=journals.clock,
        on_event=on_event,
    )
    if record is None:  # its Gold is in the store: the next attempt adopts it, never failed
        delay = policy.retry_delay(1)
        release_for_retry(
            journals, active, delay=delay, error=message, clock=journals.clock, on_event=on_event
        )
        return HandleResult(
            outcome=Outcome.RETRIED, run_id=job.run_id, reason=message, delay_seconds=delay
        )
    return HandleResult(outcome=Outcome.DEAD_LETTERED, run_id=job.run_id, reason=message)
