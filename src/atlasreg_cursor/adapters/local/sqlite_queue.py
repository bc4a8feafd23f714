"""MessageQueue (and DeadLetterBox) on one SQLite file: the ``local`` queue.

Supports leases with a visibility timeout, delayed retries, dead letters with
a reason, lease extension and exact stats. Several consumer processes may
share one file: every state change is a ``BEGIN IMMEDIATE`` transaction, so
a message is leased by one consumer at a time and never lost. Times are wall
clock seconds, shared by every process on the machine.

``receive`` waits without busy polling: short polls with a growing pause
(50 ms up to 500 ms), woken at once by ``send`` from the same process.

A transaction retried after an error its commit may have survived (lock
contention, an I/O error reported late) does no harm twice: ``send`` inserts
its id once, a ``receive`` call returns what it leased before (its lease
tokens carry the call's token), ``retry`` and ``dead_letter`` keep the lease
token on the row so a re-run recognises its own release, and a re-run
``ack`` accepts that the row is already gone.

Settings read (by the composition root): ``CURSOR_HOME`` (where the file
lives), ``QUEUE_NAME``, ``VISIBILITY_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import stamina
import structlog

from atlasreg_cursor.domain.errors import LeaseExpired, QueueConfigurationError, QueueUnavailable
from atlasreg_cursor.ports.queue import DeadLetter, Delivery, QueueStats

log = structlog.get_logger()

T = TypeVar("T")

MAX_BATCH = 100
_POLL_FIRST = 0.05
_POLL_MAX = 0.5
_BUSY_TIMEOUT_MS = 10_000
_NEVER = "-"  # a state no row is ever in

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,  -- the queue's id (Delivery.queue_message_id)
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'dead')),
    visible_at REAL NOT NULL,
    lease_token TEXT,
    enqueued_at REAL NOT NULL,
    dead_reason TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, state, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_token ON messages (lease_token);
"""

_wakeups_lock = threading.Lock()
_wakeups: dict[str, threading.Condition] = {}


def _wakeup_for(path: Path) -> threading.Condition:
    """The in-process condition shared by every queue on one file."""
    key = str(path)
    with _wakeups_lock:
        return _wakeups.setdefault(key, threading.Condition())


def _delivery(queue_message_id: str, body: bytes, attempts: int, token: str) -> Delivery:
    return Delivery(
        queue_message_id=queue_message_id,
        body=bytes(body),
        attempts=attempts,
        lease_token=token,
        identity_from_queue=False,
    )


