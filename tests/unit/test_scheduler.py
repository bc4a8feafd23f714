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
from atlasreg_cursor.domain.messages import parse_message
from atlasreg_cursor.entrypoints.scheduler import MARKER_KEY, Scheduler
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


def _scheduler(parts, clock: Clock) -> Scheduler:
    queue, store, config = parts
    return Scheduler(
        expression="0 6 * * *",
        zone=SP,
        queue=queue,
        storage=store,
        config=config,
        clock=clock,
        jitter_seconds=0,
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
