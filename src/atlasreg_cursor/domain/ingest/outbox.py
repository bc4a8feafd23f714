"""The durable outbox: notifications waiting in the store until delivered.

A run that published its Gold (or failed before publishing) puts its
notification at ``outbox/pending/<run_id>/<webhook_id>.json`` (create-only:
the first body written is the one ever sent) and is done; the daemon's
deliverer sends it in the background with capped exponential backoff until it
is delivered, rejected (a 4xx: final) or older than the maximum age
(``expired``). A settled entry is then *filed*: copied to
``outbox/settled/<run_id>/<webhook_id>.json`` and removed from ``pending/``,
so the deliverer's scan lists only what is still pending, however many
notifications were ever sent. ``hooks list --all`` reads both; ``hooks
resend`` puts a settled entry back in ``pending/``. Entries of the earlier
layout (``outbox/<run_id>/…``) are scanned too and filed once settled.

The outbox is in the store beside the journals rather than inside them so
that delivering never writes a journal another consumer may be working on (a
replayed run's next round): each entry has its own conditional writes. An
attempt first *claims* the entry (attempts + 1, next attempt scheduled) with
``If-Match``, so two daemons never send one entry at once and a crash
mid-send retries it on schedule; the same ``webhook-id`` goes on every try.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import attrs
import cattrs

from atlasreg_cursor.domain.codec import converter
from atlasreg_cursor.domain.errors import (
    CursorError,
    NotificationRejected,
    ObjectNotFound,
    PreconditionFailed,
)
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.notifications import Notification
from atlasreg_cursor.domain.runs import NotificationRecord, RunJournal, validate_run_id

from .journals import JournalStore
from .model import Clock, EventSink, UnreadableJournal, error_text

if TYPE_CHECKING:
    from atlasreg_cursor.ports.notifier import Notifier
    from atlasreg_cursor.ports.storage import ObjectStore

OUTBOX_PREFIX = "outbox/"
PENDING_PREFIX = "outbox/pending/"
SETTLED_PREFIX = "outbox/settled/"
#: Where the earlier layout kept every entry, ``outbox/<run_id>/…`` (run ids start so).
LEGACY_PREFIXES = ("outbox/run_", "outbox/reprocess_")
#: At most this many settled entries are filed per scan (a first scan of a large
#: outbox of the earlier layout is spread over several).
FILE_PER_SCAN = 200
State = Literal["pending", "delivered", "rejected", "expired"]


def outbox_key(run_id: str, webhook_id: str) -> str:
    """``outbox/pending/<run_id>/<webhook_id>.json``: one entry per logical notification."""
    return f"{PENDING_PREFIX}{validate_run_id(run_id)}/{webhook_id}.json"


def settled_key(run_id: str, webhook_id: str) -> str:
    """``outbox/settled/<run_id>/<webhook_id>.json``: where a settled entry is filed."""
    return f"{SETTLED_PREFIX}{validate_run_id(run_id)}/{webhook_id}.json"


def _keys_of(run_id: str, webhook_id: str) -> tuple[str, str, str]:
    """Where an entry may be: pending, the earlier layout, settled (in that order)."""
    legacy = f"{OUTBOX_PREFIX}{validate_run_id(run_id)}/{webhook_id}.json"
    return outbox_key(run_id, webhook_id), legacy, settled_key(run_id, webhook_id)


@attrs.frozen(kw_only=True)
class OutboxEntry:
    """One notification to deliver and how delivering it went."""

    run_id: str
    event_type: str
    webhook_id: str
    path: str
    body: str
    created_at: dt.datetime
    state: State = "pending"
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    status_code: int | None = None
    delivered_at: dt.datetime | None = None
    resent_at: dt.datetime | None = None

    def notification(self) -> Notification:
        """The exact notification to send."""
        return Notification(
            event_type=self.event_type,
            run_id=self.run_id,
            webhook_id=self.webhook_id,
            path=self.path,
            body=self.body.encode("utf-8"),
        )


@attrs.frozen(kw_only=True)
class OutboxPolicy:
    """
    How long and how often the outbox retries.

    Args:
        max_age_seconds: give up this long after the entry was made (or resent).
        retry_base_seconds: wait after the first failed attempt; doubles each time.
        retry_max_seconds: the longest wait between attempts.
    """

    max_age_seconds: float = 72 * 3600.0
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 600.0

    def backoff(self, attempts: int) -> float:
        """The wait after the *attempts*-th attempt."""
        return float(
            min(self.retry_max_seconds, self.retry_base_seconds * 2 ** max(0, attempts - 1))
        )


class Outbox:
    """
    The outbox in *storage*.

    Args:
        storage: where entries live (beside the journals).
        clock: the injected wall clock.
        policy: retry and expiry.
    """

    def __init__(
        self, storage: ObjectStore, *, clock: Clock, policy: OutboxPolicy | None = None
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.policy = policy or OutboxPolicy()
        self.pending_count = 0
        self.oldest_pending_at: dt.datetime | None = None

    def add(self, run_id: str, record: NotificationRecord) -> str:
        """
        Queue *record* for delivery (create-only: an entry already there is kept,
        pending or settled, so a notification is never queued twice).

        Returns:
            The entry's key.

        Raises:
            StorageError: the store could not be reached.
        """
        key, legacy, settled = _keys_of(run_id, record.webhook_id)
        for there in (settled, legacy):
            if self.storage.head(there) is not None:
                return there
        now = self.clock()
        entry = OutboxEntry(
            run_id=run_id,
            event_type=record.event_type,
            webhook_id=record.webhook_id,
            path=record.path,
            body=record.body,
            created_at=now,
            next_attempt_at=now,
        )
        with contextlib.suppress(PreconditionFailed):  # the first one written is kept
            self.storage.put(key, _entry_bytes(entry), if_none_match=True)
        return key

    def read(self, key: str) -> tuple[OutboxEntry, str] | None:
        """
        An entry and its etag, ``None`` if there is none (or it is unreadable).

        Raises:
            StorageError: the store could not be reached.
        """
        try:
            body, stored = self.storage.get(key)
        except ObjectNotFound:
            return None
        try:
            return converter.structure(json.loads(body), OutboxEntry), stored.etag
        except (ValueError, TypeError, KeyError, cattrs.BaseValidationError):
            return None

    def entries(self, run_id: str | None = None) -> Iterator[tuple[str, OutboxEntry]]:
        """
        Every entry (of *run_id*, if given), pending and settled, by run and ``webhook-id``.

        An entry found twice (a crash while it was filed) is shown where it is pending.

        Raises:
            StorageError: the store could not be reached.
        """
        scoped = "" if run_id is None else f"{validate_run_id(run_id)}/"
        prefixes = (
            [f"{SETTLED_PREFIX}{scoped}"]
            + ([f"{OUTBOX_PREFIX}{scoped}"] if scoped else list(LEGACY_PREFIXES))
            + [f"{PENDING_PREFIX}{scoped}"]
        )
        found: dict[tuple[str, str], tuple[str, OutboxEntry]] = {}
        for prefix in prefixes:  # a later one wins
            for obj in self.storage.list(prefix):
                read = self.read(obj.key)
                if read is not None:
                    found[(read[0].run_id, read[0].webhook_id)] = (obj.key, read[0])
        for name in sorted(found):
            yield found[name]

    def find(self, run_id: str, webhook_id: str) -> tuple[str, OutboxEntry] | None:
        """
        An entry by its run and ``webhook-id``, wherever it is, with its key.

        Raises:
            StorageError: the store could not be reached.
        """
        for key in _keys_of(run_id, webhook_id):
            found = self.read(key)
            if found is not None:
                return key, found[0]
        return None

    def due(self) -> list[str]:
        """
        The keys of pending entries whose next attempt is due, oldest first.

        Only ``pending/`` (and the earlier layout) is listed; a settled entry
        found there (a crash while it was filed, or the earlier layout) is
        filed now. ``pending_count`` is left holding how many entries are
        still pending (due now or later), ``oldest_pending_at`` since when the
        oldest of them has waited (made, or resent).

        Raises:
            StorageError: the store could not be reached.
        """
        now = self.clock()
        due: list[tuple[dt.datetime, str]] = []
        pending, filed = 0, 0
        oldest: dt.datetime | None = None
        for prefix in (PENDING_PREFIX, *LEGACY_PREFIXES):
            for obj in self.storage.list(prefix):
                found = self.read(obj.key)
                if found is None:
                    continue
                entry = found[0]
                if entry.state != "pending":
                    if filed < FILE_PER_SCAN:
                        filed += 1
                        self._file(obj.key, entry)
                    continue
                pending += 1
                waiting = entry.resent_at or entry.created_at
                oldest = waiting if oldest is None else min(oldest, waiting)
                when = entry.next_attempt_at or entry.created_at
                if when <= now:
                    due.append((when, obj.key))
        self.pending_count = pending
        self.oldest_pending_at = oldest
        return [key for _, key in sorted(due)]

    def _file(self, key: str, entry: OutboxEntry) -> str | None:
        """
        Move a settled entry to ``settled/``, out of the scan; its new key.

        A copy first, then the removal: a crash in between leaves the entry
        in both places, and the next scan files it again. ``None`` when that
        failed (the store away): it is left to the next scan.
        """
        try:
            target = settled_key(entry.run_id, entry.webhook_id)
            if key != target:
                self.storage.put(target, _entry_bytes(entry))
                self.storage.delete(key)
        except CursorError:
            return None
        return target

    def attempt(self, key: str, notifier: Notifier, *, on_event: EventSink) -> OutboxEntry | None:
        """
        Try to deliver the entry at *key* once, if it is due and nobody else is.

        Returns:
            The entry as it now is; ``None`` when it was not due, already
            settled, or claimed by someone else.

        Raises:
            StorageError: the store could not be reached.
        """
        found = self.read(key)
        if found is None:
            return None
        entry, etag = found
        now = self.clock()
        if entry.state != "pending" or (entry.next_attempt_at or now) > now:
            return None
        started = entry.resent_at or entry.created_at
        if (now - started).total_seconds() > self.policy.max_age_seconds:
            expired = attrs.evolve(entry, state="expired")
            if self._write(key, expired, etag) is not None:
                on_event("notification.expired", _event(expired))
                self._file(key, expired)
                return expired
            return None
        attempts = entry.attempts + 1
        wait = dt.timedelta(seconds=self.policy.backoff(attempts))
        claimed = attrs.evolve(entry, attempts=attempts, next_attempt_at=now + wait)
        claimed_etag = self._write(key, claimed, etag)
        if claimed_etag is None:
            return None
        result = self._send(claimed, notifier, on_event)
        if self._write(key, result, claimed_etag) is not None and result.state != "pending":
            self._file(key, result)
        return result

    def _send(self, entry: OutboxEntry, notifier: Notifier, on_event: EventSink) -> OutboxEntry:
        try:
            receipt = notifier.send(entry.notification())
        except NotificationRejected as exc:
            rejected = attrs.evolve(entry, state="rejected", status_code=exc.status_code)
            on_event("notification.rejected", _event(rejected))
            return rejected
        except CursorError as exc:
            failed = attrs.evolve(entry, last_error=error_text(str(exc)))
            on_event("notification.retry_scheduled", _event(failed))
            return failed
        except Exception as exc:  # a broken notifier must not stop the outbox
            failed = attrs.evolve(entry, last_error=error_text(f"{type(exc).__name__}: {exc}"))
            on_event("notification.retry_scheduled", _event(failed))
            return failed
        delivered = attrs.evolve(
            entry,
            state="delivered",
            status_code=receipt.status_code,
            delivered_at=self.clock(),
            last_error=None,
        )
        on_event("notification.delivered", _event(delivered))
        return delivered

    def resend(self, key: str) -> tuple[str, OutboxEntry] | None:
        """
        Make an entry pending and due now, whatever its state (``hooks resend``).

        A settled entry goes back to ``pending/`` (written there, then removed
        from ``settled/``).

        Returns:
            The entry's key now and the entry, ``None`` if there is none.

        Raises:
            StorageError: the store could not be reached.
        """
        for _ in range(5):
            found = self.read(key)
            if found is None:
                return None
            entry, etag = found
            now = self.clock()
            again = attrs.evolve(entry, state="pending", next_attempt_at=now, resent_at=now)
            if not key.startswith(SETTLED_PREFIX):
                if self._write(key, again, etag) is not None:
                    return key, again
                continue
            pending = outbox_key(entry.run_id, entry.webhook_id)
            current = self.storage.head(pending)  # left there by a crash while it was filed
            try:
                self.storage.put(
                    pending,
                    _entry_bytes(again),
                    if_none_match=current is None,
                    if_match=None if current is None else current.etag,
                )
            except PreconditionFailed:
                continue
            self.storage.delete(key)
            return pending, again
        return None

    def _write(self, key: str, entry: OutboxEntry, etag: str) -> str | None:
        """Replace the entry if it is still *etag*; its new etag, or ``None``."""
        try:
            stored = self.storage.put(key, _entry_bytes(entry), if_match=etag)
        except PreconditionFailed:
            return None
        return stored.etag


def deliver(
    outbox: Outbox,
    journals: JournalStore,
    key: str,
    notifier: Notifier,
    *,
    on_event: EventSink,
) -> OutboxEntry | None:
    """
    Attempt the entry at *key*; once it is settled, mirror that into the run's journal.

    Returns:
        The entry as it now is, ``None`` when there was nothing to attempt.

    Raises:
        StorageError: the store could not be reached.
    """
    entry = outbox.attempt(key, notifier, on_event=on_event)
    if entry is not None and entry.state != "pending":
        mirror(journals, entry)
    return entry


def deliver_due(
    outbox: Outbox, journals: JournalStore, notifier: Notifier, *, on_event: EventSink
) -> list[OutboxEntry]:
    """
    Attempt every due entry once, one after the other (the foreground commands).

    Raises:
        StorageError: the store could not be reached.
    """
    attempted = []
    for key in outbox.due():
        entry = deliver(outbox, journals, key, notifier, on_event=on_event)
        if entry is not None:
            attempted.append(entry)
    return attempted


def mirror(journals: JournalStore, entry: OutboxEntry) -> bool:
    """
    Record a settled entry's outcome on the journal's notification record.

    Returns:
        Whether the journal was updated.

    Raises:
        StorageError: the store could not be reached.
    """

    def change(journal: RunJournal) -> dict[str, NotificationRecord] | None:
        for name in ("notification", "failure"):
            record: NotificationRecord | None = getattr(journal, name)
            if record is not None and record.webhook_id == entry.webhook_id:
                updated = attrs.evolve(
                    record,
                    delivered=entry.state == "delivered",
                    rejected=entry.state == "rejected",
                    status_code=entry.status_code,
                    attempts=entry.attempts,
                )
                return None if updated == record else {name: updated}
        return None

    try:
        return journals.update_complete(entry.run_id, change)
    except UnreadableJournal:
        return False


def _entry_bytes(entry: OutboxEntry) -> bytes:
    return canonical_bytes(converter.unstructure(entry))


def _event(entry: OutboxEntry) -> dict[str, object]:
    return {
        "run_id": entry.run_id,
        "event_type": entry.event_type,
        "webhook_id": entry.webhook_id,
        "attempts": entry.attempts,
        "state": entry.state,
        "status_code": entry.status_code,
        "error": entry.last_error,
        "next_attempt_at": entry.next_attempt_at.isoformat() if entry.next_attempt_at else None,
    }
