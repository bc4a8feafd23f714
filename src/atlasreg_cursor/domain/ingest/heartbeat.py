"""The heartbeat: a run's lease (and its delivery's visibility) renewed while it works.

Temporal's activity heartbeat and SQS's visibility extension: the lease is
short, so a crashed consumer's run is taken over in seconds, and a live one
renews it every third of its length. A transient store error does not stop
the heartbeat: it tries again sooner, and the lease is lost only when
another consumer actually wrote the journal.

The journal lease and the delivery's visibility are renewed by two threads
of their own: a queue whose ``extend`` blocks (its client retrying a lost
server for half a minute) never holds the journal lease back, nor a slow
store the queue's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from atlasreg_cursor.domain.errors import CursorError

from .journals import ActiveRun, JournalStore
from .model import EventSink, LeaseLost, RunAborted

#: Renews the delivery's lease on the queue (``queue.extend``); errors are reported, not fatal.
KeepAlive = Callable[[], None]


class Heartbeat:
    """
    Renew *active*'s journal lease every *interval* seconds, and call *keep_alive* as often.

    Each renewal runs in its own daemon thread, so neither can delay the
    other past its lease.

    Args:
        journals: where the journal is written.
        active: the run whose lease is renewed.
        interval: seconds between renewals (a third of the lease).
        keep_alive: renews the delivery's visibility on the queue, if any.
        on_event: where failed renewals are reported.
    """

    def __init__(
        self,
        journals: JournalStore,
        active: ActiveRun,
        *,
        interval: float,
        keep_alive: KeepAlive | None = None,
        on_event: EventSink,
    ) -> None:
        self._journals = journals
        self._active = active
        self._interval = interval
        self._keep_alive = keep_alive
        self._on_event = on_event
        self._stop = threading.Event()
        run_id = active.value.run_id
        self._journal_thread = threading.Thread(
            target=self._renew_journal, name=f"heartbeat-{run_id}", daemon=True
        )
        self._delivery_thread: threading.Thread | None = None
        if keep_alive is not None:
            self._delivery_thread = threading.Thread(
                target=self._renew_delivery,
                args=(keep_alive,),
                name=f"heartbeat-queue-{run_id}",
                daemon=True,
            )

    def __enter__(self) -> Heartbeat:
        self._journal_thread.start()
        if self._delivery_thread is not None:
            self._delivery_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """
        Stop renewing; return once the journal's thread is gone (or after one interval).

        The delivery's thread is not waited for past a moment: an ``extend``
        still running names the delivery's lease, which the queue refuses
        once the delivery is settled.
        """
        self._stop.set()
        if self._journal_thread.is_alive():
            self._journal_thread.join(timeout=self._interval + 5.0)
        if self._delivery_thread is not None and self._delivery_thread.is_alive():
            self._delivery_thread.join(timeout=min(self._interval, 1.0))

    def _renew_journal(self) -> None:
        wait = self._interval
        while not self._stop.wait(wait):
            wait = self._interval
            try:
                self._journals.save(self._active)
            except (LeaseLost, RunAborted):
                return  # recorded on the run: its next check raises
            except CursorError as exc:
                # The store is away: try again soon; the lease is only lost
                # if someone else writes the journal in the meantime.
                self._on_event(
                    "lease.renew_failed",
                    {"run_id": self._active.value.run_id, "error": str(exc)},
                )
                wait = max(0.5, self._interval / 3)

    def _renew_delivery(self, keep_alive: KeepAlive) -> None:
        while not self._stop.wait(self._interval):
            try:
                keep_alive()
            except CursorError as exc:
                # Losing the queue lease is not fatal: the journal lease keeps a
                # redelivered copy from working the run at the same time.
                if not self._stop.is_set():
                    self._on_event(
                        "queue.extend_failed",
                        {"run_id": self._active.value.run_id, "error": str(exc)},
                    )
