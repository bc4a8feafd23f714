"""The ingest service: both flows of DESIGN §5, driven only through ports.

Functions take their ports as keyword arguments. Nothing here logs: progress
goes to an optional ``on_event(name, data)`` callback the entry points turn
into log lines and metrics.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import enum
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from . import notifications as notes
from .alerts import alert_metadata
from .codec import converter
from .documents import Document, SourceResult
from .errors import (
    ConfigError,
    CursorError,
    InvalidMessage,
    NotificationRejected,
    PreconditionFailed,
    QueueError,
    SourceFailed,
)
from .gold import GoldError, isoformat_z, merge_errors, serialize_gold
from .hashing import canonical_bytes
from .messages import MessageType, QueueMessage, message_identity, parse_message
from .runs import (
    GoldRecord,
    Lease,
    NotificationRecord,
    RunContext,
    RunJournal,
    RunStatus,
    SourceOutcome,
    derive_run_id,
    gold_key,
    journal_key,
)
from .sources import SourceConfig, WatchlistConfig

if TYPE_CHECKING:
    from atlasreg_cursor.ports.config import ConfigSource
    from atlasreg_cursor.ports.executor import Executor
    from atlasreg_cursor.ports.notifier import Notifier
    from atlasreg_cursor.ports.queue import Delivery, MessageQueue
    from atlasreg_cursor.ports.storage import ObjectStore

EventSink = Callable[[str, Mapping[str, Any]], None]
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The default clock: aware UTC now."""
    return dt.datetime.now(dt.UTC)


def _no_events(name: str, data: Mapping[str, Any]) -> None:
    return None


class Outcome(enum.Enum):
    """What happened to a delivery."""

    ACKED = "acked"
    DUPLICATE = "duplicate"
    DEFERRED = "deferred"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"


@attrs.frozen(kw_only=True)
class IngestPolicy:
    """
    Knobs of the service.

    Args:
        consumer_id: who this process is, for journal leases.
        max_attempts: deliveries before a transient failure is dead-lettered.
        retry_base_seconds: first retry delay; doubles per attempt.
        retry_max_seconds: retry delay cap (≤ 12 h, Cloudflare's limit).
        lease_seconds: how long a journal lease lasts; renewed while working.
        source_grace_seconds: wait past a source's timeout before giving up on it.
    """

    consumer_id: str
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    lease_seconds: float = 300.0
    source_grace_seconds: float = 30.0

    def retry_delay(self, attempts: int) -> float:
        """Exponential backoff for the *attempts*-th delivery."""
        delay = self.retry_base_seconds * (2 ** max(0, attempts - 1))
        return float(min(self.retry_max_seconds, 43200.0, delay))


@attrs.frozen(kw_only=True)
class RunSummary:
    """The result of a run: the JSON line of DESIGN §10."""

    run_id: str
    status: RunStatus
    gold_key: str | None
    sha256: str | None
    size: int | None
    documents_count: int
    events_count: int
    errors_count: int
    notified: bool
    duplicate: bool = False

    def to_json_line(self) -> str:
        """The one JSON line scripts read."""
        data = {
            "run_id": self.run_id,
            "status": self.status.value,
            "gold_key": self.gold_key,
            "sha256": self.sha256,
            "size": self.size,
            "documents_count": self.documents_count,
            "events_count": self.events_count,
            "errors_count": self.errors_count,
            "notified": self.notified,
        }
        return json.dumps(data, sort_keys=False, separators=(", ", ": "))


@attrs.frozen(kw_only=True)
class HandleResult:
    """What :func:`handle_delivery` did with one delivery."""

    outcome: Outcome
    run_id: str | None = None
    summary: RunSummary | None = None
    reason: str | None = None
    delay_seconds: float | None = None


class LeaseHeld(CursorError):
    """Raised when another live consumer works the run."""

    def __init__(self, run_id: str, remaining: float) -> None:
        super().__init__(f"run {run_id} is leased by another consumer for {remaining:.0f}s")
        self.remaining = remaining


class LeaseLost(CursorError):
    """Raised when the journal changed under us (our lease expired and was taken)."""

    transient = True


