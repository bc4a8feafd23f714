"""The service's progress events → Prometheus metrics, in one place.

The daemon's event handler calls :func:`record_event` for every event of the
ingest service and :func:`record_handled` once per delivery;
:func:`start_metrics` runs once at start. Nothing else sets these metrics,
so the mapping moves with these three calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from atlasreg_cursor.adapters import metrics

if TYPE_CHECKING:
    from atlasreg_cursor.domain.ingest import HandleResult
    from atlasreg_cursor.domain.runs import RunJournal
    from atlasreg_cursor.ports.storage import ObjectStore

log = structlog.get_logger()

_PUBLISHED = {"success", "partial"}
_MAX_STREAK = 1000
_MAX_TRACKED_RUNS = 500
#: Journals read by a seed; the first one reads up to SEED_FURTHER while none shows a success.
SEED_JOURNALS, SEED_FURTHER = 20, 200
_OUTCOMES = ("acked", "duplicate", "deferred", "retried", "dead_lettered")
_STATUSES = ("success", "partial", "failed")


class _RunBook:
    """Per-process bookkeeping the metrics need across events (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.documents: dict[str, int] = {}
        self.started: dict[str, float] = {}  # run id → monotonic start of its attempt
        self.last_success: dict[str | None, float] = {}  # None: the run gauge
        self.failed_runs: dict[str, tuple[str, ...]] = {}  # source → runs failed in a row
        self.looked_further = False

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

    def source_outcome(self, source_id: str, run_id: str, ok: bool) -> None:
        """A source finished in *run_id*: a failure counts once per run, a success resets."""
        with self.lock:
            runs = self.failed_runs.get(source_id, ())
            if ok:
                runs = ()
            elif run_id not in runs:
                runs = (*runs, run_id)[-_MAX_STREAK:]
            self.failed_runs[source_id] = runs
            metrics.SOURCE_CONSECUTIVE_FAILURES.labels(source_id=source_id).set(len(runs))

    def restore_streaks(self, streaks: Mapping[str, tuple[str, ...]]) -> None:
        """
        Replace every failure streak with *streaks* (what the journals show).

        A source they no longer show (removed, disabled, out of the recent
        journals) loses its series, so its alert ends without a restart.
        """
        with self.lock:
            for gone in set(self.failed_runs) - set(streaks):
                metrics.SOURCE_CONSECUTIVE_FAILURES.remove(gone)
            self.failed_runs = dict(streaks)
            for source_id, runs in streaks.items():
                metrics.SOURCE_CONSECUTIVE_FAILURES.labels(source_id=source_id).set(len(runs))

    def attempt_started(self, run_id: str) -> None:
        """Note when the attempt in hand of *run_id* started (the last few hundred runs)."""
        with self.lock:
            self.started.pop(run_id, None)
            self.started[run_id] = time.monotonic()
            while len(self.started) > _MAX_TRACKED_RUNS:
                del self.started[next(iter(self.started))]

    def attempt_seconds(self, run_id: str) -> float | None:
        """Seconds since the attempt of *run_id* started here; ``None`` if it did not."""
        with self.lock:
            started = self.started.pop(run_id, None)
        return None if started is None else time.monotonic() - started


_book = _RunBook()


def start_metrics(version: str) -> None:
    """Export build info and create the labelled series alerts rely on (at 0)."""
    metrics.BUILD_INFO.labels(version=version).set(1)
    for outcome in _OUTCOMES:
        metrics.MESSAGES_PROCESSED.labels(outcome=outcome)
    for status in _STATUSES:
        metrics.RUNS.labels(status=status)
        metrics.RUN_DURATION.labels(status=status)
    for result in ("delivered", "rejected", "failed"):
        metrics.NOTIFICATIONS.labels(event_type="ingest_complete", result=result)


def record_event(name: str, data: Mapping[str, Any]) -> None:
    """Update the metrics for one progress event of the ingest service."""
    run_id = str(data.get("run_id") or "")
    if name == "source.finished":
        _source_finished(run_id, data)
    elif name == "run.started":
        _book.attempt_started(run_id)
    elif name == "run.finished":
        status = str(data.get("status"))
        metrics.RUNS.labels(status=status).inc()
        _observe_run(run_id, status)
        if status in _PUBLISHED:
            _book.succeeded(None, time.time())
        with _book.lock:
            documents = _book.documents.pop(run_id, None)
        if documents is not None:
            metrics.RUN_DOCUMENTS.observe(documents)
    elif name == "run.failed":
        metrics.RUNS.labels(status="failed").inc()
        _observe_run(run_id, "failed")
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


def _observe_run(run_id: str, status: str) -> None:
    seconds = _book.attempt_seconds(run_id)
    if seconds is not None:  # not when a run is given up without being started here
        metrics.RUN_DURATION.labels(status=status).observe(seconds)


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
    _book.source_outcome(source_id, run_id, ok)
    if ok:
        _book.succeeded(source_id, time.time())
        if documents == 0:
            metrics.SOURCE_ZERO_RESULTS.labels(source_id=source_id).inc()
        with _book.lock:
            _book.documents[run_id] = _book.documents.get(run_id, 0) + documents


def record_handled(result: HandleResult, duration_seconds: float) -> None:
    """Update the metrics for one handled delivery."""
    metrics.MESSAGES_PROCESSED.labels(outcome=result.outcome.value).inc()
    metrics.PROCESSING_DURATION.observe(duration_seconds)
    if result.outcome.value == "dead_lettered":
        metrics.DEAD_LETTERS.inc()


def _published(journal: RunJournal) -> bool:
    gold = journal.gold
    return gold is not None and journal.finished_at is not None and gold.status.value in _PUBLISHED


def seed_from_store(
    storage: ObjectStore,
    *,
    sources: Collection[str] | None = None,
    journals: int = SEED_JOURNALS,
    further: int = SEED_FURTHER,
) -> None:
    """
    Restore the "last success" gauges and the failure streaks from recent journals.

    Run at start (so a restarted daemon does not report "never succeeded"
    or "no failure yet" until its next run) and every few minutes (another
    daemon's runs count too). Reads the *journals* most recent journals; the
    first seed of the process reads on, up to *further*, while none of them
    published a Gold. A source's streak is the runs, newest first by
    creation, in which it failed since it last succeeded (one per run,
    however many attempts). The streaks replace the ones this process
    holds: a source not among *sources* (the watchlist's enabled ones, when
    known) or absent from the journals read loses its series. The pending
    notifications are counted by the outbox's own scan.
    """
    from .journals import recent_journals

    read: list[RunJournal] = []
    published = False
    limit = journals if _book.looked_further else max(journals, further)
    for journal in recent_journals(storage, limit):
        read.append(journal)
        published = published or _published(journal)
        if len(read) >= journals and published:
            break
    _book.looked_further = True
    streaks: dict[str, list[str]] = {}
    ended: set[str] = set()
    for journal in sorted(read, key=lambda j: j.created_at, reverse=True):
        finished = journal.finished_at.timestamp() if journal.finished_at else None
        if finished and _published(journal):
            _book.succeeded(None, finished)
        for outcome in journal.sources:
            if outcome.ok and finished:
                _book.succeeded(outcome.source_id, finished)
            streak = streaks.setdefault(outcome.source_id, [])
            if outcome.source_id in ended:
                continue
            if outcome.ok:
                ended.add(outcome.source_id)
            else:
                streak.append(journal.run_id)
    _book.restore_streaks(
        {
            sid: tuple(reversed(runs))
            for sid, runs in streaks.items()
            if sources is None or sid in sources
        }
    )
    log.debug("metrics.seeded", journals=len(read))
