"""The daemon's background work: delivering the outbox, never in the queue loop's way.

:class:`NotificationPump` scans the outbox every ``NOTIFY_SCAN_SECONDS`` (and
at once when a run just queued a notification) and sends what is due on up
to ``NOTIFY_WORKERS`` threads of its own, so a receiver that is down (each
send retried by the notifier, then rescheduled with backoff up to
``NOTIFY_RETRY_MAX_SECONDS``) holds up neither the queue nor the other
notifications.
"""

from __future__ import annotations

import threading
import time

import structlog

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.domain.errors import CursorError
from atlasreg_cursor.domain.ingest import EventSink, JournalStore, Outbox, deliver

from .bootstrap import App

log = structlog.get_logger()


class NotificationPump:
    """
    Deliver the outbox of *app*'s store in the background.

    Args:
        app: the wired ports (store, notifier) and settings.
        on_event: where delivery events go (log lines and metrics).
    """

    def __init__(self, app: App, *, on_event: EventSink) -> None:
        self._outbox = Outbox(app.storage, clock=app.clock, policy=app.outbox_policy)
        self._journals = JournalStore(
            app.storage,
            owner=app.policy.consumer_id,
            lease_seconds=app.policy.lease_seconds,
            clock=app.clock,
        )
        self._notifier = app.notifier
        self._workers = app.settings.notify_workers
        self._scan_seconds = app.settings.notify_scan_seconds
        self._on_event = on_event
        self._wake = threading.Event()
        self._scanned = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sending: dict[str, threading.Thread] = {}
        self._due = 0
        self._thread = threading.Thread(target=self._run, name="notification-pump", daemon=True)

    def start(self) -> NotificationPump:
        """Start scanning."""
        self._thread.start()
        return self

    def nudge(self) -> None:
        """A run just queued a notification: scan now."""
        self._wake.set()

    def idle(self) -> bool:
        """Nothing is being sent and nothing was due at the last scan."""
        with self._lock:
            return not self._sending and self._due == 0

    def drain(self, seconds: float) -> bool:
        """
        Deliver what is due now, waiting up to *seconds* (``--until-empty``, a stop).

        Returns:
            Whether the outbox was left with nothing due (entries whose next
            attempt is later stay for the next daemon).
        """
        deadline = time.monotonic() + seconds
        while True:
            self._scanned.clear()
            self.nudge()
            self._scanned.wait(timeout=max(0.0, deadline - time.monotonic()))
            if self.idle():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop scanning; sends in flight finish on their own (their threads are daemons)."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                self._scan()
            except CursorError as exc:
                log.warning("outbox.scan_failed", error=str(exc))
            except Exception:  # the pump must outlive any bug in one scan
                metrics.UNEXPECTED_ERRORS.labels(where="outbox").inc()
                log.exception("outbox.scan_crashed")
            self._scanned.set()
            self._wake.wait(self._scan_seconds)

    def _scan(self) -> None:
        due = self._outbox.due()
        with self._lock:
            self._due = len(due)
            free = self._workers - len(self._sending)
            keys = [k for k in due if k not in self._sending][: max(0, free)]
            for key in keys:
                thread = threading.Thread(
                    target=self._send, args=(key,), name="notification-send", daemon=True
                )
                self._sending[key] = thread
                thread.start()
        metrics.NOTIFICATIONS_PENDING.set(self._outbox.pending_count)
        oldest = self._outbox.oldest_pending_at
        age = 0.0 if oldest is None else (self._outbox.clock() - oldest).total_seconds()
        metrics.NOTIFICATIONS_OLDEST_PENDING_AGE.set(max(0.0, age))

    def _send(self, key: str) -> None:
        try:
            deliver(self._outbox, self._journals, key, self._notifier, on_event=self._on_event)
        except CursorError as exc:
            log.warning("outbox.send_failed", key=key, error=str(exc))
        except Exception:  # one broken send must not stop the others
            metrics.UNEXPECTED_ERRORS.labels(where="outbox").inc()
            log.exception("outbox.send_crashed", key=key)
        finally:
            with self._lock:
                self._sending.pop(key, None)
                self._due = max(0, self._due - 1)
            self._wake.set()
