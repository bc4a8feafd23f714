"""The daemon loop on fakes: it survives anything, signals are only counted, stops give back."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.domain.ingest import Outcome, read_journal
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import derive_run_id
from atlasreg_cursor.entrypoints import daemon
from atlasreg_cursor.entrypoints.bootstrap import App, build
from atlasreg_cursor.entrypoints.settings import load_settings
from tests.fakes import FakeConfigSource, FakeExecutor, FakeNotifier, FakeObjectStore, FakeQueue
from tests.unit.world import DAILY, WATCHLIST

RUN_ID = derive_run_id(MessageType.START_DAILY_INGEST, "m-1")


def _app(tmp_path: Path, **env: str) -> App:
    settings = load_settings(
        {
            "CURSOR_HOME": str(tmp_path),
            "LEASE_SECONDS": "30",
            "RETRY_BASE_SECONDS": "1",
            "NOTIFY_SCAN_SECONDS": "0.2",
            "POLL_SECONDS": "0.2",
            **env,
        },
        env_file=None,
    )
    return build(
        settings,
        queue=FakeQueue(visibility_timeout=60),
        config=FakeConfigSource(json.loads(json.dumps(WATCHLIST))),
        storage=FakeObjectStore(),
        notifier=FakeNotifier(),
        executor=FakeExecutor(),
    )


def _unexpected(where: str) -> float:
    return metrics.UNEXPECTED_ERRORS.labels(where=where)._value.get()  # type: ignore[no-any-return]


def test_an_exception_while_settling_is_logged_counted_and_the_delivery_retried(
    tmp_path: Path,
) -> None:
    """A bug below handle_delivery (here in ack) never kills the loop nor orphans the delivery."""
    app = _app(tmp_path)
    queue: Any = app.queue
    real_ack = queue.ack
    calls = []

    def broken_ack(delivery: Any) -> None:
        calls.append(delivery)
        if len(calls) == 1:
            raise RuntimeError("a bug in ack")
        real_ack(delivery)

    queue.ack = broken_ack
    queue.send(json.dumps(DAILY).encode())
    before = _unexpected("handle")

    with structlog.testing.capture_logs() as logs:
        first = daemon.process_one(app, daemon.DaemonState(), 0.1)
    queue.state.clock = lambda: time.monotonic() + 3600  # the retry delay has passed
    second = daemon.process_one(app, daemon.DaemonState(), 0.1)

    assert first is not None
    assert second is not None
    assert (Outcome.RETRIED, Outcome.DUPLICATE) == (first.outcome, second.outcome)
    assert before + 1 == _unexpected("handle")
    crashed = [entry for entry in logs if entry["event"] == "message.crashed"]
    assert 1 == len(crashed)
    assert crashed[0]["log_level"] == "error"
    assert [] == queue.entries


def test_a_crash_between_receive_and_handle_cannot_orphan_a_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing the delivery (what runs before handle_delivery) raises: retried, then dead-lettered."""
    app = _app(tmp_path, MAX_ATTEMPTS="2")
    queue: Any = app.queue

    def broken(delivery: Any) -> Any:
        raise RuntimeError("a bug in parsing")

    monkeypatch.setattr(daemon, "read_job", broken)
    queue.send(json.dumps(DAILY).encode())

    first = daemon.process_one(app, daemon.DaemonState(), 0.1)
    queue.state.clock = lambda: time.monotonic() + 3600  # the retry delay has passed
    second = daemon.process_one(app, daemon.DaemonState(), 0.1)

    assert first is not None
    assert second is not None
    assert (Outcome.RETRIED, Outcome.DEAD_LETTERED) == (first.outcome, second.outcome)
    [(_, reason)] = queue.dead
    assert "unexpected error: RuntimeError: a bug in parsing" in reason
    assert [] == queue.entries


