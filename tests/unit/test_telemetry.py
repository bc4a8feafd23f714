"""Progress events and journals → metrics: what is known, counted once per run, restored at start."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.domain.codec import converter
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.ingest import HandleResult, Outcome
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import (
    GoldRecord,
    RunJournal,
    RunStatus,
    SourceOutcome,
    journal_key,
)
from atlasreg_cursor.entrypoints import telemetry
from atlasreg_cursor.ports.storage import ObjectStore

T0 = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fresh_book(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has seen nothing yet (the gauges themselves are process-wide)."""
    monkeypatch.setattr(telemetry, "_book", telemetry._RunBook())


def _streak(source_id: str) -> float:
    value = REGISTRY.get_sample_value(
        "cursor_source_consecutive_failures", {"source_id": source_id}
    )
    assert value is not None
    return value


def _write_journal(
    store: ObjectStore, n: int, outcomes: dict[str, bool], *, published: bool
) -> RunJournal:
    """Run *n* (created n hours after T0, finished ten minutes later), written now."""
    created = T0 + dt.timedelta(hours=n)
    status = RunStatus.PARTIAL if not all(outcomes.values()) else RunStatus.SUCCESS
    journal = RunJournal(
        run_id=f"run_{n:012x}",
        date=created.date(),
        message_type=MessageType.START_DAILY_INGEST,
        identity=f"m{n}",
        created_at=created,
        updated_at=created,
        sources=tuple(SourceOutcome(source_id=s, ok=ok) for s, ok in outcomes.items()),
        gold=GoldRecord(
            key=f"gold/{created.date()}/run_{n:012x}.json",
            sha256="0" * 64,
            size=1,
            status=status,
            documents_count=0,
            events_count=0,
            errors_count=0,
        )
        if published
        else None,
        status=status if published else RunStatus.FAILED,
        finished_at=created + dt.timedelta(minutes=10),
    )
    store.put(journal_key(journal.run_id), canonical_bytes(converter.unstructure(journal)))
    time.sleep(0.002)  # distinct write times: the newest is listed first
    return journal


def test_a_failing_source_counts_once_per_run_not_per_attempt() -> None:
    """Two attempts of one run fail the source: one; another run: two; a success: zero."""
    source = f"src-{uuid.uuid4().hex[:8]}"

    def finished(run_id: str, ok: bool) -> None:
        telemetry.record_event(
            "source.finished", {"run_id": run_id, "source_id": source, "ok": ok, "documents": 0}
        )

    finished("run_000000000001", False)
    finished("run_000000000001", False)  # the run's retry
    after_one_run = _streak(source)
    finished("run_000000000002", False)
    after_two_runs = _streak(source)
    finished("run_000000000003", True)

    assert (1.0, 2.0, 0.0) == (after_one_run, after_two_runs, _streak(source))


def test_failure_streaks_are_restored_from_the_journals(tmp_path: Path) -> None:
    """A restarted daemon reads each source's streak back, one per run, newest runs first."""
    store = FileObjectStore(tmp_path / "store")
    flaky, steady = f"flaky-{uuid.uuid4().hex[:6]}", f"steady-{uuid.uuid4().hex[:6]}"
    _write_journal(store, 0, {flaky: False, steady: True}, published=True)
    _write_journal(store, 1, {flaky: True, steady: True}, published=True)
    for n in range(2, 5):
        _write_journal(store, n, {flaky: False, steady: True}, published=True)

    telemetry.seed_from_store(store)

    assert (3.0, 0.0) == (_streak(flaky), _streak(steady))
    telemetry.record_event(
        "source.finished", {"run_id": "run_000000000004", "source_id": flaky, "ok": False}
    )
    assert 3.0 == _streak(flaky)  # that run was already counted


def test_a_source_the_journals_no_longer_show_loses_its_streak(tmp_path: Path) -> None:
    """A running daemon's next seed drops the streak series of a source gone from the journals."""
    store = FileObjectStore(tmp_path / "store")
    gone, live = f"gone-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        _write_journal(store, n, {gone: False, live: False}, published=True)
    telemetry.seed_from_store(store, journals=3)
    before = (_streak(gone), _streak(live))
    for n in range(3, 6):  # the source was removed from the watchlist
        _write_journal(store, n, {live: False}, published=True)

    telemetry.seed_from_store(store, journals=3)

    assert (3.0, 3.0) == before
    assert None is REGISTRY.get_sample_value(
        "cursor_source_consecutive_failures", {"source_id": gone}
    )
    assert 3.0 == _streak(live)