def _is_busy(exc: Exception) -> bool:
    """Retry only lock contention; other SQLite errors are not transient."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


class SqliteQueue:
    """
    A durable queue in a SQLite file.

    Args:
        path: the database file (created with its directory if missing).
        queue_name: several queues may share one file.
        visibility_timeout: seconds a received message stays leased.
        clock: wall-clock seconds; every process on the file must agree.

    Raises:
        QueueUnavailable: the file cannot be opened.
        QueueConfigurationError: the visibility timeout is not positive.
    """

    def __init__(
        self,
        path: Path,
        *,
        queue_name: str = "ingest-queue",
        visibility_timeout: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if visibility_timeout <= 0:
            raise QueueConfigurationError("visibility timeout must be positive")
        self.path = Path(path).resolve()
        self.queue_name = queue_name
        self.visibility_timeout = visibility_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._wakeup = _wakeup_for(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise QueueUnavailable(f"cannot open queue database {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteQueue(path={str(self.path)!r}, queue_name={self.queue_name!r})"

    # --- transactions ---------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn* in one write transaction, retrying lock contention."""
        return self._run_again(what, lambda conn, _first: fn(conn))

    def _run_again(self, what: str, fn: Callable[[sqlite3.Connection, bool], T]) -> T:
        """Like :meth:`_run`; *fn* is told whether this is its first attempt."""
        try:
            for attempt in stamina.retry_context(on=_is_busy, attempts=5, timeout=60.0):
                with attempt, self._transaction() as conn:
                    return fn(conn, attempt.num == 1)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"queue {self.queue_name}: {what} failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --- MessageQueue -----------------------------------------------------------

    def send(self, body: bytes) -> str:
        """Enqueue *body*; return its id (uuid4 hex)."""
        queue_message_id = uuid.uuid4().hex
        now = self._clock()

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(  # OR IGNORE: a re-run after a lost commit inserts nothing
                "INSERT OR IGNORE INTO messages (queue, message_id, body, attempts, state,"
                " visible_at, enqueued_at) VALUES (?, ?, ?, 0, 'ready', ?, ?)",
                (self.queue_name, queue_message_id, bytes(body), now, now),
            )

        self._run("send", insert)
        with self._wakeup:
            self._wakeup.notify_all()
        log.debug(
            "queue.sent", queue=self.queue_name, queue_message_id=queue_message_id, size=len(body)
        )
        return queue_message_id

    def receive(self, max_messages: int = 1, wait_seconds: float = 0.0) -> list[Delivery]:
        """
        Lease up to *max_messages* due messages, oldest first.

        Blocks up to *wait_seconds* for the first one; returns ``[]`` if none came.
        """
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be between 1 and {MAX_BATCH}")
        deadline = time.monotonic() + max(0.0, wait_seconds)
        pause = _POLL_FIRST
        while True:
            lease = functools.partial(  # the call's token: once, before the retries
                self._lease, limit=max_messages, call=secrets.token_hex(12)
            )
            got = self._run("receive", lease)
            if got:
                log.debug("queue.received", queue=self.queue_name, count=len(got))
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            with self._wakeup:
                self._wakeup.wait(timeout=min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    def _lease(self, conn: sqlite3.Connection, limit: int, call: str) -> list[Delivery]:
        now = self._clock()
        earlier = conn.execute(
            "SELECT message_id, body, attempts, lease_token FROM messages"
            " WHERE lease_token >= ? AND lease_token < ? AND queue = ? AND state = 'leased'"
            " AND visible_at > ? ORDER BY seq",
            (f"{call}.", f"{call}/", self.queue_name, now),  # the tokens "<call>.<n>"
        ).fetchall()
        if earlier:  # this call committed before: hand out the same leases
            return [_delivery(mid, body, attempts, token) for mid, body, attempts, token in earlier]
        rows = conn.execute(
            "SELECT seq, message_id, body, attempts FROM messages"
            " WHERE queue = ? AND state IN ('ready', 'leased') AND visible_at <= ?"
            " ORDER BY seq LIMIT ?",
            (self.queue_name, now, limit),
        ).fetchall()
        out = []
        for index, (seq, queue_message_id, body, attempts) in enumerate(rows):
            token = f"{call}.{index}"
            conn.execute(
                "UPDATE messages SET state = 'leased', lease_token = ?, attempts = ?,"
                " visible_at = ? WHERE seq = ?",
                (token, attempts + 1, now + self.visibility_timeout, seq),
            )
            out.append(_delivery(queue_message_id, body, attempts + 1, token))
        return out

    def _change(
        self,
        what: str,
        delivery: Delivery,
        sql: str,
        params: tuple[Any, ...],
        *,
        done_state: str | None,
    ) -> None:
        """
        Apply *sql* to the delivery's row if its lease is still held.

        A re-run after a lost commit recognises its own earlier effect: the
        row in *done_state* still carrying this lease's token, or (for a
        delete, *done_state* ``None``) no row at all. ``extend`` needs no such
        check (running it twice is running it once) and passes
        :data:`_NEVER`, a state no row has.
        """

        def apply(conn: sqlite3.Connection, first: bool) -> bool:
            now = self._clock()
            cursor = conn.execute(
                sql + " WHERE queue = ? AND message_id = ? AND state = 'leased'"
                " AND lease_token = ? AND visible_at > ?",
                (*params, self.queue_name, delivery.queue_message_id, delivery.lease_token, now),
            )
            if cursor.rowcount == 1:
                return True
            row = conn.execute(
                "SELECT state, lease_token FROM messages WHERE queue = ? AND message_id = ?",
                (self.queue_name, delivery.queue_message_id),
            ).fetchone()
            if done_state is None:
                return row is None and not first
            return row is not None and tuple(row) == (done_state, delivery.lease_token)

        if not self._run_again(what, apply):
            raise LeaseExpired(
                f"queue {self.queue_name}: lease of {delivery.queue_message_id}"
                f" expired before {what}"
            )
        log.debug(
            f"queue.{what}", queue=self.queue_name, queue_message_id=delivery.queue_message_id
        )

    def ack(self, delivery: Delivery) -> None:
        """Delete the delivered message. Raises ``LeaseExpired`` if the lease is gone."""
        self._change("acked", delivery, "DELETE FROM messages", (), done_state=None)

    def retry(self, delivery: Delivery, delay_seconds: float) -> None:
        """Release the message, due again in *delay_seconds*. Raises ``LeaseExpired``."""
        due = self._clock() + max(0.0, delay_seconds)
        self._change(  # the lease token stays on the row: a re-run sees its own release
            "retried",
            delivery,
            "UPDATE messages SET state = 'ready', visible_at = ?",
            (due,),
            done_state="ready",
        )
        if delay_seconds <= 0:
            with self._wakeup:
                self._wakeup.notify_all()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move the message to the dead letters with *reason*. Raises ``LeaseExpired``."""
        self._change(
            "dead_lettered",
            delivery,
            "UPDATE messages SET state = 'dead', dead_reason = ?, dead_at = ?",
            (reason, self._clock()),
            done_state="dead",
        )

    def extend(self, delivery: Delivery, seconds: float) -> None:
        """Keep the lease for *seconds* from now. Raises ``LeaseExpired``."""
        until = self._clock() + max(0.0, seconds)
        self._change(
            "extended", delivery, "UPDATE messages SET visible_at = ?", (until,), done_state=_NEVER
        )

    def stats(self) -> QueueStats:
        """Exact counts of ready, in-flight, delayed and dead messages."""

        def count(conn: sqlite3.Connection) -> QueueStats:
            now = self._clock()
            row = conn.execute(
                "SELECT"
                " COALESCE(SUM(state IN ('ready', 'leased') AND visible_at <= ?), 0),"
                " COALESCE(SUM(state = 'leased' AND visible_at > ?), 0),"
                " COALESCE(SUM(state = 'ready' AND visible_at > ?), 0),"
                " COALESCE(SUM(state = 'dead'), 0)"
                " FROM messages WHERE queue = ?",
                (now, now, now, self.queue_name),
            ).fetchone()
            return QueueStats(ready=row[0], in_flight=row[1], delayed=row[2], dead=row[3])

        return self._run("stats", count)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    # --- DeadLetterBox ----------------------------------------------------------

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Return up to *limit* dead letters, oldest first."""

        def select(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(
                "SELECT message_id, body, dead_reason, attempts, dead_at FROM messages"
                " WHERE queue = ? AND state = 'dead' ORDER BY dead_at, seq LIMIT ?",
                (self.queue_name, max(0, limit)),
            ).fetchall()
            return [
                DeadLetter(
                    queue_message_id=mid,
                    body=bytes(body),
                    reason=reason or "",
                    attempts=attempts,
                    dead_at=None if at is None else dt.datetime.fromtimestamp(at, dt.UTC),
                )
                for mid, body, reason, attempts, at in rows
            ]

        return self._run("list_dead", select)

    def replay_dead(self, queue_message_id: str) -> bool:
        """Put a dead letter back on the queue with fresh attempts; ``False`` if absent."""
        now = self._clock()

        def replay(conn: sqlite3.Connection, first: bool) -> bool:
            changed = conn.execute(
                "UPDATE messages SET state = 'ready', attempts = 0, visible_at = ?,"
                " dead_reason = NULL, dead_at = NULL"
                " WHERE queue = ? AND message_id = ? AND state = 'dead'",
                (now, self.queue_name, queue_message_id),
            ).rowcount
            if changed == 1 or first:
                return changed == 1
            row = conn.execute(  # a re-run: did the first attempt put it back?
                "SELECT attempts, dead_at FROM messages WHERE queue = ? AND message_id = ?",
                (self.queue_name, queue_message_id),
            ).fetchone()
            return row is not None and row[1] is None

        replayed = self._run_again("replay_dead", replay)
        if replayed:
            with self._wakeup:
                self._wakeup.notify_all()
            log.info(
                "queue.dead_replayed", queue=self.queue_name, queue_message_id=queue_message_id
            )
        return replayed

    def purge_dead(self) -> int:
        """Delete every dead letter; return how many."""
        purged = self._run(
            "purge_dead",
            lambda conn: (
                conn.execute(
                    "DELETE FROM messages WHERE queue = ? AND state = 'dead'", (self.queue_name,)
                ).rowcount
            ),
        )
        log.info("queue.dead_purged", queue=self.queue_name, count=purged)
        return purged
