"""Readiness, journal listing and output helpers of the operations side."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.domain.codec import converter
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunJournal, journal_key
from atlasreg_cursor.entrypoints.journals import recent_journals
from atlasreg_cursor.entrypoints.output import format_table
from atlasreg_cursor.entrypoints.readiness import LoopMonitor, ReadinessProber
from tests.support.services import wait_until


class CountingStore(FileObjectStore):
    """The real directory store, counting the bodies it reads."""

    gets = 0

    def get(self, key: str):  # type: ignore[no-untyped-def]
        self.gets += 1
        return super().get(key)


def _journals(store: FileObjectStore, count: int) -> list[str]:
    ids = []
    for n in range(count):
        run_id = f"run_{n:012x}"
        now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(hours=n)
        journal = RunJournal(
            run_id=run_id,
            date=now.date(),
            message_type=MessageType.START_DAILY_INGEST,
            identity=f"m{n}",
            created_at=now,
            updated_at=now,
        )
        store.put(journal_key(run_id), canonical_bytes(converter.unstructure(journal)))
        ids.append(run_id)
        time.sleep(0.01)  # distinct modification times
    return ids


def test_runs_list_reads_only_the_newest_journals(tmp_path: Path) -> None:
    """Twenty journals, --limit 3: three bodies read, the three written last."""
    store = CountingStore(tmp_path)
    ids = _journals(store, 20)
    store.gets = 0

    got = [j.run_id for j in recent_journals(store, 3)]

    assert list(reversed(ids[-3:])) == got
    assert 3 == store.gets


def test_loop_monitor_counts_a_run_as_alive_until_its_limit() -> None:
    """Idle without beating is wedged; busy is alive until the run limit passes."""
    monitor = LoopMonitor()
    assert not monitor.liveness(idle_limit=60, run_limit=60)[0]
    monitor.beat()
    assert monitor.liveness(idle_limit=60, run_limit=60)[0]
    monitor.beat_at = time.monotonic() - 120
    assert "consume loop" in monitor.liveness(idle_limit=60, run_limit=600)[1]["reason"]
    with monitor.working():
        assert monitor.liveness(idle_limit=0.001, run_limit=600)[0]
        monitor.busy_since = time.monotonic() - 700
        alive, detail = monitor.liveness(idle_limit=60, run_limit=600)
    assert (False, "a run has been in progress for over 600s") == (alive, detail["reason"])
    assert monitor.liveness(idle_limit=60, run_limit=600)[0]  # working() beats on the way out


def test_prober_reports_a_failure_and_clears_it_on_recovery(tmp_path: Path) -> None:
    """A missing file makes the config probe fail with its error; once back, the error is gone."""
    path = tmp_path / "watchlist.json"

    def check() -> None:
        json.loads(path.read_text())

    prober = ReadinessProber({"config": check}, interval=60)
    assert (False, "not probed yet: config") == (
        prober.readiness()[0],
        prober.readiness()[1]["reason"],
    )
    prober.probe_once()
    ready, detail = prober.readiness()
    assert not ready
    assert "config unreachable (FileNotFoundError" in detail["reason"]

    path.write_text("{}")
    prober.probe_once()

    assert (True, None) == (prober.readiness()[0], prober.readiness()[1].get("reason"))
    assert detail["dependencies"]["config"]["error"] is not None
    assert prober.readiness()[1]["dependencies"]["config"]["error"] is None


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], "A  B"),
        (
            [{"a": "x", "b": None}, {"a": "longer", "b": True}],
            "A       B\nx       -\nlonger  yes",
        ),
        ([{"a": {"k": 1}, "b": "two\nlines"}], 'A         B\n{"k": 1}  two lines'),
    ],
)
def test_table_format(rows: list[dict], expected: str) -> None:
    """Columns align, None is '-', booleans read yes/no, values stay on one line."""
    assert expected == format_table(rows, ["a", "b"])


def test_a_probe_that_hangs_turns_readiness_stale_then_recovers() -> None:
    """The store probe answers once, then hangs: /readyz goes 503 "probe stale", naming it."""
    release = threading.Event()
    calls = []

    def storage() -> None:
        calls.append(time.monotonic())
        if len(calls) > 1:
            release.wait(30)

    prober = ReadinessProber(
        {"queue": lambda: None, "storage": storage}, interval=0.05, stale_after=0.5
    ).start()
    try:
        assert wait_until(lambda: prober.readiness()[0], timeout=5)
        assert wait_until(
            lambda: "storage unreachable" in prober.readiness()[1].get("reason", ""), timeout=5
        )
        ready, detail = prober.readiness()
        release.set()
        assert wait_until(lambda: prober.readiness()[0], timeout=5)
    finally:
        release.set()
        prober.stop()

    assert not ready
    assert "storage unreachable (probe stale: no result for" in detail["reason"]
    assert detail["dependencies"]["storage"]["ok"] is False
    assert "storage" == detail["probing"]["dependency"]
    assert "reason" not in prober.readiness()[1]