def test_two_daemons_without_consumer_id_never_share_a_lease_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same hostname, both pid 1: the second daemon sees the first one's lease as another's."""
    import socket

    from atlasreg_cursor.domain.ingest import Job, JournalStore
    from atlasreg_cursor.domain.messages import parse_message

    monkeypatch.setattr(socket, "gethostname", lambda: "cursor")
    monkeypatch.setattr(os, "getpid", lambda: 1)
    first = _app(tmp_path)
    second = build(
        first.settings,
        queue=first.queue,
        config=first.config,
        storage=first.storage,
        notifier=first.notifier,
        executor=first.executor,
    )
    body = json.dumps(DAILY).encode()
    journals = JournalStore(
        first.storage, owner=first.policy.consumer_id, lease_seconds=30, clock=first.clock
    )
    journals.open(Job.of(parse_message(body), "m-1"))  # the first daemon works the run
    first.queue.send(body)  # and a copy of its message comes

    result = daemon.process_one(second, daemon.DaemonState(), 0.1)

    journal = read_journal(first.storage, RUN_ID)
    assert journal is not None
    assert journal.lease is not None
    assert first.policy.consumer_id != second.policy.consumer_id
    assert result is not None
    assert (Outcome.DEFERRED, first.policy.consumer_id) == (result.outcome, journal.lease.owner)


def test_a_crash_deferring_a_long_deferred_duplicate_does_not_dead_letter_it(
    tmp_path: Path,
) -> None:
    """A bug escapes handle_delivery past MAX_ATTEMPTS deliveries: the live run's journal decides."""
    from atlasreg_cursor.domain.ingest import Job, JournalStore
    from atlasreg_cursor.domain.messages import parse_message

    app = _app(tmp_path, MAX_ATTEMPTS="2")
    queue: Any = app.queue
    body = json.dumps(DAILY).encode()
    live = JournalStore(app.storage, owner="consumer-b", lease_seconds=3600, clock=app.clock)
    live.open(Job.of(parse_message(body), "m-1"))
    queue.send(body)
    outcomes = []
    for hour in range(1, 4):
        outcomes.append(daemon.process_one(app, daemon.DaemonState(), 0.1))
        queue.state.clock = lambda hour=hour: time.monotonic() + 3600 * hour
    real_retry, calls = queue.retry, []

    def broken_retry(delivery: Any, delay: float) -> None:
        calls.append(delay)
        if len(calls) == 1:
            raise RuntimeError("a bug in retry")
        real_retry(delivery, delay)

    queue.retry = broken_retry
    crashed = daemon.process_one(app, daemon.DaemonState(), 0.1)

    assert [Outcome.DEFERRED] * 3 == [r.outcome for r in outcomes if r is not None]
    assert crashed is not None
    assert (Outcome.RETRIED, 2) == (crashed.outcome, len(calls))
    assert [] == queue.dead


