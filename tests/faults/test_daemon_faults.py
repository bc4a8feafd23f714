"""Faults inside the daemon's own world: a corrupted journal, a stop while the log pipe is full,
a store writer killed between its writes."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.domain.hashing import sha256_hex
from tests.faults.report import FaultReport
from tests.faults.support import (
    Daemon,
    JobSpec,
    check,
    daemon_env,
    doubled_notifications,
    gold_writes,
    gold_writes_logged,
    gold_writes_logged_by,
    golds_on_disk,
    jobs,
    journals_on_disk,
    log_lines,
    wait_for,
    write_watchlist,
)
from tests.support.cli import run_cli
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401

pytestmark = [pytest.mark.faults, pytest.mark.slow]

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032


def test_a_corrupted_journal_is_dead_lettered_saying_so_and_replayed_once_moved_aside(
    tmp_path: Path, site_url: str, webhook_receiver: WebhookReceiver, fault_report: FaultReport
) -> None:
    """Invariant: the daemon lives on; only the corrupted run is dead-lettered, with the reason;
    the others publish; after the operator moves the journal aside, `dlq replay` runs it once."""
    specs = jobs("corrupt", 3)
    bad = specs[0]
    store_root = tmp_path / "store"
    (store_root / "runs").mkdir(parents=True)
    (store_root / "runs" / f"{bad.run_id}.json").write_bytes(b'{"run_id": "' + b"\xff" * 8)
    queue = SqliteQueue(tmp_path / "queue.sqlite3")
    ids = [queue.send(spec.body) for spec in specs]
    env = daemon_env(
        tmp_path,
        write_watchlist(tmp_path / "watchlist.json", site_url),
        webhook_receiver,
        MODE="local",
        MAX_ATTEMPTS="3",
        RETRY_BASE_SECONDS="1",
        POLL_SECONDS="0.5",
        NOTIFY_SCAN_SECONDS="0.5",
    )
    daemon = Daemon(env, tmp_path, "corrupt")

    def failure_notified() -> bool:
        return any(r.path.endswith("/processing-error") for r in webhook_receiver.requests)

    assert wait_for(
        lambda: queue.stats().dead == 1 and len(webhook_receiver.requests) == 3, timeout=90
    ), daemon.tail()
    assert failure_notified()
    alive_after_fault = daemon.alive()
    [letter] = queue.list_dead()
    aside = tmp_path / "corrupt-journals"
    aside.mkdir()
    (store_root / "runs" / f"{bad.run_id}.json").rename(aside / f"{bad.run_id}.json")
    meta = store_root / ".meta" / "runs" / f"{bad.run_id}.json"
    if meta.exists():
        meta.unlink()
    replay = run_cli(["dlq", "replay", letter.queue_message_id], env=env, cwd=tmp_path)
    replayed = wait_for(lambda: golds_on_disk(store_root).get(bad.run_id) == 1, timeout=60)
    assert wait_for(lambda: queue.stats().ready == 0 and queue.stats().in_flight == 0, timeout=30)
    alive = daemon.alive()
    code = daemon.stop()
    writes = gold_writes(gold_writes_logged_by([daemon]))
    checked = check(specs, golds_on_disk(store_root), webhook_receiver, writes)
    fault_report.record(
        "corrupted_journal",
        invariant=(
            "the daemon lives on; only the corrupted run is dead-lettered, saying why;"
            " replayed once its journal is moved aside, it publishes once"
        ),
        faults_injected=1,
        dead_lettered_by_infrastructure_faults=0,
        dead_lettered_for_the_corrupted_journal=1,
        **checked.figures(),
    )

    assert (True, True, 0) == (alive_after_fault, alive, code)
    assert letter.queue_message_id == ids[0]
    assert "unreadable_journal" in letter.reason
    assert f"runs/{bad.run_id}.json" in letter.reason
    assert 0 == replay.returncode, replay.stderr
    assert replayed, daemon.tail()
    assert (0, 0) == (checked.lost, checked.doubled), checked
    assert () == checked.golds_never_seen_written
    assert () == checked.missing_notifications
    assert 0 == queue.stats().dead


def _fill_then_signal(
    tmp_path: Path, site_url: str, receiver: WebhookReceiver, signals: int
) -> tuple[int, float, SqliteQueue, list[JobSpec], Path, str]:
    """Run a chatty daemon whose stdout nobody reads; signal it once the pipe is full.

    Returns its exit code, how long it took to stop once read, its queue, its
    jobs, its store and its whole output."""
    specs = jobs(f"pipe-{signals}", 12)
    queue = SqliteQueue(tmp_path / "queue.sqlite3")
    for spec in specs:
        queue.send(spec.body)
    env = daemon_env(
        tmp_path,
        write_watchlist(tmp_path / "watchlist.json", site_url, slow_seconds=0.5),
        receiver,
        MODE="local",
        LOG_LEVEL="DEBUG",
        POLL_SECONDS="0.5",
        STOP_GRACE_SECONDS="30",
    )
    daemon = Daemon(env, tmp_path, f"pipe-{signals}", stdout=subprocess.PIPE)
    assert daemon.proc.stdout is not None
    fd = daemon.proc.stdout.fileno()
    fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)
    size = fcntl.fcntl(fd, F_GETPIPE_SZ)

    def unread() -> int:
        buf = bytearray(4)
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)

    seen: list[int] = []

    def full() -> bool:  # unread bytes stop growing: the next line does not fit
        seen.append(unread())
        return len(seen) > 5 and seen[-1] > size // 2 and len(set(seen[-5:])) == 1

    assert wait_for(full, timeout=60, interval=0.2)
    for _ in range(signals):
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
    time.sleep(1.0)
    sink: list[bytes] = []
    reader = threading.Thread(target=lambda: sink.append(daemon.proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    started = time.monotonic()
    try:
        code = daemon.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        code = -9
    stopped_in = time.monotonic() - started
    reader.join(timeout=10)
    output = b"".join(sink).decode(errors="replace")
    return code, stopped_in, queue, specs, tmp_path / "store", output


@pytest.mark.parametrize(("signals", "expected"), [(1, 0), (2, 130)], ids=["sigterm", "twice"])
def test_sigterm_while_the_log_pipe_is_full_stops_cleanly(
    tmp_path: Path,
    site_url: str,
    webhook_receiver: WebhookReceiver,
    fault_report: FaultReport,
    signals: int,
    expected: int,
) -> None:
    """Invariant: no deadlock; the daemon stops once the pipe drains (0, or 130 after a second
    signal); no message lost; no run left leased."""
    code, stopped_in, queue, specs, store_root, output = _fill_then_signal(
        tmp_path, site_url, webhook_receiver, signals
    )
    writes = gold_writes(gold_writes_logged(log_lines(output)))
    doubled_golds = sum(n - 1 for n in writes.values())
    doubled_notes = doubled_notifications(webhook_receiver.requests)
    stats = queue.stats()
    golds = golds_on_disk(store_root)
    waiting = {json.loads(d.body)["message_id"] for d in queue.receive(100)}
    lost = [s.run_id for s in specs if not golds.get(s.run_id) and s.message_id not in waiting]
    leased = [
        run_id for run_id, journal in journals_on_disk(store_root).items() if journal.get("lease")
    ]
    fault_report.record(
        f"sigterm_full_log_pipe_{'twice' if signals > 1 else 'once'}",
        invariant=(
            "no deadlock; clean stop once the pipe drains; every run published or its message"
            " waiting; nothing leased"
        ),
        faults_injected=signals,
        messages=len(specs),
        lost=len(lost),
        doubled=doubled_golds + doubled_notes,
        doubled_golds=doubled_golds,
        doubled_notifications=doubled_notes,
        exit_code=code,
        seconds_to_stop_after_drain=round(stopped_in, 1),
    )

    assert expected == code
    assert stopped_in < 30
    assert (0, 0) == (stats.in_flight, stats.dead)
    assert [] == lost
    assert (0, 0) == (doubled_golds, doubled_notes)
    assert [] == [run_id for run_id in golds if not writes.get(run_id)]  # every write seen
    assert [] == leased


CHILD = """
import os, sys
from pathlib import Path
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
store = FileObjectStore(Path(sys.argv[1]))
key = "runs/run_0123456789ab.json"
n = 0
while True:
    current = store.head(key)
    body = b'{"n": %d, "pad": "' % n + os.urandom(1).hex().encode() * (400_000 + n) + b'"}'
    if current is None:
        store.put(key, body, if_none_match=True, metadata={"n": str(n)})
    else:
        store.put(key, body, if_match=current.etag, metadata={"n": str(n)})
    n += 1
    print(n, flush=True)
