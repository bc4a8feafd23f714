"""Settling a delivery: run its job, then ack, retry, defer or dead-letter it.

- A poison message is dead-lettered at once.
- A run already complete is a duplicate: acked. A run failed without its
  message being dead-lettered (by a sweep) dead-letters this message now.
- A run another live consumer holds is *deferred*: retried after the rest of
  that lease (at most one lease), spending none of the run's attempts.
- A transient failure is retried with backoff until the run's attempts (kept
  in its journal) reach ``max_attempts``; then the run is failed, its
  ``processing_error`` queued in the outbox, and the message dead-lettered.
- A transient failure before the journal is open (the store away) is retried
  with backoff and never made final: the delivery's count grows with every
  deferral of a duplicate, so it says nothing of the run's attempts. Only an
  unreadable journal or a crash is made final on that count, and only after
  the journal was looked at once more (held by another consumer: deferred).
- A run whose Gold is published (in its journal or in the store) is never
  failed nor dead-lettered: once its notification is in the outbox the
  message is acked.
- An exception of any kind is settled like a transient failure (the daemon
  survives it); nothing is left unsettled but a delivery the queue refuses.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from atlasreg_cursor.domain.errors import CursorError, LeaseExpired
from atlasreg_cursor.domain.runs import RunJournal

from .journals import ActiveRun, JournalStore, Opened, read_journal
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
    Poison,
    RunAborted,
    RunCrashed,
    UnreadableJournal,
    error_text,
    error_type,
    read_job,
    retryable,
    summary_of,
)
from .outbox import Outbox
from .runner import RunControl, fail_run, release_for_retry, work

if TYPE_CHECKING:
    from atlasreg_cursor.ports.config import ConfigSource
    from atlasreg_cursor.ports.executor import Executor
    from atlasreg_cursor.ports.queue import Delivery, MessageQueue
    from atlasreg_cursor.ports.storage import ObjectStore


def handle_delivery(
    delivery: Delivery,
    *,
    queue: MessageQueue,
    config: ConfigSource,
    executor: Executor,
    storage: ObjectStore,
    policy: IngestPolicy,
    clock: Clock,
    monotonic: Monotonic,
    on_event: EventSink,
    job: Job | Poison | None = None,
    control: RunControl | None = None,
) -> HandleResult:
    """
    Handle one delivery end to end and settle it on the queue.

    Args:
        job: the delivery as :func:`read_job` parsed it (parsed here if not given).
        control: lets the daemon stop the run in hand at once.

    Returns:
        What was done with the delivery.

    Raises:
        QueueError: only when settling the delivery on the queue fails.
    """
    job = read_job(delivery) if job is None else job
    if isinstance(job, Poison):
        queue.dead_letter(delivery, job.reason)
        on_event(
            "message.poison", {"queue_message_id": delivery.queue_message_id, "reason": job.reason}
        )
        return HandleResult(outcome=Outcome.DEAD_LETTERED, reason=job.reason)
    journals = JournalStore(
        storage, owner=policy.consumer_id, lease_seconds=policy.lease_seconds, clock=clock
    )
    outbox = Outbox(storage, clock=clock)
    settler = _Settler(delivery, job, queue, journals, outbox, policy, clock, on_event)
    try:
        opened = journals.open(job)
    except LeaseHeld as exc:
        return settler.defer(exc.remaining, str(exc))
    except CursorError as exc:
        return settler.unopened(exc)
    except Exception as exc:  # the daemon survives anything
        on_event("run.crashed", {"run_id": job.run_id, "exc_info": exc})
        return settler.unopened(RunCrashed(exc))
    settled = settler.finished(opened)
    if settled is not None:
        return settled
    active = opened.active
    assert active is not None
    # Attempts are the journal's: a delivery count also holds deferrals and
    # deliveries a store outage turned back before any journal could be written.
    # A published run is only finished, never given up.
    if active.value.gold is None and active.value.attempts > policy.max_attempts:
        return settler.give_up(active, active.value.attempts - 1)
    if control is not None:
        control.attach(journals, active, lambda: queue.retry(delivery, 0))
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
            keep_alive=lambda: queue.extend(delivery, policy.lease_seconds),
        )
    except RunAborted as exc:
        return HandleResult(outcome=Outcome.RELEASED, run_id=job.run_id, reason=str(exc))
    except LeaseLost as exc:
        return settler.defer(policy.lease_seconds, str(exc))
    except CursorError as exc:
        return settler.failed(active, exc)
    finally:
        if control is not None:
            control.detach()
    settler.ack()
    return HandleResult(outcome=Outcome.ACKED, run_id=job.run_id, summary=summary_of(active.value))


class _Settler:
    """The ways one delivery of one job is settled on the queue."""

    def __init__(
        self,
        delivery: Delivery,
        job: Job,
        queue: MessageQueue,
        journals: JournalStore,
        outbox: Outbox,
        policy: IngestPolicy,
        clock: Clock,
        on_event: EventSink,
    ) -> None:
        self.delivery = delivery
        self.job = job
        self.queue = queue
        self.journals = journals
        self.outbox = outbox
        self.policy = policy
        self.clock = clock
        self.on_event = on_event

    def ack(self) -> None:
        try:
            self.queue.ack(self.delivery)
        except LeaseExpired:
            # The run is complete in its journal; a redelivery is acked as a duplicate.
            self.on_event(
                "message.ack_late",
                {"run_id": self.job.run_id, "queue_message_id": self.delivery.queue_message_id},
            )

    def defer(self, remaining: float, reason: str) -> HandleResult:
        """Wait for another consumer's live run, spending none of its attempts."""
        limit = self.policy.queue_max_deliveries
        if limit is not None and self.delivery.attempts >= limit:
            # The queue would retire the message on its next delivery; the
            # journal carries the run (it is swept if its consumer dies).
            self.on_event("run.handed_to_journal", {"run_id": self.job.run_id})
            self.ack()
            return HandleResult(outcome=Outcome.DUPLICATE, run_id=self.job.run_id, reason=reason)
        delay = self.policy.defer_delay(remaining)
        # LeaseExpired: the message already went back (another consumer works it)
        with contextlib.suppress(LeaseExpired):
            self.queue.retry(self.delivery, delay)
        self.on_event("run.deferred", {"run_id": self.job.run_id, "delay_seconds": delay})
        return HandleResult(
            outcome=Outcome.DEFERRED, run_id=self.job.run_id, reason=reason, delay_seconds=delay
        )

    def finished(self, opened: Opened) -> HandleResult | None:
        """Settle the delivery of a run that is over (``None``: the run goes on)."""
        if opened.state == "complete":
            self.on_event("run.duplicate", {"run_id": self.job.run_id})
            _queue_unsent(opened.journal, self.outbox)
            self.ack()
            return HandleResult(
                outcome=Outcome.DUPLICATE,
                run_id=self.job.run_id,
                summary=summary_of(opened.journal, duplicate=True),
            )
        if opened.state == "failed":
            return self.dead_letter_failed(opened.journal.error or "the run failed")
        return None

    def unopened(self, exc: CursorError) -> HandleResult:
        """
        The journal could not be opened, so the run's attempts are unknown.

        A fault that a retry mends (the store away, the journal changing) is
        retried with backoff, never made final. An unreadable journal or a
        crash is made final once the delivery came ``max_attempts`` times.
        """
        kind, attempts = error_type(exc), self.delivery.attempts
        mends = exc.transient and not isinstance(exc, UnreadableJournal | RunCrashed)
        if mends or (retryable(exc) and attempts < self.policy.max_attempts):
            return self._retry(None, exc, kind, attempts)
        return self._give_up_on(None, exc, kind, attempts)

    def failed(self, active: ActiveRun, exc: CursorError) -> HandleResult:
        """Retry a transient failure with backoff, or make the failure final."""
        kind = error_type(exc)
        attempts = active.value.attempts
        if active.value.gold is not None or (
            retryable(exc) and attempts < self.policy.max_attempts
        ):
            return self._retry(active, exc, kind, attempts)
        return self._give_up_on(active, exc, kind, attempts)

    def _give_up_on(
        self, active: ActiveRun | None, exc: CursorError, kind: str, attempts: int
    ) -> HandleResult:
        """Make the failure final, or retry when it cannot be recorded."""
        reason = error_text(f"{kind}: {exc}")
        if retryable(exc):
            reason = f"{reason} (after {attempts} attempts)"
        try:
            return self._final(active, kind, str(exc), attempts, reason)
        except CursorError as recording:
            if not recording.transient:
                raise
            # The failure cannot be recorded (the store is down too): try again
            # later rather than dead-letter a run whose journal does not say so.
            return self._retry(active, recording, error_type(recording), attempts)

    def _retry(
        self, active: ActiveRun | None, exc: CursorError, kind: str, attempts: int
    ) -> HandleResult:
        """Release the run and retry the delivery with backoff (never before *exc* allows)."""
        delay = self.policy.retry_delay(
            min(attempts, self.policy.max_attempts), not_before=exc.retry_after_seconds
        )
        if active is not None:
            release_for_retry(
                self.journals,
                active,
                delay=delay,
                error=f"{kind}: {exc}",
                clock=self.clock,
                on_event=self.on_event,
            )
        self.queue.retry(self.delivery, delay)
        self.on_event(
            "run.retry_scheduled",
            {
                "run_id": self.job.run_id,
                "error_type": kind,
                "error": error_text(str(exc)),
                "attempts": attempts,
                "delay_seconds": delay,
            },
        )
        return HandleResult(
            outcome=Outcome.RETRIED,
            run_id=self.job.run_id,
            reason=error_text(str(exc)),
            delay_seconds=delay,
        )

    def give_up(self, active: ActiveRun, attempts: int) -> HandleResult:
        """The run was tried ``max_attempts`` times (each crashed or failed)."""
        reason = f"gave up after {attempts} attempts (MAX_ATTEMPTS={self.policy.max_attempts})"
        return self._final(active, "max_attempts_exceeded", reason, attempts, reason)

    def _final(
        self, active: ActiveRun | None, kind: str, message: str, attempts: int, reason: str
    ) -> HandleResult:
        """
        Fail the run, then dead-letter the message, then say so in the journal.

        In that order a crash in between never loses the failure: a message
        that comes back to a failed journal not yet marked dead-lettered is
        dead-lettered then (:meth:`dead_letter_failed`). Without an open
        journal it is looked at once more first (:meth:`_look_again`).
        A published run is not failed: it is retried (its next attempt
        finishes it), or, when its journal is unreadable, dead-lettered
        without a ``processing_error``.
        """
        if active is None:
            looked = self._look_again()
            if isinstance(looked, HandleResult):
                return looked
            active = looked
        record = fail_run(
            self.job,
            active=active,
            journals=self.journals,
            outbox=self.outbox,
            error_type=kind,
            error_message=message,
            attempts=attempts,
            dead_lettered=False,
            clock=self.clock,
            on_event=self.on_event,
        )
        if record is None and active is not None:
            self.on_event("run.published_not_failed", {"run_id": self.job.run_id})
            return self._retry(active, CursorError(message), kind, attempts)
        if record is None:
            reason = f"{reason}; its Gold is published ({self.job.gold_key}): no processing_error"
        self.queue.dead_letter(self.delivery, reason)
        self._mark_dead_lettered()
        return HandleResult(outcome=Outcome.DEAD_LETTERED, run_id=self.job.run_id, reason=reason)

    def _look_again(self) -> ActiveRun | HandleResult | None:
        """
        Open the journal once more before failing a run whose journal could not be opened.

        Returns:
            The run, taken to fail it; ``None`` when its journal still cannot
            be read; or what was done instead: a run another consumer holds
            is deferred, a run that is over settled (:meth:`finished`).

        Raises:
            CursorError: a fault a retry mends (the caller retries).
        """
        try:
            opened = self.journals.open(self.job)
        except LeaseHeld as exc:
            return self.defer(exc.remaining, str(exc))
        except CursorError as exc:
            if exc.transient and not isinstance(exc, UnreadableJournal):
                raise
            self.on_event("run.journal_unavailable", {"run_id": self.job.run_id, "error": str(exc)})
            return None
        except Exception as exc:  # reading it crashes: as unreadable
            self.on_event(
                "run.journal_unavailable", {"run_id": self.job.run_id, "error": repr(exc)}
            )
            return None
        return self.finished(opened) or opened.active

    def dead_letter_failed(self, error: str) -> HandleResult:
        """The run was failed without this message (a sweep, a crash): dead-letter it now."""
        reason = error_text(f"the run failed: {error}")
        self.queue.dead_letter(self.delivery, reason)
        self._mark_dead_lettered()
        return HandleResult(outcome=Outcome.DEAD_LETTERED, run_id=self.job.run_id, reason=reason)

    def _mark_dead_lettered(self) -> None:
        """Record that the failed run's message is in the dead letters (a replay reruns it)."""
        try:
            self.journals.update_complete(
                self.job.run_id,
                lambda journal: {"dead_lettered": True} if journal.failed else None,
            )
        except CursorError as exc:
            self.on_event("run.release_failed", {"run_id": self.job.run_id, "error": str(exc)})