class _WatchedStore(FakeObjectStore):
    """The fake store, recording the keys each list yields and each get reads."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def list(self, prefix: str = "") -> Any:
        for obj in super().list(prefix):
            self.seen.append(obj.key)
            yield obj

    def get(self, key: str) -> Any:
        self.seen.append(key)
        return super().get(key)


def test_the_pumps_scan_no_longer_reads_a_delivered_notification(tmp_path: Path) -> None:
    """Once delivered, the entry leaves what the background pump lists every scan."""
    from atlasreg_cursor.domain.ingest import Outbox
    from atlasreg_cursor.entrypoints.background import NotificationPump

    plain = _app(tmp_path)
    store = _WatchedStore()
    app = build(
        plain.settings,
        queue=plain.queue,
        config=plain.config,
        storage=store,
        notifier=plain.notifier,
        executor=plain.executor,
    )
    app.queue.send(json.dumps(DAILY).encode())
    pump = NotificationPump(app, on_event=daemon.log_event).start()
    try:
        daemon.process_one(app, daemon.DaemonState(), 0.1, pump=pump)
        assert pump.drain(10)
        notifier: Any = app.notifier
        assert ["ingest_complete"] == [n.event_type for n in notifier.sent]
        store.seen.clear()
        pump.nudge()
        assert pump.drain(10)  # another scan
    finally:
        pump.stop()

    assert [] == [key for key in store.seen if key.startswith("outbox/")]
    entries = Outbox(app.storage, clock=app.clock).entries()  # what hooks list --all reads
    assert ["delivered"] == [entry.state for _, entry in entries]


def test_a_journal_another_version_wrote_is_dead_lettered_saying_so(tmp_path: Path) -> None:
    """The daemon keeps going; after MAX_ATTEMPTS the message is dead-lettered with the reason."""
    app = _app(tmp_path, MAX_ATTEMPTS="2")
    app.storage.put(f"runs/{RUN_ID}.json", b'{"schema": "v9", "run_id": null}')
    queue: Any = app.queue
    queue.send(json.dumps(DAILY).encode())
    queue.send(json.dumps({**DAILY, "message_id": "m-2"}).encode())
    queue.state.clock = lambda: time.monotonic() + 10_000 * len(queue.state.retries)

    code = daemon.run_daemon(app, until_empty=True, serve_http=False)

    assert 0 == code
    [(_, reason)] = queue.dead
    assert "unreadable_journal" in reason
    assert read_journal(app.storage, derive_run_id(MessageType.START_DAILY_INGEST, "m-2"))


def test_the_signal_handler_only_counts(tmp_path: Path) -> None:
    """No log line, no lock, no exception from the handler: the loop acts on the count."""
    state = daemon.DaemonState()
    previous = daemon._install_signals(state)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with structlog.testing.capture_logs() as logs:
            handler(signal.SIGTERM, None)
            handler(signal.SIGTERM, None)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

    assert ([], 2, False) == (logs, state.signals, state.stop.is_set())


def _signal_later(count: int, after: float, gap: float) -> None:
    def send() -> None:
        time.sleep(after)
        for _ in range(count):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(gap)

    threading.Thread(target=send, daemon=True).start()


@pytest.mark.parametrize(
    ("signals", "grace", "code"),
    [(1, "30", 0), (2, "30", 130), (1, "0.5", 130)],
    ids=["one-signal-finishes", "second-signal-gives-back", "grace-over-gives-back"],
)
def test_stopping_finishes_or_gives_the_run_back(
    tmp_path: Path, signals: int, grace: str, code: int
) -> None:
    """First signal: the message in hand finishes. Second, or grace over: lease and message back, 130."""
    app = _app(tmp_path, STOP_GRACE_SECONDS=grace)
    executor: Any = app.executor
    executor.sleep["aneel_news"] = 2.5
    queue: Any = app.queue
    queue.send(json.dumps(DAILY).encode())
    _signal_later(signals, after=0.8, gap=0.3)

    started = time.monotonic()
    exit_code = daemon.run_daemon(app, serve_http=False)
    elapsed = time.monotonic() - started

    journal = read_journal(app.storage, RUN_ID)
    assert journal is not None
    assert code == exit_code
    assert journal.lease is None
    if code == 0:
        assert journal.gold is not None
        assert [] == queue.entries
    else:
        assert (None, 1) == (journal.gold, queue.stats().ready)
        assert elapsed < 2.4


def test_a_sweeping_daemon_finishes_an_orphaned_run_alive_and_ready(tmp_path: Path) -> None:
    """SWEEP_ORPHANS: a crashed consumer's run is finished without its message; while the
    resumed run outlasts the loop's idle limit, /healthz and /readyz stay 200."""
    import datetime as dt
    import urllib.error
    import urllib.request

    from atlasreg_cursor.domain.codec import converter
    from atlasreg_cursor.domain.hashing import canonical_bytes
    from atlasreg_cursor.domain.runs import Lease, RunJournal
    from atlasreg_cursor.entrypoints.readiness import LoopMonitor
    from tests.support.services import free_port

    port = free_port()
    app = _app(
        tmp_path,
        SWEEP_ORPHANS="true",
        SWEEP_SECONDS="0.1",
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(port),
    )
    executor: Any = app.executor
    executor.sleep["aneel_news"] = 1.6  # the resumed run lasts four idle limits
    now = dt.datetime.now(dt.UTC)
    orphan = RunJournal(
        run_id=RUN_ID,
        date=dt.date(2026, 11, 24),
        message_type=MessageType.START_DAILY_INGEST,
        identity="m-1",
        created_at=now,
        updated_at=now,
        lease=Lease(owner="dead", expires_at=now - dt.timedelta(seconds=1)),
        attempts=1,
    )
    app.storage.put(f"runs/{RUN_ID}.json", canonical_bytes(converter.unstructure(orphan)))
    state = daemon.DaemonState(monitor=LoopMonitor(idle_limit=0.4))
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(daemon.run_daemon(app, until_empty=True, state=state))
    )

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    runner.start()
    deadline = time.monotonic() + 10
    while ("run_source", "aneel_news") not in executor.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    started, answers = time.monotonic(), []
    while status("/readyz") != 200 and time.monotonic() - started < 1.0:
        time.sleep(0.02)  # the first round of probes
    while runner.is_alive() and time.monotonic() - started < 1.4:
        answers.append((status("/healthz"), status("/readyz")))
        time.sleep(0.1)
    runner.join(timeout=30)

    journal = read_journal(app.storage, RUN_ID)
    notifier: Any = app.notifier
    assert [0] == codes
    assert time.monotonic() - started > 0.9  # the checks went on past two idle limits
    assert len(answers) >= 6
    assert {(200, 200)} == set(answers)
    assert journal is not None
    assert journal.gold is not None
    assert journal.notification is not None
    assert journal.notification.delivered
    assert ["ingest_complete"] == [n.event_type for n in notifier.sent]


