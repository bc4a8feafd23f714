"""The daemon's schedule thread on the real SQLite queue and directory store, with a set clock."""

from __future__ import annotations

import datetime as dt
import json
import threading
import zoneinfo
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.file_config import FileConfigSource
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.domain.errors import QueueUnavailable
from atlasreg_cursor.domain.ingest import Outcome
from atlasreg_cursor.domain.messages import parse_message
from atlasreg_cursor.entrypoints import daemon
from atlasreg_cursor.entrypoints.bootstrap import build
from atlasreg_cursor.entrypoints.scheduler import MARKER_KEY, Scheduler
from atlasreg_cursor.entrypoints.settings import load_settings
from tests.fakes import FakeExecutor, FakeNotifier
from tests.support.services import wait_until

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")


class Clock:
    """A clock the test moves."""

    def __init__(self, at: str) -> None:
        self.now = dt.datetime.fromisoformat(at).replace(tzinfo=SP)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def parts(tmp_path: Path) -> tuple[SqliteQueue, FileObjectStore, FileConfigSource]:
    """A queue, a store and a watchlist with one daily and one Monday-only source."""
    watchlist = tmp_path / "watchlist.json"
    watchlist.write_text(
        json.dumps(
            {
                "sources": [
                    {"id": "daily", "handler_id": "CUSTOM_SCRAPER"},
                    {"id": "mondays", "handler_id": "CUSTOM_SCRAPER", "schedule": "0 6 * * 1"},
                ]
            }
        )
    )
    (tmp_path / "store").mkdir()
    return (
        SqliteQueue(tmp_path / "queue.sqlite3"),
        FileObjectStore(tmp_path / "store"),
        FileConfigSource(watchlist, ttl_seconds=0),
    )


def _scheduler(parts, clock: Clock, *, queue=None, **options: float) -> Scheduler:
    """The daily 06:00 schedule over *parts* (its queue replaced by *queue*, if given)."""
    own_queue, store, config = parts
    return Scheduler(
        expression="0 6 * * *",
        zone=SP,
        queue=own_queue if queue is None else queue,
        storage=store,
        config=config,
        clock=clock,
        jitter_seconds=0,
        **options,
    )


def _messages(queue: SqliteQueue) -> list:
    deliveries = queue.receive(10, 0)
    return [parse_message(d.body) for d in deliveries]


def test_first_start_runs_nothing_and_remembers_the_latest_slot(parts) -> None:
    """A fresh install does not invent a missed slot."""
    queue, store, _ = parts

    assert _scheduler(parts, Clock("2026-11-24T10:00:00")).catch_up() is None

    assert [] == _messages(queue)
    assert "2026-11-24T09:00:00Z" == json.loads(store.get(MARKER_KEY)[0])["slot"]


def test_a_slot_missed_while_down_runs_once_at_start(parts) -> None:
    """Down from Monday 07:00 to Wednesday 10:00: Wednesday's slot runs once, not three."""
    queue, _, _ = parts
    _scheduler(parts, Clock("2026-11-23T07:00:00")).catch_up()

    first = _scheduler(parts, Clock("2026-11-25T10:00:00")).catch_up()
    second = _scheduler(parts, Clock("2026-11-25T10:00:05")).catch_up()

    messages = _messages(queue)
    assert (first, second) == (dt.datetime(2026, 11, 25, 6, tzinfo=SP), None)
    assert [("2026-11-25", "schedule:2026-11-25T09:00:00Z")] == [
        (m.date.isoformat(), m.message_id) for m in messages
    ]
    assert frozenset({"daily"}) == messages[0].source_filter


def test_two_daemons_at_one_slot_send_one_message(parts) -> None:
    """The second daemon sees the marker already at the slot and sends nothing."""
    queue, _, _ = parts
    clock = Clock("2026-11-23T05:59:00")
    a, b = _scheduler(parts, clock), _scheduler(parts, clock)
    a.catch_up()
    slot = dt.datetime(2026, 11, 23, 6, tzinfo=SP)  # a Monday
    clock.now = slot + dt.timedelta(seconds=1)

    assert (True, False) == (a.fire(slot), b.fire(slot))

    (message,) = _messages(queue)
    assert frozenset({"daily", "mondays"}) == message.source_filter


def test_the_thread_fires_when_the_slot_comes(parts) -> None:
    """The running thread enqueues the slot as soon as the clock reaches it, then stops on request."""
    queue, _, _ = parts
    clock = Clock("2026-11-24T05:59:59")
    scheduler = _scheduler(parts, clock)
    scheduler.catch_up()
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        clock.now = dt.datetime(2026, 11, 24, 6, 0, 1, tzinfo=SP)
        assert wait_until(lambda: len(scheduler.sent) == 1, timeout=45)
    finally:
        stop.set()
        thread.join(timeout=10)

    assert not thread.is_alive()
    assert ["schedule:2026-11-24T09:00:00Z"] == [m.message_id for m in _messages(queue)]


