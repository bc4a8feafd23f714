"""Run journals in the object store: open with a lease, save, release, finish.

Every write is a conditional put on the etag last read or written, so two
consumers never both believe they hold a run: the loser's next write fails
with ``PreconditionFailed`` and it learns it lost the lease.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs

from atlasreg_cursor.domain.codec import converter
from atlasreg_cursor.domain.errors import CursorError, PreconditionFailed
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.runs import Lease, RunJournal, journal_key

from .model import Clock, Job, LeaseHeld, LeaseLost, RunAborted, UnreadableJournal

if TYPE_CHECKING:
    from atlasreg_cursor.ports.storage import ObjectStore

JOURNAL_PREFIX = "runs/"
_OPEN_TRIES = 5


def journal_bytes(journal: RunJournal) -> bytes:
    """The canonical bytes a journal is stored as."""
    return canonical_bytes(converter.unstructure(journal))


def parse_journal(body: bytes, key: str) -> RunJournal:
    """
    Read a stored journal.

    Raises:
        UnreadableJournal: the bytes are not a journal this version understands.
    """
    try:
        journal: RunJournal = converter.structure(_upgraded(json.loads(body)), RunJournal)
    except (ValueError, TypeError, KeyError, AttributeError, cattrs.BaseValidationError) as exc:
        detail = (
            cattrs.transform_error(exc)[0] if isinstance(exc, cattrs.BaseValidationError) else exc
        )
        raise UnreadableJournal(f"journal {key} is unreadable: {detail}") from None
    return journal


def _upgraded(data: Any) -> Any:
    """A journal of an earlier version named its run identity ``message_id``."""
    if isinstance(data, dict) and "identity" not in data and "message_id" in data:
        data = {**data, "identity": data["message_id"]}
        del data["message_id"]
    return data


def read_journal(storage: ObjectStore, run_id: str) -> RunJournal | None:
    """
    Load a run's journal, or ``None`` when the run is unknown.

    Raises:
        UnreadableJournal: the journal exists but cannot be read.
    """
    from atlasreg_cursor.domain.errors import ObjectNotFound

    key = journal_key(run_id)
    try:
        body, _ = storage.get(key)
    except ObjectNotFound:
        return None
    return parse_journal(body, key)


class ActiveRun:
    """
    A journal this consumer holds the lease of, with the etag of its version.

    The flow, the heartbeat and a stop request share it; :attr:`lock`
    serialises their writes. :meth:`check` raises once the lease is lost or
    the run was told to stop.
    """

    def __init__(self, value: RunJournal, etag: str, saved_at: dt.datetime) -> None:
        self.value = value
        self.etag = etag
        self.saved_at = saved_at
        self.lock = threading.RLock()
        self.lost: CursorError | None = None
        self.aborted = threading.Event()

    def check(self) -> None:
        """
        Raise if the run must not go on.

        Raises:
            RunAborted: the daemon was told to stop at once.
            LeaseLost: another consumer took the run.
        """
        if self.aborted.is_set():
            raise RunAborted(f"run {self.value.run_id} stopped on request")
        if self.lost is not None:
            raise LeaseLost(f"lost the lease of run {self.value.run_id}: {self.lost}")


OpenState = Literal["fresh", "resumed", "complete", "failed"]


@attrs.frozen
class Opened:
    """What opening a run's journal found; ``active`` is set when the lease was taken."""

    state: OpenState
    journal: RunJournal
    active: ActiveRun | None = None