class AllSourcesFailed(CursorError):
    """Raised when every source of a run failed: nothing usable to publish."""

    transient = True


class RunFailed(CursorError):
    """Raised by :func:`run_message` when a run ends ``failed``."""

    def __init__(self, message: str, *, summary: RunSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


@attrs.define
class _Ports:
    config: ConfigSource
    executor: Executor
    store: ObjectStore
    notifier: Notifier
    policy: IngestPolicy
    clock: Clock
    on_event: EventSink
    queue: MessageQueue | None = None
    delivery: Delivery | None = None


# --- entry points of the service ----------------------------------------------


def handle_delivery(
    delivery: Delivery,
    *,
    queue: MessageQueue,
    config: ConfigSource,
    executor: Executor,
    store: ObjectStore,
    notifier: Notifier,
    policy: IngestPolicy,
    clock: Clock = utc_now,
    on_event: EventSink = _no_events,
) -> HandleResult:
    """
    Handle one delivery end to end and settle it on the queue.

    Poison messages are dead-lettered at once; transient failures are retried
    with backoff until ``max_attempts``, then dead-lettered with a
    ``processing_error`` notification. Returns what was done.

    Raises:
        QueueError: only when settling the delivery on the queue fails.
    """
    try:
        message = parse_message(delivery.body)
    except InvalidMessage as exc:
        reason = f"invalid message: {exc.reason}"
        queue.dead_letter(delivery, reason)
        on_event("message.poison", {"message_id": delivery.message_id, "reason": reason})
        return HandleResult(outcome=Outcome.DEAD_LETTERED, reason=reason)

    identity = message_identity(
        message, delivery.body, delivery.message_id if delivery.identity_from_queue else None
    )
    run_id = derive_run_id(message.type, identity)
    ports = _Ports(
        config=config,
        executor=executor,
        store=store,
        notifier=notifier,
        policy=policy,
        clock=clock,
        on_event=on_event,
        queue=queue,
        delivery=delivery,
    )
    if delivery.attempts > policy.max_attempts:
        reason = (
            f"gave up after {delivery.attempts - 1} attempts (MAX_ATTEMPTS={policy.max_attempts})"
        )
        _fail_run(ports, message, run_id, identity, "max_attempts_exceeded", reason)
        queue.dead_letter(delivery, reason)
        return HandleResult(outcome=Outcome.DEAD_LETTERED, run_id=run_id, reason=reason)

    try:
        summary = _execute(ports, message, run_id, identity)
    except LeaseHeld as exc:
        delay = max(1.0, exc.remaining + 1.0)
        queue.retry(delivery, delay)
        on_event("run.deferred", {"run_id": run_id, "delay_seconds": delay})
        return HandleResult(
            outcome=Outcome.DEFERRED, run_id=run_id, reason=str(exc), delay_seconds=delay
        )
    except CursorError as exc:
        return _settle_failure(ports, message, run_id, identity, exc)

    _settle_ack(queue, delivery, run_id, on_event)
    outcome = Outcome.DUPLICATE if summary.duplicate else Outcome.ACKED
    return HandleResult(outcome=outcome, run_id=run_id, summary=summary)


def run_message(
    message: QueueMessage,
    *,
    identity: str,
    config: ConfigSource,
    executor: Executor,
    store: ObjectStore,
    notifier: Notifier,
    policy: IngestPolicy,
    clock: Clock = utc_now,
    on_event: EventSink = _no_events,
) -> RunSummary:
    """
    Run one message in the foreground, without a queue (``ingest``, ``reprocess``).

    Raises:
        RunFailed: the run failed; a ``processing_error`` notification was sent.
        LeaseHeld: another consumer is working the same run right now.
        CursorError: a transient failure (retry the command).
    """
    run_id = derive_run_id(message.type, identity)
    ports = _Ports(
        config=config,
        executor=executor,
        store=store,
        notifier=notifier,
        policy=policy,
        clock=clock,
        on_event=on_event,
    )
    try:
        return _execute(ports, message, run_id, identity)
    except (LeaseHeld, LeaseLost):
        raise
    except CursorError as exc:
        if _retryable(exc):
            raise
        _fail_run(ports, message, run_id, identity, _error_type(exc), str(exc))
        raise RunFailed(str(exc)) from exc


# --- settling the delivery ------------------------------------------------------


def _retryable(exc: CursorError) -> bool:
    return exc.transient or isinstance(exc, ConfigError)


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, SourceFailed):
        return exc.error_type
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _settle_ack(queue: MessageQueue, delivery: Delivery, run_id: str, on_event: EventSink) -> None:
    from .errors import LeaseExpired

    try:
        queue.ack(delivery)
    except LeaseExpired:
        # The run is complete in its journal; a redelivery is acked as a duplicate.
        on_event("message.ack_late", {"run_id": run_id, "message_id": delivery.message_id})


