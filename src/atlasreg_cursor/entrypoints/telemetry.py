"""The service's progress events → Prometheus metrics, in one place.

The daemon's event handler calls :func:`record_event` for every event of the
ingest service and :func:`record_handled` once per delivery;
:func:`start_metrics` runs once at start. Nothing else sets these metrics,
so the mapping moves with these three calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from atlasreg_cursor.adapters import metrics

if TYPE_CHECKING:
    from atlasreg_cursor.domain.ingest import HandleResult
    from atlasreg_cursor.ports.storage import ObjectStore

log = structlog.get_logger()

_PUBLISHED = {"success", "partial"}
_OUTCOMES = ("acked", "duplicate", "deferred", "retried", "dead_lettered")
_STATUSES = ("success", "partial", "failed")


class _RunBook:
    """Per-process bookkeeping the metrics need across events (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.documents: dict[str, int] = {}
        self.last_success: dict[str | None, float] = {}  # None: the run gauge

    def succeeded(self, source_id: str | None, at: float) -> None:
        """Move a last-success gauge forward to *at* (never back)."""
        with self.lock:
            if at <= self.last_success.get(source_id, 0.0):
                return
            self.last_success[source_id] = at
        if source_id is None:
            metrics.RUN_LAST_SUCCESS.set(at)
        else:
            metrics.SOURCE_LAST_SUCCESS.labels(source_id=source_id).set(at)


_book = _RunBook()


def start_metrics(version: str) -> None:
    """Export build info and create the labelled series alerts rely on (at 0)."""
    metrics.BUILD_INFO.labels(version=version).set(1)
    for outcome in _OUTCOMES:
        metrics.MESSAGES_PROCESSED.labels(outcome=outcome)
    for status in _STATUSES:
        metrics.RUNS.labels(status=status)
    for result in ("delivered", "rejected", "failed"):
        metrics.NOTIFICATIONS.labels(event_type="ingest_complete", result=result)


def record_event(name: str, data: Mapping[str, Any]) -> None:
    """Update the metrics for one progress event of the ingest service."""
    run_id = str(data.get("run_id") or "")
    if name == "source.finished":
        _source_finished(run_id, data)
    elif name == "run.finished":
        status = str(data.get("status"))
        metrics.RUNS.labels(status=status).inc()
        if status in _PUBLISHED:
            _book.succeeded(None, time.time())
        with _book.lock:
            documents = _book.documents.pop(run_id, None)
        if documents is not None:
            metrics.RUN_DOCUMENTS.observe(documents)
    elif name == "run.failed":
        metrics.RUNS.labels(status="failed").inc()
        metrics.ERRORS.labels(error_type=str(data.get("error_type", name))).inc()
        with _book.lock:
            _book.documents.pop(run_id, None)
    elif name in {"notification.delivered", "notification.rejected"}:
        result = "delivered" if name == "notification.delivered" else "rejected"
        event_type = str(data.get("event_type"))
        metrics.NOTIFICATIONS.labels(event_type=event_type, result=result).inc()
        if result == "rejected":
            metrics.ERRORS.labels(error_type=name).inc()
    elif name in {"notification.retry_scheduled", "notification.expired"}:
        metrics.NOTIFICATIONS.labels(event_type=str(data.get("event_type")), result="failed").inc()
        metrics.ERRORS.labels(error_type=name).inc()
    elif name in {"message.poison", "executor.close_failed"}:
        metrics.ERRORS.labels(error_type=str(data.get("error_type", name))).inc()
    elif name == "run.crashed":
        metrics.UNEXPECTED_ERRORS.labels(where="run").inc()
        metrics.ERRORS.labels(error_type=name).inc()
    elif name == "run.swept":
        metrics.RUNS_SWEPT.inc()


def _source_finished(run_id: str, data: Mapping[str, Any]) -> None:
    source_id = str(data.get("source_id"))
    ok = bool(data.get("ok"))
    documents = int(data.get("documents") or 0)
    metrics.SOURCES_EXECUTED.labels(
        handler_id=str(data.get("handler_id")), result="ok" if ok else "error"
    ).inc()
    metrics.SOURCE_RESULTS.labels(source_id=source_id, result="ok" if ok else "error").inc()
    metrics.DOCUMENTS_PROCESSED.inc(documents)
    metrics.SOURCE_DOCUMENTS.labels(source_id=source_id).inc(documents)
    metrics.SOURCE_DURATION.labels(source_id=source_id).observe(
        float(data.get("duration_seconds") or 0.0)
    )
    if ok:
        _book.succeeded(source_id, time.time())
        metrics.SOURCE_CONSECUTIVE_FAILURES.labels(source_id=source_id).set(0)
        if documents == 0:
            metrics.SOURCE_ZERO_RESULTS.labels(source_id=source_id).inc()
        with _book.lock:
            _book.documents[run_id] = _book.documents.get(run_id, 0) + documents
    else:
        metrics.SOURCE_CONSECUTIVE_FAILURES.labels(source_id=source_id).inc()


def record_handled(result: HandleResult, duration_seconds: float) -> None:
    """Update the metrics for one handled delivery."""
    metrics.MESSAGES_PROCESSED.labels(outcome=result.outcome.value).inc()
    metrics.PROCESSING_DURATION.observe(duration_seconds)
    if result.outcome.value == "dead_lettered":
        metrics.DEAD_LETTERS.inc()


def seed_from_store(storage: ObjectStore, *, journals: int = 20) -> None:
    """
    Set the "last success" gauges from recent journals.

    Run at start (so a restarted daemon does not report "never succeeded"
    until its next run) and every few minutes (another daemon's runs count
    too). Reads at most *journals* journals. The pending notifications are
    counted by the outbox's own scan.
    """
    from .journals import recent_journals

    for journal in recent_journals(storage, journals):
        finished = journal.finished_at.timestamp() if journal.finished_at else None
        if journal.gold is not None and finished and journal.gold.status.value in _PUBLISHED:
            _book.succeeded(None, finished)
        for outcome in journal.sources:
            if outcome.ok and finished:
                _book.succeeded(outcome.source_id, finished)
    log.debug("metrics.seeded")
