"""Runs: ids, keys, statuses and the journal a run resumes from (architecture §4)."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .documents import Document, ProcessingResult
from .errors import InvalidRunId
from .hashing import sha256_hex
from .messages import MessageType

_RUN_ID_RE = re.compile(r"^(run|reprocess)_[0-9a-f]{12}$")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_PREFIX = {MessageType.START_DAILY_INGEST: "run", MessageType.REPROCESS: "reprocess"}


class RunStatus(enum.Enum):
    """How a run ended (architecture §4)."""

    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


def derive_run_id(message_type: MessageType, identity: str) -> str:
    """Return ``run_<12 hex>`` or ``reprocess_<12 hex>``, stable per identity."""
    return f"{_PREFIX[message_type]}_{sha256_hex(identity.encode('utf-8'))[:12]}"


def validate_run_id(run_id: object) -> str:
    """
    Return *run_id* when it has the seed's shape.

    Raises:
        InvalidRunId: for anything else (path separators, dots, other shapes).
    """
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidRunId(f"run_id must look like run_<12 hex> or reprocess_<12 hex>: {run_id!r}")
    return run_id


def validate_date(date: object) -> dt.date:
    """
    Return *date* as a :class:`datetime.date`.

    Raises:
        InvalidRunId: if it is not a real ``YYYY-MM-DD`` date.
    """
    if isinstance(date, dt.datetime):
        raise InvalidRunId("date must be a date, not a datetime")
    if isinstance(date, dt.date):
        return date
    if not isinstance(date, str) or not _DATE_RE.fullmatch(date):
        raise InvalidRunId(f"date must be YYYY-MM-DD: {date!r}")
    try:
        return dt.date.fromisoformat(date)
    except ValueError:
        raise InvalidRunId(f"date is not a calendar date: {date!r}") from None


def gold_key(run_id: str, date: dt.date | str, *, reprocessed: bool = False) -> str:
    """Return ``gold/<date>/<run_id>.json`` (``_reprocessed`` for reprocess)."""
    rid = validate_run_id(run_id)
    day = validate_date(date).isoformat()
    suffix = "_reprocessed" if reprocessed else ""
    return f"gold/{day}/{rid}{suffix}.json"


def journal_key(run_id: str) -> str:
    """Return ``runs/<run_id>.json``."""
    return f"runs/{validate_run_id(run_id)}.json"


@attrs.frozen(kw_only=True)
class RunContext:
    """
    What an executor needs to know of the run it works for.

    ``identity`` is the run identity ``run_id`` is derived from (architecture §3).
    """

    run_id: str
    date: dt.date
    message_type: MessageType
    identity: str
    attempts: int = 1


@attrs.frozen(kw_only=True)
class Lease:
    """Who works a run, until when (UTC)."""

    owner: str
    expires_at: dt.datetime

    def held_by_other(self, owner: str, now: dt.datetime) -> bool:
        """Tell whether someone else holds this lease at *now*."""
        return self.owner != owner and self.expires_at > now

    def remaining(self, now: dt.datetime) -> float:
        """Seconds left on the lease at *now* (never negative)."""
        return max(0.0, (self.expires_at - now).total_seconds())


@attrs.frozen(kw_only=True)
class SourceOutcome:
    """A source's result as kept in the journal."""

    source_id: str
    ok: bool
    documents_count: int = 0
    error_type: str | None = None
    error_message: str | None = None
    duration_seconds: float = 0.0


@attrs.frozen(kw_only=True)
class GoldRecord:
    """The published Gold object."""

    key: str
    sha256: str
    size: int
    status: RunStatus
    documents_count: int
    events_count: int
    errors_count: int


@attrs.frozen(kw_only=True)
class NotificationRecord:
    """
    A notification as built (body kept, so a resend is byte-identical).

    The outbox entry at ``outbox_key`` is what gets delivered; ``delivered``,
    ``rejected``, ``status_code`` and ``attempts`` mirror its final state.
    """

    event_type: str
    webhook_id: str
    path: str
    body: str
    delivered: bool = False
    rejected: bool = False
    status_code: int | None = None
    attempts: int = 0
    outbox_key: str | None = None


@attrs.frozen(kw_only=True)
class RunJournal:
    """
    Everything a run has done so far; stored at ``runs/<run_id>.json``.

    A new value is made with :func:`attrs.evolve` for every step. ``lease``
    is ``None`` while nobody works the run (released for a retry due at
    ``retry_at``, or finished). ``payload`` is the message's, so a run can
    be resumed from its journal alone. ``attempts`` counts the times work
    on the run started in this ``round``; a dead-lettered run that is
    replayed starts the next round. ``dead_lettered`` tells whether the
    message of a failed run went to the dead letters. ``identity`` is the
    run identity ``run_id`` is derived from (architecture §3): the producer's
    ``message_id``, the queue's durable id or the body's SHA-256.
    """

    run_id: str
    date: dt.date
    message_type: MessageType
    identity: str
    created_at: dt.datetime
    updated_at: dt.datetime
    payload: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    lease: Lease | None = None
    attempts: int = 0
    round: int = 1
    retry_at: dt.datetime | None = None
    last_error: str | None = None
    dead_lettered: bool = False
    sources: tuple[SourceOutcome, ...] = ()
    documents: tuple[Document, ...] = ()
    processing: ProcessingResult | None = None
    gold: GoldRecord | None = None
    notification: NotificationRecord | None = None
    failure: NotificationRecord | None = None
    status: RunStatus | None = None
    error: str | None = None
    finished_at: dt.datetime | None = None

    @property
    def complete(self) -> bool:
        """A run is complete once it has finished (published, or failed)."""
        return self.finished_at is not None

    @property
    def failed(self) -> bool:
        """A run that finished without a Gold."""
        return self.complete and self.gold is None

    def source_outcome(self, source_id: str) -> SourceOutcome | None:
        """Return the recorded outcome for *source_id*, if any."""
        for outcome in self.sources:
            if outcome.source_id == source_id:
                return outcome
        return None