def test_a_source_out_of_the_watchlist_loses_its_streak_at_once(tmp_path: Path) -> None:
    """Disabled or removed, still in the recent journals: no streak series (no alert)."""
    store = FileObjectStore(tmp_path / "store")
    disabled, kept = f"off-{uuid.uuid4().hex[:6]}", f"on-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        _write_journal(store, n, {disabled: False, kept: False}, published=True)
    telemetry.record_event(
        "source.finished", {"run_id": "run_00000000000f", "source_id": disabled, "ok": False}
    )

    telemetry.seed_from_store(store, sources={kept})

    assert None is REGISTRY.get_sample_value(
        "cursor_source_consecutive_failures", {"source_id": disabled}
    )
    assert 3.0 == _streak(kept)


def test_the_daemon_seeds_streaks_for_the_watchlist_it_probed(tmp_path: Path) -> None:
    """start_operations: the config probe's enabled sources filter the store's streaks."""
    import json

    from atlasreg_cursor.entrypoints.bootstrap import build
    from atlasreg_cursor.entrypoints.operations import start_operations
    from atlasreg_cursor.entrypoints.readiness import LoopMonitor
    from atlasreg_cursor.entrypoints.settings import load_settings
    from tests.support.services import wait_until

    disabled, kept = f"off-{uuid.uuid4().hex[:6]}", f"on-{uuid.uuid4().hex[:6]}"
    watchlist = tmp_path / "watchlist.json"
    watchlist.write_text(
        json.dumps(
            {
                "sources": [
                    {"id": kept, "handler_id": "CUSTOM_SCRAPER"},
                    {"id": disabled, "handler_id": "CUSTOM_SCRAPER", "enabled": False},
                ]
            }
        )
    )
    app = build(
        load_settings(
            {
                "CURSOR_HOME": str(tmp_path),
                "WATCHLIST_FILE": str(watchlist),
                "PROBE_INTERVAL_SECONDS": "1",
            },
            env_file=None,
        )
    )
    for n in range(3):
        _write_journal(app.storage, n, {disabled: False, kept: False}, published=True)

    ops = start_operations(app, LoopMonitor(), serve_http=False)
    try:
        assert wait_until(
            lambda: (
                REGISTRY.get_sample_value("cursor_source_consecutive_failures", {"source_id": kept})
                == 3.0
            ),
            timeout=10,
        )
    finally:
        ops.stop()
        app.close()

    assert None is REGISTRY.get_sample_value(
        "cursor_source_consecutive_failures", {"source_id": disabled}
    )


def test_the_last_success_is_found_beyond_the_twenty_newest_journals(tmp_path: Path) -> None:
    """Twenty-five runs, only the oldest published: the first seed reads back to it."""
    store = FileObjectStore(tmp_path / "store")
    oldest = _write_journal(store, 0, {"a": True}, published=True)
    for n in range(1, 25):
        _write_journal(store, n, {"a": False}, published=False)

    telemetry.seed_from_store(store)

    assert oldest.finished_at is not None
    assert oldest.finished_at.timestamp() == metrics.RUN_LAST_SUCCESS.get()
    assert oldest.finished_at.timestamp() == REGISTRY.get_sample_value(
        "cursor_run_last_success_timestamp_seconds"
    )


def test_an_unknown_last_success_is_not_exported() -> None:
    """No success known: no sample at all (0 would read as a success in 1970)."""
    gauge = metrics.KnownOnlyGauge("cursor_test_known_only_timestamp_seconds", "test gauge")
    try:
        absent = REGISTRY.get_sample_value("cursor_test_known_only_timestamp_seconds")
        gauge.set(1795510800.0)
        present = REGISTRY.get_sample_value("cursor_test_known_only_timestamp_seconds")
    finally:
        REGISTRY.unregister(gauge)

    assert (None, 1795510800.0) == (absent, present)