def _settle_failure(
    ports: _Ports, message: QueueMessage, run_id: str, identity: str, exc: CursorError
) -> HandleResult:
    assert ports.queue is not None
    assert ports.delivery is not None
    delivery = ports.delivery
    error_type = _error_type(exc)
    if _retryable(exc) and delivery.attempts < ports.policy.max_attempts:
        delay = ports.policy.retry_delay(delivery.attempts)
        ports.queue.retry(delivery, delay)
        ports.on_event(
            "run.retry_scheduled",
            {
                "run_id": run_id,
                "error_type": error_type,
                "error": str(exc),
                "attempts": delivery.attempts,
                "delay_seconds": delay,
            },
        )
        return HandleResult(
            outcome=Outcome.RETRIED, run_id=run_id, reason=str(exc), delay_seconds=delay
        )
    reason = f"{error_type}: {exc}"
    if _retryable(exc):
        reason = f"{reason} (after {delivery.attempts} attempts)"
    _fail_run(ports, message, run_id, identity, error_type, str(exc))
    ports.queue.dead_letter(delivery, reason)
    return HandleResult(outcome=Outcome.DEAD_LETTERED, run_id=run_id, reason=reason)


# --- the run ----------------------------------------------------------------------


@attrs.define
class _Journal:
    """The journal being worked on, with the etag of its stored version."""

    value: RunJournal
    etag: str | None
    saved_at: dt.datetime | None = None


def _execute(ports: _Ports, message: QueueMessage, run_id: str, identity: str) -> RunSummary:
    journal = _open_journal(ports, message, run_id, identity)
    if journal.value.complete:
        ports.on_event("run.duplicate", {"run_id": run_id})
        return attrs.evolve(_summary(journal.value), duplicate=True)
    attempts = ports.delivery.attempts if ports.delivery else 1
    run = _run_context(message, run_id, identity, attempts)
    ports.on_event(
        "run.started",
        {"run_id": run_id, "type": message.type.value, "date": message.date.isoformat()},
    )
    if journal.value.gold is None:
        if message.type is MessageType.START_DAILY_INGEST:
            _daily_ingest(ports, journal, message, run)
        else:
            _reprocess(ports, journal, message, run)
    _notify_complete(ports, journal)
    return _summary(journal.value)


def _run_context(message: QueueMessage, run_id: str, identity: str, attempts: int) -> RunContext:
    return RunContext(
        run_id=run_id,
        date=message.date,
        message_type=message.type,
        message_id=identity,
        attempts=attempts,
    )