class FlakyQueue(SqliteQueue):
    """The real SQLite queue, whose next ``failures`` sends fail as the queue being away."""

    failures = 0

    def send(self, body: bytes) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise QueueUnavailable("queue ingest-queue: send failed: database is locked")
        return super().send(body)


class MarkerBlindStore(FileObjectStore):
    """The real directory store, except that the schedule marker never shows."""

    def head(self, key: str):  # type: ignore[no-untyped-def]
        return None if key == MARKER_KEY else super().head(key)


def _run_thread(scheduler: Scheduler) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def test_a_slot_the_queue_refused_once_is_sent_on_retry(parts, tmp_path: Path) -> None:
    """The queue fails at slot time: the slot is tried again shortly and sent once."""
    _, store, _ = parts
    queue = FlakyQueue(tmp_path / "flaky.sqlite3")
    queue.failures = 1
    clock = Clock("2026-11-24T05:59:59")
    scheduler = _scheduler(parts, clock, queue=queue, retry_seconds=0.05)
    scheduler.catch_up()
    thread, stop = _run_thread(scheduler)
    try:
        clock.now = dt.datetime(2026, 11, 24, 6, 0, 1, tzinfo=SP)
        assert wait_until(lambda: len(scheduler.sent) == 1, timeout=45)
    finally:
        stop.set()
        thread.join(timeout=10)

    assert 0 == queue.failures
    assert ["schedule:2026-11-24T09:00:00Z"] == [m.message_id for m in _messages(queue)]
    assert "2026-11-24T09:00:00Z" == json.loads(store.get(MARKER_KEY)[0])["slot"]


def test_a_slot_still_failing_when_the_next_is_due_gives_way_to_it(parts, tmp_path: Path) -> None:
    """Retries stop once the next slot is due; that slot is then sent."""
    queue = FlakyQueue(tmp_path / "flaky.sqlite3")
    queue.failures = 10**6
    clock = Clock("2026-11-24T05:59:59")
    scheduler = _scheduler(parts, clock, queue=queue, retry_seconds=0.05)
    scheduler.catch_up()
    thread, stop = _run_thread(scheduler)
    try:
        clock.now = dt.datetime(2026, 11, 24, 6, 0, 1, tzinfo=SP)
        assert wait_until(lambda: queue.failures < 10**6 - 2, timeout=10)  # retrying
        queue.failures = 0
        clock.now = dt.datetime(2026, 11, 25, 6, 0, 1, tzinfo=SP)
        assert wait_until(lambda: len(scheduler.sent) >= 1, timeout=45)
    finally:
        stop.set()
        thread.join(timeout=10)

    assert [dt.datetime(2026, 11, 25, 6, tzinfo=SP)] == scheduler.sent
    assert ["schedule:2026-11-25T09:00:00Z"] == [m.message_id for m in _messages(queue)]


def test_two_daemons_that_both_send_a_slot_make_one_run(parts, tmp_path: Path) -> None:
    """Marker unseen, no jitter: both copies are enqueued, and the daemon runs the slot once."""
    queue, _, config = parts
    store = MarkerBlindStore(tmp_path / "store")
    clock = Clock("2026-11-24T06:00:01")
    slot = dt.datetime(2026, 11, 24, 6, tzinfo=SP)
    a, b = (
        Scheduler(
            expression="0 6 * * *",
            zone=SP,
            queue=queue,
            storage=store,
            config=config,
            clock=clock,
            jitter_seconds=0,
        )
        for _ in range(2)
    )

    assert (True, True) == (a.fire(slot), b.fire(slot))
    assert 2 == queue.stats().ready

    settings = load_settings({"CURSOR_HOME": str(tmp_path), "POLL_SECONDS": "0.2"}, env_file=None)
    app = build(
        settings,
        queue=queue,
        config=config,
        storage=FileObjectStore(tmp_path / "store"),
        notifier=FakeNotifier(),
        executor=FakeExecutor(),
    )
    handled = [daemon.process_one(app, daemon.DaemonState(), 0.1) for _ in range(2)]

    assert [Outcome.ACKED, Outcome.DUPLICATE] == [h.outcome for h in handled if h is not None]
    assert 1 == len({h.run_id for h in handled if h is not None})
    assert 1 == len(list((tmp_path / "store" / "runs").glob("*.json")))
    assert 1 == len(list((tmp_path / "store" / "gold").rglob("*.json")))