"""


def test_a_store_writer_killed_between_its_writes_never_wedges_a_key(
    tmp_path: Path, rng: random.Random, fault_report: FaultReport
) -> None:
    """Invariant: after each kill -9 of a writer mid-put, head, get and if_match agree, and the
    key takes the next conditional write."""
    kills, crash_states, wedged = 12, 0, []
    for round_ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # one put done: the key exists
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        pending = list((tmp_path / ".pending").rglob("*.json"))
        store = FileObjectStore(tmp_path)
        head = store.head("runs/run_0123456789ab.json")
        data, got = store.get("runs/run_0123456789ab.json")
        crash_states += bool(pending)
        agreed = head is not None and head.etag == got.etag == sha256_hex(data)
        try:
            store.put("runs/run_0123456789ab.json", b"{}", if_match=got.etag)
        except Exception as exc:  # what this test looks for
            wedged.append(f"round {round_}: {type(exc).__name__}: {exc}")
            continue
        if not agreed:
            wedged.append(f"round {round_}: head and get disagree")
    fault_report.record(
        "file_store_writer_killed",
        invariant="head, get and if_match agree after every kill -9 of a writer; no key wedged",
        faults_injected=kills,
        killed_mid_put=crash_states,
        wedged=len(wedged),
    )

    assert [] == wedged