def test_run_duration_is_observed_for_finished_runs_only() -> None:
    """A poison message and a duplicate are deliveries, not runs: only the run is observed."""

    def count(status: str) -> float:
        value = REGISTRY.get_sample_value("cursor_run_duration_seconds_count", {"status": status})
        return value or 0.0

    before = count("partial"), count("failed")
    deliveries_before = REGISTRY.get_sample_value("cursor_processing_duration_seconds_count") or 0
    telemetry.record_event("run.started", {"run_id": "run_00000000000a"})
    telemetry.record_event("run.finished", {"run_id": "run_00000000000a", "status": "partial"})
    telemetry.record_handled(HandleResult(outcome=Outcome.ACKED), 0.5)
    telemetry.record_event("message.poison", {"error_type": "invalid_message"})
    telemetry.record_handled(HandleResult(outcome=Outcome.DEAD_LETTERED), 0.01)
    telemetry.record_handled(HandleResult(outcome=Outcome.DUPLICATE), 0.01)
    telemetry.record_event("run.failed", {"run_id": "run_00000000000b", "error_type": "x"})

    after = count("partial"), count("failed")
    deliveries = REGISTRY.get_sample_value("cursor_processing_duration_seconds_count") or 0
    assert (before[0] + 1, before[1]) == after  # the failure was never started here
    assert 3 == deliveries - deliveries_before


def test_the_pump_exports_how_long_the_oldest_webhook_has_waited(tmp_path: Path) -> None:
    """Two webhooks pending, the older made two hours ago: the age is two hours, not a count."""
    from atlasreg_cursor.domain import notifications as notes
    from atlasreg_cursor.domain.ingest import Outbox
    from atlasreg_cursor.entrypoints.background import NotificationPump
    from atlasreg_cursor.entrypoints.bootstrap import build
    from atlasreg_cursor.entrypoints.settings import load_settings
    from tests.fakes import FakeNotifier
    from tests.support.services import wait_until

    notifier = FakeNotifier()
    notifier.fail_next = 10**6  # the receiver stays down
    app = build(
        load_settings({"CURSOR_HOME": str(tmp_path), "NOTIFY_SCAN_SECONDS": "0.1"}, env_file=None),
        storage=FileObjectStore(tmp_path / "store"),
        notifier=notifier,
    )
    now = dt.datetime.now(dt.UTC)
    for n, made in enumerate((now - dt.timedelta(hours=2), now)):
        record = notes.ingest_complete(
            run_id=f"run_{n:012x}",
            status=RunStatus.SUCCESS,
            completed_at=made,
            file_path=f"gold/2026-11-24/run_{n:012x}.json",
            sha256="0" * 64,
            documents_count=1,
            errors_count=0,
        ).to_record()
        Outbox(app.storage, clock=lambda made=made: made).add(f"run_{n:012x}", record)

    def age() -> float:
        return REGISTRY.get_sample_value("cursor_notifications_oldest_pending_age_seconds") or 0.0

    pump = NotificationPump(app, on_event=lambda name, data: None).start()
    try:
        assert wait_until(lambda: age() > 7000, timeout=10)
    finally:
        pump.stop()

    assert 7200 <= age() < 7260
    assert 2 == REGISTRY.get_sample_value("cursor_notifications_pending")


def test_the_readme_lists_every_exported_series_with_its_labels() -> None:
    """README's metrics list names each series of adapters/metrics.py, labels included, and no other."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Metrics, the dashboard and the alerts")[1].split("**Dashboard**")[0]
    listed = set(re.findall(r"`(cursor_\w+(?:\{[\w,]+\})?)`", section))
    exported = set()
    for value in vars(metrics).values():
        if isinstance(value, type) or not hasattr(value, "describe"):
            continue
        labels = getattr(value, "_labelnames", ())
        for family in value.describe():
            name = family.name + ("_total" if family.type == "counter" else "")
            exported.add(name + ("{" + ",".join(labels) + "}" if labels else ""))

    assert len(exported) >= 30
    assert set() == exported - listed
    assert set() == listed - exported
