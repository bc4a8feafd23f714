"""SqliteQueue through the MessageQueue contract, plus SQLite-only checks."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.domain.errors import LeaseExpired, QueueConfigurationError, QueueUnavailable
from atlasreg_cursor.ports.queue import MessageQueue
from tests.contract.queue_contract import QueueContract, QueueFactory, receive_until


class TestSqliteQueue(QueueContract):
    """The local queue honours the whole contract."""

    MIN_VISIBILITY = 0.5
    REDELIVERY_SLACK = 1.0

    @pytest.fixture
    def queue_factory(self, tmp_path: Path) -> Iterator[QueueFactory]:
        """Consumers on one fresh database file."""
        made: list[SqliteQueue] = []

        def make(visibility_timeout: float) -> MessageQueue:
            queue = SqliteQueue(tmp_path / "queue.db", visibility_timeout=visibility_timeout)
            made.append(queue)
            return queue

        yield make
        for queue in made:
            queue.close()


def test_ack_after_lease_expired_without_redelivery(tmp_path: Path) -> None:
    """An expired lease cannot be acked even if nobody took the message since."""
    queue = SqliteQueue(tmp_path / "q.db", visibility_timeout=0.2)
    queue.send(b"x")
    [delivery] = queue.receive(1)
    time.sleep(0.3)

    with pytest.raises(LeaseExpired):
        queue.ack(delivery)
    with pytest.raises(LeaseExpired):
        queue.extend(delivery, 10)
    queue.close()


def test_queues_in_one_file_are_separate(tmp_path: Path) -> None:
    """Two queue names in one file never see each other's messages."""
    a = SqliteQueue(tmp_path / "q.db", queue_name="a")
    b = SqliteQueue(tmp_path / "q.db", queue_name="b")
    a.send(b"for a")

    from_b = b.receive(1, wait_seconds=0)
    from_a = a.receive(1, wait_seconds=0)

    assert [] == from_b
    assert [b"for a"] == [d.body for d in from_a]
    assert 0 == (b.stats().ready or 0) + (b.stats().in_flight or 0)
    a.close()
    b.close()


def test_messages_survive_reopening(tmp_path: Path) -> None:
    """Sent and un-acked messages are still there after the file is reopened."""
    first = SqliteQueue(tmp_path / "q.db", visibility_timeout=0.2)
    first.send(b"durable")
    first.receive(1)
    first.close()
    time.sleep(0.3)

    second = SqliteQueue(tmp_path / "q.db")
    [delivery] = receive_until(second, 1, timeout=2)

    assert b"durable" == delivery.body
    assert 2 == delivery.attempts
    assert delivery.identity_from_queue is False
    second.close()


def test_receive_idles_without_busy_polling(tmp_path: Path) -> None:
    """A one-second empty wait polls a handful of times, not thousands."""
    queue = SqliteQueue(tmp_path / "q.db")
    start = time.process_time()

    queue.receive(1, wait_seconds=1.0)
    cpu = time.process_time() - start

    assert cpu < 0.2
    queue.close()


def test_bad_arguments(tmp_path: Path) -> None:
    """Nonsense sizes and timeouts are refused."""
    with pytest.raises(QueueConfigurationError):
        SqliteQueue(tmp_path / "q.db", visibility_timeout=0)
    queue = SqliteQueue(tmp_path / "q.db")
    with pytest.raises(ValueError, match="max_messages"):
        queue.receive(0)
    with pytest.raises(ValueError, match="max_messages"):
        queue.receive(101)
    queue.close()


def test_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    """A path that cannot hold a database is ``QueueUnavailable``."""
    (tmp_path / "dir.db").mkdir()

    with pytest.raises(QueueUnavailable):
        SqliteQueue(tmp_path / "dir.db")


def test_repr_names_the_file_only(tmp_path: Path) -> None:
    """The repr is short and names the file and queue."""
    queue = SqliteQueue(tmp_path / "q.db")

    assert (
        f"SqliteQueue(path={str((tmp_path / 'q.db').resolve())!r}, queue_name='ingest-queue')"
        == repr(queue)
    )
    queue.close()


# --- a commit whose answer was lost ----------------------------------------------


class LostCommitQueue(SqliteQueue):
    """Commits, then reports a lock error: the caller cannot tell the change landed."""

    armed = 0

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with super()._transaction() as conn:
            yield conn
        if self.armed:
            self.armed -= 1
            raise sqlite3.OperationalError("database is locked")


def test_receive_rerun_after_a_lost_commit_returns_the_same_lease(tmp_path: Path) -> None:
    """A receive retried after its commit was lost leases nothing more."""
    queue = LostCommitQueue(tmp_path / "q.db", visibility_timeout=60)
    queue.send(b"first")
    queue.send(b"second")

    queue.armed = 1
    [got] = queue.receive(1)
    [other] = queue.receive(1)

    assert (b"first", 1, b"second") == (got.body, got.attempts, other.body)
    assert (0, 2) == (queue.stats().ready, queue.stats().in_flight)


def test_send_rerun_after_a_lost_commit_inserts_once(tmp_path: Path) -> None:
    """A send retried after its commit was lost is one message."""
    queue = LostCommitQueue(tmp_path / "q.db", visibility_timeout=60)

    queue.armed = 1
    message_id = queue.send(b"once")
    got = queue.receive(10)

    assert [(message_id, b"once")] == [(d.queue_message_id, d.body) for d in got]


@pytest.mark.parametrize("op", ["ack", "retry", "dead_letter", "extend", "replay"])
def test_settling_rerun_after_a_lost_commit_is_done_once(tmp_path: Path, op: str) -> None:
    """ack, retry, dead_letter, extend and replay retried after a lost commit succeed once."""
    queue = LostCommitQueue(tmp_path / "q.db", visibility_timeout=60)
    queue.send(b"job")
    [delivery] = queue.receive(1)
    if op == "replay":
        queue.dead_letter(delivery, "testing")

    queue.armed = 1
    if op == "ack":
        queue.ack(delivery)
    elif op == "retry":
        queue.retry(delivery, 0)
    elif op == "dead_letter":
        queue.dead_letter(delivery, "testing")
    elif op == "extend":
        queue.extend(delivery, 120)
    else:
        assert queue.replay_dead(delivery.queue_message_id)
    stats = queue.stats()

    expected = {
        "ack": (0, 0, 0),
        "retry": (1, 0, 0),
        "dead_letter": (0, 0, 1),
        "extend": (0, 1, 0),
        "replay": (1, 0, 0),
    }[op]
    assert expected == (stats.ready, stats.in_flight, stats.dead)
    assert 0 == queue.armed
