"""Publishing: the Gold create-only, then the run's notification into the outbox.

Once the Gold is published the run is done for the queue: its
``ingest_complete`` is built once (kept in the journal, so a resumed run
queues the same bytes), put in the outbox, and the run finished. Delivering
it is the outbox's business, never the queue's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from atlasreg_cursor.domain import notifications as notes
from atlasreg_cursor.domain.errors import PreconditionFailed
from atlasreg_cursor.domain.gold import GoldDocument, GoldErrorEntry, isoformat_z, serialize_gold
from atlasreg_cursor.domain.runs import (
    GoldRecord,
    NotificationRecord,
    RunJournal,
    RunStatus,
    gold_key,
)
from atlasreg_cursor.domain.sources import WatchlistConfig

from .journals import ActiveRun, JournalStore
from .model import Clock, EventSink, Job
from .outbox import Outbox

if TYPE_CHECKING:
    from atlasreg_cursor.ports.storage import ObjectStore


def gold_published(job: Job, active: ActiveRun | None, storage: ObjectStore) -> bool:
    """
    Whether the run's Gold is published: its journal says so, or the object is there.

    The store is asked too: a journal may be unreadable, or lag a Gold
    written just before a crash (the next attempt adopts it).

    Raises:
        StorageError: the store could not be reached.
    """
    if active is not None and active.value.gold is not None:
        return True
    return storage.head(job.gold_key) is not None


def publish_gold(
    *,
    storage: ObjectStore,
    journals: JournalStore,
    active: ActiveRun,
    gold: GoldDocument,
    status: RunStatus,
    reprocessed: bool,
    clock: Clock,
    on_event: EventSink,
) -> None:
    """
    Publish the Gold create-only (``If-None-Match``); adopt an object already there.

    Raises:
        StorageError: the store refused or could not be reached.
        LeaseLost: the journal changed under us.
    """
    value = active.value
    key = gold_key(value.run_id, value.date, reprocessed=reprocessed)
    serialized = serialize_gold(gold)
    metadata = {
        "sha256": serialized.sha256,
        "run_id": value.run_id,
        "date": value.date.isoformat(),
        "published_at": isoformat_z(clock()),
        "schema_version": gold.metadata.version,
        "status": status.value,
    }
    try:
        stored = storage.put(
            key,
            serialized.body,
            content_type="application/json",
            metadata=metadata,
            if_none_match=True,
            sha256=serialized.sha256,
        )
        sha, size, adopted = serialized.sha256, serialized.size, False
    except PreconditionFailed:
        existing = storage.head(key)
        if existing is None:
            raise
        stored = existing
        sha = existing.sha256 or existing.metadata.get("sha256") or serialized.sha256
        size, adopted = existing.size, True
        status = RunStatus(existing.metadata.get("status", status.value))
    record = GoldRecord(
        key=stored.key,
        sha256=sha,
        size=size,
        status=status,
        documents_count=gold.metadata.documents_count,
        events_count=gold.metadata.events_count,
        errors_count=len(gold.errors),
    )
    journals.save(active, gold=record, status=status)
    on_event(
        "gold.published",
        {"run_id": value.run_id, "key": key, "sha256": sha, "size": size, "adopted": adopted},
    )


def complete_published(
    *,
    journals: JournalStore,
    active: ActiveRun,
    outbox: Outbox,
    clock: Clock,
    on_event: EventSink,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """
    Queue the published run's ``ingest_complete`` in the outbox and finish the run.

    Args:
        metadata: added to the notification's ``metadata`` when it is built
            (the watchlist's alerts and their recipients).

    Raises:
        StorageError: the store refused or could not be reached.
        LeaseLost: the journal changed under us.
    """
    value = active.value
    assert value.gold is not None
    record = value.notification
    if record is None:
        record = _ingest_complete(value, clock, metadata or {})
        journals.save(active, notification=record)
    key = outbox.add(value.run_id, record)
    if record.outbox_key != key:
        record = _with_key(record, key)
    journals.finish(active, notification=record, status=value.gold.status, retry_at=None)
    on_event(
        "run.finished",
        {
            "run_id": value.run_id,
            "status": value.gold.status.value,
            "key": value.gold.key,
            "sha256": value.gold.sha256,
            "webhook_id": record.webhook_id,
        },
    )


def _ingest_complete(
    journal: RunJournal, clock: Clock, extra: Mapping[str, Any]
) -> NotificationRecord:
    assert journal.gold is not None
    note = notes.ingest_complete(
        run_id=journal.run_id,
        status=journal.gold.status,
        completed_at=clock(),
        file_path=journal.gold.key,
        sha256=journal.gold.sha256,
        documents_count=journal.gold.documents_count,
        errors_count=journal.gold.errors_count,
        metadata={
            "date": journal.date.isoformat(),
            "events_count": journal.gold.events_count,
            "size": journal.gold.size,
            **extra,
        },
    )
    return note.to_record()


def _with_key(record: NotificationRecord, key: str) -> NotificationRecord:
    return attrs.evolve(record, outbox_key=key)


def source_errors(journal: RunJournal, clock: Clock) -> list[GoldErrorEntry]:
    """The Gold ``errors`` of the run's failed sources."""
    stamp = isoformat_z(journal.updated_at if journal.updated_at else clock())
    return [
        GoldErrorEntry(
            source_id=o.source_id,
            error_type=o.error_type or "error",
            error_message=o.error_message or "",
            timestamp=stamp,
        )
        for o in journal.sources
        if not o.ok
    ]


def invalid_source_errors(watchlist: WatchlistConfig, clock: Clock) -> list[GoldErrorEntry]:
    """The Gold ``errors`` of the watchlist's invalid sources."""
    stamp = isoformat_z(clock())
    return [
        GoldErrorEntry(
            source_id=bad.source_id or f"sources[{bad.index}]",
            error_type="invalid_config",
            error_message=bad.reason,
            timestamp=stamp,
        )
        for bad in watchlist.invalid
    ]