def _open_journal(ports: _Ports, message: QueueMessage, run_id: str, identity: str) -> _Journal:
    key = journal_key(run_id)
    for _ in range(5):
        now = ports.clock()
        lease = Lease(
            owner=ports.policy.consumer_id,
            expires_at=now + dt.timedelta(seconds=ports.policy.lease_seconds),
        )
        existing = ports.store.head(key)
        if existing is None:
            fresh = RunJournal(
                run_id=run_id,
                date=message.date,
                message_type=message.type,
                message_id=identity,
                created_at=now,
                updated_at=now,
                lease=lease,
                attempts=1,
            )
            try:
                stored = ports.store.put(key, _journal_bytes(fresh), if_none_match=True)
            except PreconditionFailed:
                continue
            _extend_delivery(ports)
            return _Journal(fresh, stored.etag, now)
        body, stored = ports.store.get(key)
        current = converter.structure(json.loads(body), RunJournal)
        if current.complete:
            return _Journal(current, stored.etag)
        if current.lease is not None and current.lease.held_by_other(ports.policy.consumer_id, now):
            raise LeaseHeld(run_id, current.lease.remaining(now))
        taken = attrs.evolve(current, lease=lease, updated_at=now, attempts=current.attempts + 1)
        try:
            stored = ports.store.put(key, _journal_bytes(taken), if_match=stored.etag)
        except PreconditionFailed:
            continue
        ports.on_event("run.resumed", {"run_id": run_id, "attempts": taken.attempts})
        _extend_delivery(ports)
        return _Journal(taken, stored.etag, now)
    raise LeaseLost(f"could not take the lease of run {run_id}: the journal kept changing")


def _journal_bytes(journal: RunJournal) -> bytes:
    return canonical_bytes(converter.unstructure(journal))


def _save(ports: _Ports, journal: _Journal, **changes: Any) -> None:
    """Write a new journal version (renewing the lease) with a conditional put."""
    now = ports.clock()
    lease = Lease(
        owner=ports.policy.consumer_id,
        expires_at=now + dt.timedelta(seconds=ports.policy.lease_seconds),
    )
    updated = attrs.evolve(journal.value, lease=lease, updated_at=now, **changes)
    try:
        stored = ports.store.put(
            journal_key(updated.run_id), _journal_bytes(updated), if_match=journal.etag
        )
    except PreconditionFailed:
        raise LeaseLost(
            f"the journal of run {updated.run_id} was changed by another consumer"
        ) from None
    journal.value, journal.etag, journal.saved_at = updated, stored.etag, now
    _extend_delivery(ports)


def _extend_delivery(ports: _Ports) -> None:
    """Keep the delivery invisible as long as the journal lease (where the queue can).

    Losing the queue lease is not fatal: the journal lease keeps a redelivered
    copy from working the run at the same time, and that copy is acked as a
    duplicate once this run completes.
    """
    if ports.queue is None or ports.delivery is None:
        return
    try:
        ports.queue.extend(ports.delivery, ports.policy.lease_seconds)
    except QueueError as exc:
        ports.on_event(
            "queue.extend_failed",
            {"message_id": ports.delivery.message_id, "error": str(exc)},
        )


@contextlib.contextmanager
def _heartbeat(ports: _Ports, journal: _Journal) -> Iterator[None]:
    """Renew the run's lease (and the delivery's visibility) while a long step runs."""
    stop = threading.Event()
    lost: list[CursorError] = []
    interval = max(1.0, ports.policy.lease_seconds / 3)

    def beat() -> None:
        while not stop.wait(interval):
            try:
                _save(ports, journal)
            except CursorError as exc:
                lost.append(exc)
                return

    thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if lost:
        raise LeaseLost(f"lost the lease of run {journal.value.run_id}: {lost[0]}")


def _daily_ingest(ports: _Ports, journal: _Journal, message: QueueMessage, run: RunContext) -> None:
    watchlist = ports.config.load()
    sources = watchlist.enabled_sources(message.source_filter)
    if journal.value.processing is None:
        _run_sources(ports, journal, sources, run, watchlist)
        ok = [o for o in journal.value.sources if o.ok]
        if sources and not ok:
            failures = "; ".join(
                f"{o.source_id}: {o.error_type}" for o in journal.value.sources if not o.ok
            )
            raise AllSourcesFailed(f"every source failed ({failures})")
        timeout = watchlist.global_settings.processing_timeout_minutes * 60
        with _heartbeat(ports, journal):
            processing = ports.executor.process(
                journal.value.documents, run, timeout_seconds=timeout
            )
        _save(ports, journal, processing=processing)
        ports.on_event(
            "processing.finished",
            {
                "run_id": run.run_id,
                "processed": processing.processed_count,
                "failed": processing.failed_count,
            },
        )
    assert journal.value.processing is not None
    results = _source_results(journal.value)
    with _heartbeat(ports, journal):
        gold = ports.executor.build_gold(run, results, journal.value.processing)
    extra = [
        *_source_errors(journal.value, ports.clock),
        *_invalid_source_errors(watchlist, ports.clock),
    ]
    gold = merge_errors(gold, extra)
    failed = [o for o in journal.value.sources if not o.ok]
    status = RunStatus.PARTIAL if failed or watchlist.invalid else RunStatus.SUCCESS
    _publish(ports, journal, gold, status, reprocessed=False)