class JournalStore:
    """
    The journals of every run, leased to *owner* for *lease_seconds* at a time.

    Args:
        storage: where journals live (``runs/<run_id>.json``).
        owner: this consumer's id.
        lease_seconds: how long each write holds the lease.
        clock: the injected wall clock (leases are wall-clock times shared
            by every consumer).
    """

    def __init__(
        self, storage: ObjectStore, *, owner: str, lease_seconds: float, clock: Clock
    ) -> None:
        self.storage = storage
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.clock = clock

    def _lease(self, now: dt.datetime) -> Lease:
        return Lease(owner=self.owner, expires_at=now + dt.timedelta(seconds=self.lease_seconds))

    def read(self, run_id: str) -> tuple[RunJournal, str] | None:
        """
        The journal of *run_id* and its etag, or ``None``.

        Raises:
            UnreadableJournal: it exists but cannot be read.
        """
        from atlasreg_cursor.domain.errors import ObjectNotFound

        key = journal_key(run_id)
        try:
            body, stored = self.storage.get(key)
        except ObjectNotFound:
            return None
        return parse_journal(body, key), stored.etag

    def open(self, job: Job) -> Opened:
        """
        Create or take the journal of *job*'s run.

        A complete run is returned as it is (``complete``, or ``failed`` when
        it failed without its message being dead-lettered); a failed run
        whose message was dead-lettered and comes back (a replay) starts its
        next round. Otherwise the lease is taken and ``attempts`` counted.

        Raises:
            LeaseHeld: another live consumer holds the run.
            LeaseLost: the journal kept changing under us.
            UnreadableJournal: the journal cannot be read.
        """
        key = journal_key(job.run_id)
        for _ in range(_OPEN_TRIES):
            now = self.clock()
            found = self.read(job.run_id)
            if found is None:
                fresh = RunJournal(
                    run_id=job.run_id,
                    date=job.message.date,
                    message_type=job.message.type,
                    identity=job.identity,
                    payload=dict(job.message.payload),
                    created_at=now,
                    updated_at=now,
                    lease=self._lease(now),
                    attempts=1,
                )
                try:
                    stored = self.storage.put(key, journal_bytes(fresh), if_none_match=True)
                except PreconditionFailed:
                    continue
                return Opened("fresh", fresh, ActiveRun(fresh, stored.etag, now))
            current, etag = found
            taken = self._taken(current, now)
            if isinstance(taken, Opened):
                return taken
            try:
                stored = self.storage.put(key, journal_bytes(taken), if_match=etag)
            except PreconditionFailed:
                continue
            return Opened("resumed", taken, ActiveRun(taken, stored.etag, now))
        raise LeaseLost(f"could not take the lease of run {job.run_id}: the journal kept changing")

    def _taken(self, current: RunJournal, now: dt.datetime) -> RunJournal | Opened:
        """The journal as this consumer takes it, or what to return instead."""
        if current.complete and not current.failed:
            return Opened("complete", current)
        if current.failed and not current.dead_lettered:
            return Opened("failed", current)
        if current.failed:  # replayed from the dead letters: the next round
            return attrs.evolve(
                current,
                lease=self._lease(now),
                updated_at=now,
                attempts=1,
                round=current.round + 1,
                status=None,
                error=None,
                finished_at=None,
                retry_at=None,
                dead_lettered=False,
            )
        if current.lease is not None and current.lease.held_by_other(self.owner, now):
            raise LeaseHeld(current.run_id, current.lease.remaining(now))
        return attrs.evolve(
            current,
            lease=self._lease(now),
            updated_at=now,
            attempts=current.attempts + 1,
            retry_at=None,
        )

    def save(self, active: ActiveRun, **changes: Any) -> None:
        """
        Write a new version of the journal with *changes*, renewing the lease.

        Raises:
            LeaseLost: another consumer changed the journal (it took the lease).
            StorageError: the store refused or could not be reached.
        """
        with active.lock:
            now = self.clock()
            self._write(active, attrs.evolve(active.value, lease=self._lease(now), **changes), now)

    def release(self, active: ActiveRun, **changes: Any) -> None:
        """
        Give the lease up (a retry is due, or the run is handed back), writing *changes*.

        Raises:
            LeaseLost: another consumer changed the journal.
            StorageError: the store refused or could not be reached.
        """
        with active.lock:
            self._write(active, attrs.evolve(active.value, lease=None, **changes), self.clock())

    def finish(self, active: ActiveRun, **changes: Any) -> None:
        """
        Mark the run complete (``finished_at``) with *changes*, lease released.

        Raises:
            LeaseLost: another consumer changed the journal.
            StorageError: the store refused or could not be reached.
        """
        now = self.clock()
        self.release(active, finished_at=now, **changes)

    def _write(self, active: ActiveRun, updated: RunJournal, now: dt.datetime) -> None:
        if active.aborted.is_set() and updated.lease is not None:
            raise RunAborted(f"run {updated.run_id} stopped on request")
        updated = attrs.evolve(updated, updated_at=now)
        key = journal_key(updated.run_id)
        try:
            stored = self.storage.put(key, journal_bytes(updated), if_match=active.etag)
        except PreconditionFailed:
            error = LeaseLost(
                f"the journal of run {updated.run_id} was changed by another consumer"
            )
            active.lost = error
            raise error from None
        active.value, active.etag, active.saved_at = updated, stored.etag, now

    def update_complete(
        self, run_id: str, change: Callable[[RunJournal], Mapping[str, Any] | None]
    ) -> bool:
        """
        Change a complete run's journal (a notification's final state), if it still is.

        Args:
            change: given the journal, the fields to change (``None``: nothing).

        Returns:
            Whether the journal was changed (``False``: gone, not complete,
            nothing to change, or it kept changing).

        Raises:
            StorageError: the store could not be reached.
            UnreadableJournal: the journal cannot be read.
        """
        key = journal_key(run_id)
        for _ in range(_OPEN_TRIES):
            found = self.read(run_id)
            if found is None or not found[0].complete:
                return False
            journal, etag = found
            changes = change(journal)
            if not changes:
                return False
            updated = attrs.evolve(journal, **changes)
            try:
                self.storage.put(key, journal_bytes(updated), if_match=etag)
            except PreconditionFailed:
                continue
            return True
        return False

    def listing(self) -> Iterator[tuple[str, dt.datetime | None]]:
        """Every journal key with when it was last written (where the store says)."""
        for obj in self.storage.list(JOURNAL_PREFIX):
            if obj.key.endswith(".json"):
                yield obj.key, obj.last_modified
