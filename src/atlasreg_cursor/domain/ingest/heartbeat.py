"""The heartbeat: a run's lease (and its delivery's visibility) renewed while it works.

Temporal's activity heartbeat and SQS's visibility extension: the lease is
short, so a crashed consumer's run is taken over in seconds, and a live one
renews it every third of its length. A transient store error does not stop
the heartbeat: it tries again sooner, and the lease is lost only when
another consumer actually wrote the journal.
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
    Renew *active*'s journal lease every *interval* seconds, and call *keep_alive*.

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
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{active.value.run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop renewing; return once the thread is gone (or after one interval)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5.0)

    def _run(self) -> None:
        wait = self._interval
        while not self._stop.wait(wait):
            wait = self._interval
            if self._keep_alive is not None:
                self._renew_delivery()
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

    def _renew_delivery(self) -> None:
        assert self._keep_alive is not None
        try:
            self._keep_alive()
        except CursorError as exc:
            # Losing the queue lease is not fatal: the journal lease keeps a
            # redelivered copy from working the run at the same time.
            self._on_event(
                "queue.extend_failed", {"run_id": self._active.value.run_id, "error": str(exc)}
            )