def _reprocess(ports: _Ports, journal: _Journal, message: QueueMessage, run: RunContext) -> None:
    watchlist = ports.config.load()
    sources = watchlist.enabled_sources(message.source_filter)
    timeout = watchlist.global_settings.processing_timeout_minutes * 60
    if journal.value.processing is None:
        with _heartbeat(ports, journal):
            processing = ports.executor.reprocess(run, sources, timeout_seconds=timeout)
        _save(ports, journal, processing=processing)
    assert journal.value.processing is not None
    with _heartbeat(ports, journal):
        gold = ports.executor.build_gold(run, (), journal.value.processing)
    status = RunStatus.PARTIAL if gold.errors else RunStatus.SUCCESS
    _publish(ports, journal, gold, status, reprocessed=True)


def _run_sources(
    ports: _Ports,
    journal: _Journal,
    sources: Sequence[SourceConfig],
    run: RunContext,
    watchlist: WatchlistConfig,
) -> None:
    """Run the sources not yet done, in parallel, recording each outcome."""
    pending = [s for s in sources if not _done(journal.value, s.id)]
    if not pending:
        return
    width = max(1, min(watchlist.global_settings.max_concurrent_sources, len(pending)))
    grace = ports.policy.source_grace_seconds
    renew_every = max(1.0, ports.policy.lease_seconds / 3)
    pool = cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="source")
    try:
        started: dict[cf.Future[SourceResult], tuple[SourceConfig, dt.datetime]] = {}
        queue = list(pending)
        running: set[cf.Future[SourceResult]] = set()
        while queue or running:
            while queue and len(running) < width:
                source = queue.pop(0)
                future = pool.submit(_run_one, ports.executor, source, run)
                started[future] = (
                    source,
                    _monotonic_deadline(ports, source.timeout_seconds + grace),
                )
                running.add(future)
            done, _ = cf.wait(
                running, timeout=min(renew_every, 1.0), return_when=cf.FIRST_COMPLETED
            )
            for future in done:
                running.discard(future)
                source, _deadline = started[future]
                _record(ports, journal, source, future.result())
            for future in list(running):
                source, deadline = started[future]
                if ports.clock() >= deadline:
                    running.discard(future)
                    future.cancel()
                    result = SourceResult(
                        source_id=source.id,
                        error_type="timeout",
                        error_message=f"source did not finish within {source.timeout_seconds:.0f}s",
                    )
                    _record(ports, journal, source, result)
            last = journal.saved_at or ports.clock()
            if running and (ports.clock() - last).total_seconds() >= renew_every:
                _save(ports, journal)  # renews the lease during long sources
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _monotonic_deadline(ports: _Ports, seconds: float) -> dt.datetime:
    return ports.clock() + dt.timedelta(seconds=seconds)


def _run_one(executor: Executor, source: SourceConfig, run: RunContext) -> SourceResult:
    started = dt.datetime.now(dt.UTC)
    try:
        result = executor.run_source(source, run)
    except SourceFailed as exc:
        result = SourceResult(
            source_id=source.id, error_type=exc.error_type, error_message=str(exc)
        )
    except CursorError as exc:
        result = SourceResult(
            source_id=source.id, error_type=_error_type(exc), error_message=str(exc)
        )
    except Exception as exc:  # a broken handler must never sink the other sources
        result = SourceResult(
            source_id=source.id,
            error_type="handler_crashed",
            error_message=f"{type(exc).__name__}: {exc}",
        )
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return attrs.evolve(result, duration_seconds=round(elapsed, 3))


def _done(journal: RunJournal, source_id: str) -> bool:
    outcome = journal.source_outcome(source_id)
    return outcome is not None and outcome.ok