def _queue_unsent(journal: RunJournal, outbox: Outbox) -> None:
    """A journal finished before the outbox existed may hold an unsent notification: queue it."""
    record = journal.notification
    if record is None or record.delivered or record.rejected or record.outbox_key is not None:
        return
    outbox.add(journal.run_id, record)


def settle_crash(
    delivery: Delivery,
    job: Job | Poison | None,
    exc: BaseException,
    *,
    queue: MessageQueue,
    storage: ObjectStore,
    policy: IngestPolicy,
    clock: Clock,
) -> HandleResult:
    """
    Settle a delivery whose handling raised past :func:`handle_delivery`.

    It is retried with backoff, then dead-lettered with the reason once the
    run's attempts are spent. The run's journal holds that count (a
    duplicate's deferrals spend none); the delivery's count stands in only
    when there is no journal to read. A run another consumer holds, a
    complete or published run, or a journal the store cannot serve now is
    never dead-lettered here.

    Raises:
        QueueError: settling the delivery failed.
    """
    reason = error_text(f"unexpected error: {type(exc).__name__}: {exc}")
    run_id = job.run_id if isinstance(job, Job) else None
    attempts: int | None = None  # None: not a final failure whatever the count
    if not (isinstance(exc, CursorError) and exc.transient):
        attempts = delivery.attempts
        if isinstance(job, Job):
            attempts = _run_attempts(job, storage, policy.consumer_id, clock, delivery.attempts)
    delay = policy.retry_delay(min(delivery.attempts, policy.max_attempts))
    if attempts is None or attempts < policy.max_attempts:
        queue.retry(delivery, delay)
        return HandleResult(
            outcome=Outcome.RETRIED, run_id=run_id, reason=reason, delay_seconds=delay
        )
    reason = f"{reason} (after {attempts} attempts)"
    queue.dead_letter(delivery, reason)
    return HandleResult(outcome=Outcome.DEAD_LETTERED, run_id=run_id, reason=reason)


def _run_attempts(
    job: Job, storage: ObjectStore, owner: str, clock: Clock, deliveries: int
) -> int | None:
    """The run's attempts from its journal (*deliveries* without one); ``None``: never final."""
    try:
        journal = read_journal(storage, job.run_id)
    except UnreadableJournal:
        return deliveries
    except CursorError:
        return None  # the store is away: the journal decides later
    except Exception:  # reading it crashes: as unreadable
        return deliveries
    if journal is None:
        return deliveries
    held = journal.lease is not None and journal.lease.held_by_other(owner, clock())
    if held or journal.gold is not None or (journal.complete and not journal.failed):
        return None
    return journal.attempts
