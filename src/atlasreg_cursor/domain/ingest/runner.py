"""Working one run: heartbeat around the flow, failures made final, a stop on request.

Shared by the three ways a run is worked: a queue delivery
(:mod:`.settle`), the foreground commands (:mod:`.foreground`) and a run
swept from its journal (:mod:`.sweep`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from atlasreg_cursor.domain import notifications as notes
from atlasreg_cursor.domain.errors import CursorError
from atlasreg_cursor.domain.runs import NotificationRecord, RunStatus

from .flows import carry_out
from .heartbeat import Heartbeat, KeepAlive
from .journals import ActiveRun, JournalStore
from .model import Clock, EventSink, IngestPolicy, Job, Monotonic, RunCrashed, error_text
from .outbox import Outbox
from .publish import gold_published
from .sources import SourceLimits

if TYPE_CHECKING:
    from atlasreg_cursor.ports.config import ConfigSource
    from atlasreg_cursor.ports.executor import Executor
    from atlasreg_cursor.ports.storage import ObjectStore

_RELEASE_WAIT_SECONDS = 5.0


class RunControl:
    """
    The daemon's hold on the run in hand, to stop it at once (a second signal).

    :meth:`abort` tells the run to stop, writes its journal with the lease
    released and gives its delivery back to the queue, so another consumer
    can resume it at once instead of waiting for the lease to expire.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: tuple[JournalStore, ActiveRun, Callable[[], None] | None] | None = None
        self.aborted = threading.Event()

    def attach(
        self, journals: JournalStore, active: ActiveRun, give_back: Callable[[], None] | None
    ) -> None:
        """Hold *active* (and *give_back*, which returns its delivery to the queue)."""
        with self._lock:
            self._held = (journals, active, give_back)
        if self.aborted.is_set():
            active.aborted.set()

    def detach(self) -> None:
        """The run in hand is over."""
        with self._lock:
            self._held = None

    def abort(self) -> str | None:
        """
        Stop the run in hand; release its journal lease and its delivery.

        Returns:
            The run's id, ``None`` when no run was in hand. Never raises.
        """
        self.aborted.set()
        with self._lock:
            held, self._held = self._held, None
        if held is None:
            return None
        journals, active, give_back = held
        active.aborted.set()
        if active.lock.acquire(timeout=_RELEASE_WAIT_SECONDS):
            try:
                if active.value.lease is not None and not active.value.complete:
                    # Due again now: if its delivery is gone (acked after a hand-off
                    # to the journal, or give_back fails), a sweep finds it overdue.
                    journals.release(active, retry_at=journals.clock())
            except CursorError:
                pass  # the lease then expires on its own
            finally:
                active.lock.release()
        if give_back is not None:
            # if this fails, the delivery comes back after its visibility timeout
            with contextlib.suppress(CursorError):
                give_back()
        return active.value.run_id


def work(
    job: Job,
    active: ActiveRun,
    *,
    config: ConfigSource,
    executor: Executor,
    storage: ObjectStore,
    journals: JournalStore,
    outbox: Outbox,
    policy: IngestPolicy,
    clock: Clock,
    monotonic: Monotonic,
    on_event: EventSink,
    keep_alive: KeepAlive | None = None,
) -> None:
    """
    Carry the run out under its heartbeat.

    Raises:
        CursorError: the run failed; an exception of any other kind is
            raised as :class:`RunCrashed` (reported with its traceback).
    """
    run = job.run_context(active.value.attempts)
    heartbeat = Heartbeat(
        journals,
        active,
        interval=policy.heartbeat_seconds,
        keep_alive=keep_alive,
        on_event=on_event,
    )
    with heartbeat:
        try:
            carry_out(
                job,
                run,
                active,
                config=config,
                executor=executor,
                storage=storage,
                journals=journals,
                outbox=outbox,
                limits=SourceLimits(
                    width=1,
                    grace_seconds=policy.source_grace_seconds,
                    join_seconds=policy.source_join_seconds,
                ),
                clock=clock,
                monotonic=monotonic,
                on_event=on_event,
            )
        except CursorError:
            raise
        except Exception as exc:  # a bug or bad data: retried, then dead-lettered
            on_event("run.crashed", {"run_id": job.run_id, "exc_info": exc})
            raise RunCrashed(exc) from exc


def release_for_retry(
    journals: JournalStore,
    active: ActiveRun,
    *,
    delay: float,
    error: str,
    clock: Clock,
    on_event: EventSink,
) -> None:
    """Give the run's lease up until its retry is due (best effort: it expires anyway)."""
    try:
        journals.release(
            active, retry_at=clock() + dt.timedelta(seconds=delay), last_error=error_text(error)
        )
    except CursorError as exc:
        on_event("run.release_failed", {"run_id": active.value.run_id, "error": str(exc)})


def fail_run(
    job: Job,
    *,
    active: ActiveRun | None,
    journals: JournalStore,
    outbox: Outbox,
    error_type: str,
    error_message: str,
    attempts: int,
    dead_lettered: bool,
    clock: Clock,
    on_event: EventSink,
) -> NotificationRecord | None:
    """
    Mark a run failed and queue its ``processing_error``, unless its Gold is published.

    The Gold is looked for in the journal and in the store
    (:func:`~.publish.gold_published`), so a run whose journal is unreadable
    (``active`` is ``None``) or lags its Gold is never reported failed.

    Returns:
        The queued notification; ``None`` for a published run (nothing done).

    Raises:
        StorageError: the Gold could not be looked for or the notification
            queued (then nothing is settled, so the failure is tried again).
    """
    if gold_published(job, active, journals.storage):
        return None
    round_ = active.value.round if active is not None else 1
    message = error_text(error_message)
    note = notes.processing_error(
        run_id=job.run_id,
        error_type=error_type,
        error_message=message,
        occurred_at=clock(),
        context={
            "date": job.message.date.isoformat(),
            "message_id": job.identity,
            "message_type": job.message.type.value,
            "attempts": attempts,
        },
        round=round_,
    )
    record = note.to_record()
    earlier = active.value.failure if active is not None else None
    if earlier is not None and earlier.webhook_id == record.webhook_id:
        record = earlier  # the first body written is the one ever sent
    record = attrs.evolve(record, outbox_key=outbox.add(job.run_id, record))
    if active is not None:
        try:
            journals.finish(
                active,
                status=RunStatus.FAILED,
                failure=record,
                error=error_text(f"{error_type}: {error_message}"),
                dead_lettered=dead_lettered,
                retry_at=None,
            )
        except CursorError as exc:
            on_event("run.release_failed", {"run_id": job.run_id, "error": str(exc)})
    on_event(
        "run.failed",
        {"run_id": job.run_id, "error_type": error_type, "error": message, "attempts": attempts},
    )
    return record