def _record(ports: _Ports, journal: _Journal, source: SourceConfig, result: SourceResult) -> None:
    outcome = SourceOutcome(
        source_id=source.id,
        ok=result.ok,
        documents_count=len(result.documents),
        error_type=result.error_type,
        error_message=result.error_message,
        duration_seconds=result.duration_seconds,
    )
    others = tuple(o for o in journal.value.sources if o.source_id != source.id)
    docs = tuple(d for d in journal.value.documents if d.source_id != source.id)
    _save(
        ports,
        journal,
        sources=(*others, outcome),
        documents=(*docs, *result.documents) if result.ok else docs,
    )
    ports.on_event(
        "source.finished",
        {
            "run_id": journal.value.run_id,
            "source_id": source.id,
            "handler_id": source.handler_id,
            "ok": result.ok,
            "documents": len(result.documents),
            "error_type": result.error_type,
            "error": result.error_message,
            "duration_seconds": result.duration_seconds,
        },
    )


def _source_results(journal: RunJournal) -> tuple[SourceResult, ...]:
    by_source: dict[str, list[Document]] = {}
    for doc in journal.documents:
        by_source.setdefault(doc.source_id, []).append(doc)
    return tuple(
        SourceResult(
            source_id=o.source_id,
            documents=tuple(by_source.get(o.source_id, ())),
            items_count=o.documents_count,
            error_type=o.error_type,
            error_message=o.error_message,
            duration_seconds=o.duration_seconds,
        )
        for o in journal.sources
    )


def _source_errors(journal: RunJournal, clock: Clock) -> list[GoldError]:
    stamp = isoformat_z(journal.updated_at if journal.updated_at else clock())
    return [
        GoldError(
            source_id=o.source_id,
            error_type=o.error_type or "error",
            error_message=o.error_message or "",
            timestamp=stamp,
        )
        for o in journal.sources
        if not o.ok
    ]


def _invalid_source_errors(watchlist: WatchlistConfig, clock: Clock) -> list[GoldError]:
    stamp = isoformat_z(clock())
    return [
        GoldError(
            source_id=bad.source_id or f"sources[{bad.index}]",
            error_type="invalid_config",
            error_message=bad.reason,
            timestamp=stamp,
        )
        for bad in watchlist.invalid
    ]


def _publish(
    ports: _Ports,
    journal: _Journal,
    gold: Any,
    status: RunStatus,
    *,
    reprocessed: bool,
) -> None:
    """Publish the Gold create-only; adopt an object already there."""
    value = journal.value
    key = gold_key(value.run_id, value.date, reprocessed=reprocessed)
    serialized = serialize_gold(gold)
    metadata = {
        "sha256": serialized.sha256,
        "run_id": value.run_id,
        "date": value.date.isoformat(),
        "published_at": isoformat_z(ports.clock()),
        "schema_version": gold.metadata.version,
        "status": status.value,
    }
    try:
        stored = ports.store.put(
            key,
            serialized.body,
            content_type="application/json",
            metadata=metadata,
            if_none_match=True,
            sha256=serialized.sha256,
        )
        sha, size, adopted = serialized.sha256, serialized.size, False
    except PreconditionFailed:
        existing = ports.store.head(key)
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
    _save(ports, journal, gold=record, status=status)
    ports.on_event(
        "gold.published",
        {"run_id": value.run_id, "key": key, "sha256": sha, "size": size, "adopted": adopted},
    )


def _notify_complete(ports: _Ports, journal: _Journal) -> None:
    value = journal.value
    assert value.gold is not None
    record = value.notification
    if record is None:
        note = notes.ingest_complete(
            run_id=value.run_id,
            status=value.gold.status,
            completed_at=ports.clock(),
            file_path=value.gold.key,
            sha256=value.gold.sha256,
            documents_count=value.gold.documents_count,
            errors_count=value.gold.errors_count,
            metadata={
                "date": value.date.isoformat(),
                "events_count": value.gold.events_count,
                "size": value.gold.size,
                **alert_metadata(value.sources, ports.config.load().global_settings),
            },
        )
        record = note.to_record()
        _save(ports, journal, notification=record)
    if not (record.delivered or record.rejected):
        record = _deliver(ports, value.run_id, record)
    _save(ports, journal, notification=record, finished_at=ports.clock())
    ports.on_event(
        "run.finished",
        {
            "run_id": value.run_id,
            "status": value.gold.status.value,
            "key": value.gold.key,
            "sha256": value.gold.sha256,
            "notified": record.delivered,
        },
    )