class _CarelessStore(FakeObjectStore):
    """A store that says it ignores If-None-Match (what the S3 probe finds on such a backend)."""

    def check_conditional_writes(self) -> None:
        from atlasreg_cursor.domain.errors import StorageError

        raise StorageError("the S3 endpoint ignores If-None-Match on PUT")


def test_a_store_without_conditional_writes_stops_the_daemon_before_it_starts(
    tmp_path: Path,
) -> None:
    """Exactly-once depends on If-None-Match: refused at start-up (exit 2), nothing consumed."""
    app = _app(tmp_path)
    app = build(
        app.settings,
        queue=app.queue,
        config=app.config,
        storage=_CarelessStore(),
        notifier=app.notifier,
        executor=app.executor,
    )
    app.queue.send(json.dumps(DAILY).encode())

    with structlog.testing.capture_logs() as logs:
        code = daemon.run_daemon(app, until_empty=True, serve_http=False)

    queue: Any = app.queue
    assert 2 == code
    assert 1 == len(queue.entries)
    assert "daemon.refused" in [entry["event"] for entry in logs]


@pytest.mark.parametrize(
    ("max_retries", "warned"), [("3", True), ("5", True), ("9", True), ("10", False)]
)
def test_cloudflare_max_retries_below_max_attempts_plus_margin_is_a_start_up_warning(
    tmp_path: Path, max_retries: str, warned: bool
) -> None:
    """Below MAX_ATTEMPTS (5) + 5, the warning names the wrangler setting and the value to set."""
    from atlasreg_cursor.entrypoints.startup import startup_checks

    app = _app(
        tmp_path,
        MODE="cloudflare",
        CONFIG_BACKEND="file",
        STORAGE_BACKEND="file",
        CF_QUEUE_MAX_RETRIES=max_retries,
        CORE_TASKS="custom_scrape",
    )

    warnings = startup_checks(app)

    assert warned == bool(warnings)
    if warned:
        [warning] = warnings
        assert f"max_retries={max_retries} " in warning
        assert "at least 10" in warning
        assert "CF_QUEUE_MAX_RETRIES" in warning


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MODE": "standalone"}, ["CORE_TASKS"]),
        (
            {"MODE": "standalone", "AIRFLOW_API_URL": "http://af:8080"},
            ["CORE_TASKS", "AIRFLOW_DAGS"],
        ),
        ({"MODE": "standalone", "CORE_TASKS": "custom_scrape"}, []),
        (
            {"MODE": "cloudflare", "CORE_TASKS": "x", "AIRFLOW_API_URL": "http://af:8080"},
            ["AIRFLOW_DAGS"],
        ),
        (
            {
                "MODE": "standalone",
                "AIRFLOW_API_URL": "http://af:8080",
                "CORE_TASKS": "x",
                "AIRFLOW_DAGS": "sigel_*",
            },
            [],
        ),
        ({"MODE": "local", "AIRFLOW_API_URL": "http://af:8080"}, []),
        ({"MODE": "local", "EXECUTOR_BACKEND": "core"}, ["CORE_TASKS"]),
    ],
)
def test_unset_core_allow_lists_are_start_up_warnings(
    env: dict[str, str], named: list[str]
) -> None:
    """With the Core executor, an unset CORE_TASKS / AIRFLOW_DAGS is a warning that says to set it."""
    from atlasreg_cursor.entrypoints.startup import allow_list_warnings

    warnings = allow_list_warnings(load_settings(env, env_file=None))

    assert named == [w.split(" ", 1)[0] for w in warnings]
    assert all(f"set {name} to" in w for name, w in zip(named, warnings, strict=True))


def test_watchlist_fields_that_do_nothing_are_start_up_warnings(tmp_path: Path) -> None:
    """At start the daemon names a misspelt watchlist field (it still loads and runs)."""
    from atlasreg_cursor.entrypoints.startup import startup_checks

    watchlist = json.loads(json.dumps(WATCHLIST))
    watchlist["sources"][0]["alert_on_zero_result"] = True
    app = _app(tmp_path)
    app = build(
        app.settings,
        queue=FakeQueue(visibility_timeout=60),
        config=FakeConfigSource(watchlist),
        storage=FakeObjectStore(),
        notifier=FakeNotifier(),
        executor=FakeExecutor(),
    )

    warnings = startup_checks(app)

    assert [
        "watchlist sources[0].alert_on_zero_result (aneel_news): not a field the Cursor reads"
        " (kept, ignored); 'alert_on_zero_results' belongs in global_settings"
    ] == warnings
