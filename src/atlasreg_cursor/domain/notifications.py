"""Webhook notifications (architecture §8): what is sent, built once as bytes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from .gold import isoformat_z
from .hashing import canonical_bytes
from .runs import NotificationRecord, RunStatus

INGEST_COMPLETE = "ingest_complete"
PROCESSING_ERROR = "processing_error"
PATHS = {
    INGEST_COMPLETE: "/api/v1/hooks/ingest-complete",
    PROCESSING_ERROR: "/api/v1/hooks/processing-error",
}


@attrs.frozen(kw_only=True)
class Notification:
    """A webhook to send: path under ``HOOK_ENDPOINT``, body bytes, stable id."""

    event_type: str
    run_id: str
    webhook_id: str
    path: str
    body: bytes

    def to_record(self) -> NotificationRecord:
        """The journal's view of this notification (not yet delivered)."""
        return NotificationRecord(
            event_type=self.event_type,
            webhook_id=self.webhook_id,
            path=self.path,
            body=self.body.decode("utf-8"),
        )

    @classmethod
    def from_record(cls, run_id: str, record: NotificationRecord) -> Notification:
        """Rebuild the exact notification a journal recorded."""
        return cls(
            event_type=record.event_type,
            run_id=run_id,
            webhook_id=record.webhook_id,
            path=record.path,
            body=record.body.encode("utf-8"),
        )


def webhook_id_for(run_id: str, event_type: str, *, round: int = 1) -> str:
    """
    The stable ``webhook-id`` of a run's notification of one event type.

    A run replayed from the dead letters fails (if it does) in a new round,
    whose ``processing_error`` is a new notification: ``-r<round>`` from the
    second round on.
    """
    base = f"{run_id}-{event_type.replace('_', '-')}"
    return base if round <= 1 else f"{base}-r{round}"


def ingest_complete(
    *,
    run_id: str,
    status: RunStatus,
    completed_at: dt.datetime,
    file_path: str,
    sha256: str,
    documents_count: int,
    errors_count: int,
    metadata: Mapping[str, Any] | None = None,
) -> Notification:
    """Build the ``ingest_complete`` notification."""
    body = {
        "event_type": INGEST_COMPLETE,
        "run_id": run_id,
        "status": status.value,
        "completed_at": isoformat_z(completed_at),
        "result": {
            "file_path": file_path,
            "sha256": sha256,
            "documents_count": documents_count,
            "errors_count": errors_count,
        },
        "metadata": dict(metadata or {}),
    }
    return _notification(INGEST_COMPLETE, run_id, body)


def processing_error(
    *,
    run_id: str,
    error_type: str,
    error_message: str,
    occurred_at: dt.datetime,
    context: Mapping[str, Any],
    round: int = 1,
) -> Notification:
    """Build the ``processing_error`` notification (of the run's *round*)."""
    body = {
        "event_type": PROCESSING_ERROR,
        "run_id": run_id,
        "error_type": error_type,
        "error_message": error_message,
        "occurred_at": isoformat_z(occurred_at),
        "context": dict(context),
    }
    return _notification(PROCESSING_ERROR, run_id, body, round=round)


def _notification(
    event_type: str, run_id: str, body: Mapping[str, Any], *, round: int = 1
) -> Notification:
    return Notification(
        event_type=event_type,
        run_id=run_id,
        webhook_id=webhook_id_for(run_id, event_type, round=round),
        path=PATHS[event_type],
        body=canonical_bytes(body),
    )
