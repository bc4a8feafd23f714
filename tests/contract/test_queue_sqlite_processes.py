"""SqliteQueue shared by real consumer processes on one file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue

CONSUMER = """
import logging, sys, time
from pathlib import Path
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue

path, visibility, mode, idle_exit = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
queue = SqliteQueue(path, visibility_timeout=visibility)
print("ready", flush=True)
last = time.monotonic()
deadline = time.monotonic() + 60
done = False
while time.monotonic() < deadline and time.monotonic() - last < idle_exit:
    for d in queue.receive(5, wait_seconds=0.5):
        last = time.monotonic()
        print(d.body.decode(), d.attempts, flush=True)
        if mode == "hold":
            time.sleep(3600)
        queue.ack(d)
        done = mode == "one"
    if done:
        break
queue.close()
"""


def start_consumer(
    db: Path, *, visibility: float = 30.0, mode: str = "drain", idle_exit: float = 2.0
) -> subprocess.Popen[str]:
    """Start a consumer process and wait until it has opened the queue."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(db), str(visibility), mode, str(idle_exit)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "ready" == proc.stdout.readline().strip()
    return proc


def output_lines(proc: subprocess.Popen[str]) -> list[tuple[str, int]]:
    """The ``body attempts`` lines a finished consumer printed."""
    out, _ = proc.communicate(timeout=60)
    lines = []
    for line in out.splitlines():
        body, attempts = line.split()
        lines.append((body, int(attempts)))
    return lines


@pytest.mark.slow
def test_consumer_processes_drain_each_message_once(tmp_path: Path) -> None:
    """Three processes draining 300 messages deliver each exactly once."""
    db = tmp_path / "queue.db"
    producer = SqliteQueue(db)
    consumers = [start_consumer(db) for _ in range(3)]
    expected = [f"job-{i:04d}" for i in range(300)]
    for body in expected:
        producer.send(body.encode())

    seen = [line for proc in consumers for line in output_lines(proc)]

    assert sorted(expected) == sorted(body for body, _ in seen)
    assert {1} == {attempts for _, attempts in seen}
    assert 0 == producer.stats().ready
    producer.close()


@pytest.mark.slow
def test_message_of_a_killed_consumer_is_redelivered(tmp_path: Path) -> None:
    """A consumer killed mid-run loses nothing: another process gets the message."""
    db = tmp_path / "queue.db"
    producer = SqliteQueue(db)
    holder = start_consumer(db, visibility=0.5, mode="hold")
    producer.send(b"crash-me")
    assert holder.stdout is not None
    held = holder.stdout.readline().split()
    holder.kill()
    holder.wait(timeout=10)
    time.sleep(0.5)
    # Ends with its first message; waits up to 30 s for it (the machine may be loaded).
    survivor = start_consumer(db, mode="one", idle_exit=30.0)

    seen = output_lines(survivor)

    assert ["crash-me", "1"] == held
    assert [("crash-me", 2)] == seen
    assert (0, 0) == (producer.stats().in_flight, producer.stats().ready)
    producer.close()
