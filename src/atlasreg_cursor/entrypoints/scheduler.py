"""The daemon's built-in schedule (``SCHEDULE``, ``SCHEDULE_TZ``): a background thread.

At each slot it enqueues the slot's ``start_daily_ingest`` (see
:mod:`atlasreg_cursor.domain.schedule` for the rules) and records the slot
in the store at ``schedule/last-slot.json``. Every daemon runs one; the copies
collapse into one run because the message identity is the slot's. A daemon
that finds the marker already at the slot does not send at all, and each
waits a random 0-3 s first, so usually only one copy is sent (this marker is
what keeps the Cloudflare queue, whose ids differ per copy, to one run). On
start, a slot missed while every daemon was down (the marker is older than
the latest slot) is enqueued once.

A slot that cannot be sent (the queue or the store is briefly down) is tried
again with backoff (``retry_seconds``, doubling up to five minutes) until it
is sent or the next slot is due; resending is safe, as the copies are one run.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.domain import schedule as cron
from atlasreg_cursor.domain.errors import CursorError, PreconditionFailed
from atlasreg_cursor.domain.gold import isoformat_z
from atlasreg_cursor.domain.hashing import canonical_bytes

if TYPE_CHECKING:
    from atlasreg_cursor.domain.sources import WatchlistConfig
    from atlasreg_cursor.ports import ConfigSource, MessageQueue, ObjectStore

    from .settings import Settings

log = structlog.get_logger()

MARKER_KEY = "schedule/last-slot.json"
RETRY_MAX_SECONDS = 300.0


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    """
    Enqueue one job per slot of *expression* in *zone*.

    Args:
        expression: ``SCHEDULE`` (5-field cron).
        zone: ``SCHEDULE_TZ``.
        queue, storage, config: the daemon's ports.
        clock: aware "now" (tests pass their own).
        jitter_seconds: most random delay before a slot is sent.
        retry_seconds: first wait before a failed slot is tried again (doubles).
    """

    def __init__(
        self,
        *,
        expression: str,
        zone: dt.tzinfo,
        queue: MessageQueue,
        storage: ObjectStore,
        config: ConfigSource,
        clock: Callable[[], dt.datetime] = _utc_now,
        jitter_seconds: float = 3.0,
        retry_seconds: float = 5.0,
    ) -> None:
        self.expression = cron.parse_cron(expression)
        self.zone = zone
        self._queue, self._store, self._config = queue, storage, config
        self._clock = clock
        self._jitter = jitter_seconds
        self._retry = retry_seconds
        self.sent: list[dt.datetime] = []

    def catch_up(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """Enqueue the slot latest at *now* if the marker shows it missed; return it if sent."""
        latest = cron.previous_slot(self.expression, self.zone, now or self._clock())
        marker = self._marker()[0]
        if marker is None:
            self._write_marker(latest)  # first start: nothing was missed yet
            return None
        if marker >= latest:
            return None
        log.info("schedule.catch_up", slot=isoformat_z(latest), last=isoformat_z(marker))
        return latest if self.fire(latest) else None

    def fire(self, slot: dt.datetime) -> bool:
        """Enqueue *slot* unless another daemon already did; ``True`` when sent."""
        marker = self._marker()[0]
        if marker is not None and marker >= slot:
            log.debug("schedule.already_enqueued", slot=isoformat_z(slot))
            return False
        previous = cron.previous_slot(self.expression, self.zone, slot - dt.timedelta(seconds=1))
        sources = self._due(slot, previous)
        if sources == ():
            log.info("schedule.nothing_due", slot=isoformat_z(slot))
            self._write_marker(slot)
            return False
        message = cron.slot_message(slot, self.zone, sources=sources)
        queue_id = self._queue.send(canonical_bytes(message))
        self._write_marker(slot)
        self.sent.append(slot)
        metrics.SCHEDULED.inc()
        log.info(
            "schedule.enqueued",
            slot=isoformat_z(slot),
            date=message["date"],
            message_id=message["message_id"],
            queue_message_id=queue_id,
            sources=list(sources) if sources is not None else None,
        )
        return True

    def run(self, stop: threading.Event) -> None:
        """Catch up, then fire each slot until *stop* is set (the thread's body)."""
        cursor = self._clock()  # slots after this one are fired by the loop
        latest = cron.previous_slot(self.expression, self.zone, cursor)
        self._until_sent(functools.partial(self.catch_up, cursor), latest, stop)
        while not stop.is_set():
            (slot,) = cron.next_slots(self.expression, self.zone, cursor, 1)
            wait = (slot - self._clock()).total_seconds()
            if wait > 0:
                stop.wait(min(wait, 30.0))  # wake up now and then: clocks jump
                continue
            if stop.wait(random.uniform(0, self._jitter)):
                return
            self._until_sent(functools.partial(self.fire, slot), slot, stop)
            cursor = slot

    def _until_sent(
        self, send: Callable[[], object], slot: dt.datetime, stop: threading.Event
    ) -> None:
        """Call *send* until it returns, with backoff; give up once the slot after *slot* is due."""
        (following,) = cron.next_slots(self.expression, self.zone, slot, 1)
        delay = self._retry
        for attempt in itertools.count(1):
            try:
                send()
                return
            except CursorError as exc:  # the queue or store is down: try again
                log.error(
                    "schedule.enqueue_failed",
                    slot=isoformat_z(slot),
                    attempt=attempt,
                    error=str(exc),
                    retry_in=delay,
                )
            except Exception as exc:  # a bug must not stop the schedule silently
                log.error("schedule.crashed", slot=isoformat_z(slot), error=repr(exc))
            left = (following - self._clock()).total_seconds()
            if left <= 0 or stop.wait(min(delay, left)) or self._clock() >= following:
                break
            delay = min(delay * 2, RETRY_MAX_SECONDS)
        if not stop.is_set():
            log.error(
                "schedule.slot_dropped",
                slot=isoformat_z(slot),
                reason="not sent before the next slot was due",
            )

    def _due(self, slot: dt.datetime, previous: dt.datetime) -> tuple[str, ...] | None:
        try:
            watchlist = self._config.load()
        except CursorError as exc:
            log.warning("schedule.watchlist_unavailable", error=str(exc))
            return None  # run every source rather than skip the slot
        if not any(s.schedule for s in watchlist.sources):
            return None
        return cron.due_sources(watchlist.sources, slot=slot, previous=previous, zone=self.zone)

    def _marker(self) -> tuple[dt.datetime | None, str | None]:
        obj = self._store.head(MARKER_KEY)
        if obj is None:
            return None, None
        body, stored = self._store.get(MARKER_KEY)
        try:
            slot = dt.datetime.fromisoformat(json.loads(body)["slot"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            return None, stored.etag
        return slot, stored.etag

    def _write_marker(self, slot: dt.datetime) -> None:
        """Move the marker forward to *slot* (never back), with a conditional write."""
        for _ in range(3):
            current, etag = self._marker()
            if current is not None and current >= slot:
                return
            body = canonical_bytes(
                {
                    "slot": isoformat_z(slot),
                    "schedule": self.expression,
                    "written_at": isoformat_z(self._clock()),
                }
            )
            try:
                if etag is None:
                    self._store.put(MARKER_KEY, body, if_none_match=True)
                else:
                    self._store.put(MARKER_KEY, body, if_match=etag)
                return
            except PreconditionFailed:
                continue  # another daemon moved it; look again


def start_scheduler(
    settings: Settings, *, queue: MessageQueue, storage: ObjectStore, config: ConfigSource
) -> tuple[threading.Thread, threading.Event] | None:
    """Start the schedule thread when ``SCHEDULE`` is set; ``(thread, stop)`` or ``None``."""
    if not settings.schedule:
        return None
    scheduler = Scheduler(
        expression=settings.schedule,
        zone=cron.load_zone(settings.schedule_tz),
        queue=queue,
        storage=storage,
        config=config,
    )
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="scheduler", daemon=True)
    thread.start()
    log.info("schedule.started", schedule=scheduler.expression, tz=settings.schedule_tz)
    return thread, stop


def schedule_rows(
    settings: Settings,
    watchlist: WatchlistConfig | None,
    *,
    count: int,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The next *count* slots: when, the local date, and the sources that will run."""
    if not settings.schedule:
        return []
    zone = cron.load_zone(settings.schedule_tz)
    now = now or _utc_now()
    rows = []
    for slot in cron.next_slots(settings.schedule, zone, now, count):
        previous = cron.previous_slot(settings.schedule, zone, slot - dt.timedelta(seconds=1))
        if watchlist is None:
            sources: Any = "(watchlist unavailable)"
        else:
            sources = list(
                cron.due_sources(watchlist.sources, slot=slot, previous=previous, zone=zone)
            )
        rows.append(
            {
                "slot": isoformat_z(slot),
                "local_time": slot.astimezone(zone).isoformat(),
                "date": slot.astimezone(zone).date().isoformat(),
                "message_id": cron.slot_identity(slot),
                "sources": sources,
            }
        )
    return rows
