"""Reading the most recent run journals without reading all of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from atlasreg_cursor.domain.errors import CursorError
from atlasreg_cursor.domain.ingest import read_journal

if TYPE_CHECKING:
    from atlasreg_cursor.domain.runs import RunJournal
    from atlasreg_cursor.ports.storage import ObjectStore, StoredObject

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _newest_first(obj: StoredObject) -> tuple[dt.datetime, str]:
    modified = obj.last_modified or _EPOCH
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=dt.UTC)
    return modified, obj.key


def recent_journals(
    storage: ObjectStore,
    limit: int,
    *,
    on_unreadable: Callable[[str, CursorError, StoredObject], None] | None = None,
) -> Iterator[RunJournal]:
    """
    Yield up to *limit* journals, most recently written first.

    Only the keys under ``runs/`` are listed (one listing, no bodies); then
    the *limit* newest are read, one ``get`` each. A journal that cannot be
    read is skipped, after ``on_unreadable(run_id, error, listed)`` is told.
    """
    if limit <= 0:
        return
    listed = [o for o in storage.list("runs/") if o.key.endswith(".json")]
    listed.sort(key=_newest_first, reverse=True)
    for obj in listed[:limit]:
        run_id = obj.key.removeprefix("runs/").removesuffix(".json")
        try:
            journal = read_journal(storage, run_id)
        except CursorError as exc:  # corrupted, another version's, or not ours
            if on_unreadable is not None:
                on_unreadable(run_id, exc, obj)
            continue
        if journal is not None:
            yield journal