def _deliver(ports: _Ports, run_id: str, record: NotificationRecord) -> NotificationRecord:
    """Send a recorded notification; a 4xx rejection is final, others raise."""
    note = notes.Notification.from_record(run_id, record)
    try:
        receipt = ports.notifier.send(note)
    except NotificationRejected as exc:
        ports.on_event(
            "notification.rejected",
            {"run_id": run_id, "event_type": record.event_type, "status_code": exc.status_code},
        )
        return attrs.evolve(record, rejected=True, status_code=exc.status_code, attempts=1)
    ports.on_event(
        "notification.delivered",
        {
            "run_id": run_id,
            "event_type": record.event_type,
            "status_code": receipt.status_code,
            "attempts": receipt.attempts,
        },
    )
    return attrs.evolve(
        record, delivered=True, status_code=receipt.status_code, attempts=receipt.attempts
    )


def _fail_run(
    ports: _Ports,
    message: QueueMessage,
    run_id: str,
    identity: str,
    error_type: str,
    error_message: str,
) -> None:
    """Mark the run failed and send its ``processing_error`` (best effort)."""
    attempts = ports.delivery.attempts if ports.delivery else 1
    note = notes.processing_error(
        run_id=run_id,
        error_type=error_type,
        error_message=error_message,
        occurred_at=ports.clock(),
        context={
            "date": message.date.isoformat(),
            "message_id": identity,
            "message_type": message.type.value,
            "attempts": attempts,
        },
    )
    record = note.to_record()
    try:
        record = _deliver(ports, run_id, record)
    except CursorError as exc:
        ports.on_event(
            "notification.failed",
            {"run_id": run_id, "event_type": record.event_type, "error": str(exc)},
        )
    try:
        journal = _open_journal(ports, message, run_id, identity)
    except CursorError:
        return
    if journal.value.complete:
        return
    try:
        _save(
            ports,
            journal,
            status=RunStatus.FAILED,
            failure=record,
            error=f"{error_type}: {error_message}",
            finished_at=ports.clock(),
        )
    except CursorError:
        return
    ports.on_event(
        "run.failed", {"run_id": run_id, "error_type": error_type, "error": error_message}
    )


def _summary(journal: RunJournal) -> RunSummary:
    gold = journal.gold
    if gold is None:
        return RunSummary(
            run_id=journal.run_id,
            status=journal.status or RunStatus.FAILED,
            gold_key=None,
            sha256=None,
            size=None,
            documents_count=len(journal.documents),
            events_count=0,
            errors_count=sum(1 for o in journal.sources if not o.ok),
            notified=bool(journal.failure and journal.failure.delivered),
        )
    return RunSummary(
        run_id=journal.run_id,
        status=gold.status,
        gold_key=gold.key,
        sha256=gold.sha256,
        size=gold.size,
        documents_count=gold.documents_count,
        events_count=gold.events_count,
        errors_count=gold.errors_count,
        notified=bool(journal.notification and journal.notification.delivered),
    )


def read_journal(store: ObjectStore, run_id: str) -> RunJournal | None:
    """Load a run's journal, or ``None`` when the run is unknown."""
    key = journal_key(run_id)
    if store.head(key) is None:
        return None
    body, _ = store.get(key)
    journal: RunJournal = converter.structure(json.loads(body), RunJournal)
    return journal


__all__ = [
    "AllSourcesFailed",
    "HandleResult",
    "IngestPolicy",
    "LeaseHeld",
    "LeaseLost",
    "Outcome",
    "RunFailed",
    "RunSummary",
    "handle_delivery",
    "read_journal",
    "run_message",
    "utc_now",
]
