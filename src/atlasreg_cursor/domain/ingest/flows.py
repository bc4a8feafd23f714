"""The two flows of architecture §5, carried out on a run whose lease this consumer holds.

Each step is recorded in the journal as it completes, so a redelivered or
swept run resumes after its last completed step. The run's heartbeat renews
the lease meanwhile; :meth:`ActiveRun.check` between steps stops a run whose
lease was lost or whose daemon was told to stop at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from atlasreg_cursor.domain.alerts import alert_metadata
from atlasreg_cursor.domain.gold import GoldDocument, merge_errors
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext, RunStatus
from atlasreg_cursor.domain.sources import SourceConfig, WatchlistConfig

from .journals import ActiveRun, JournalStore
from .model import AllSourcesFailed, Clock, EventSink, Job, Monotonic
from .outbox import Outbox
from .publish import complete_published, invalid_source_errors, publish_gold, source_errors
from .sources import SourceLimits, run_sources, source_results

if TYPE_CHECKING:
    from atlasreg_cursor.ports.config import ConfigSource
    from atlasreg_cursor.ports.executor import Executor
    from atlasreg_cursor.ports.storage import ObjectStore


def carry_out(
    job: Job,
    run: RunContext,
    active: ActiveRun,
    *,
    config: ConfigSource,
    executor: Executor,
    storage: ObjectStore,
    journals: JournalStore,
    outbox: Outbox,
    limits: SourceLimits,
    clock: Clock,
    monotonic: Monotonic,
    on_event: EventSink,
) -> None:
    """
    Do what the run has not done yet: sources, processing, Gold, outbox.

    Args:
        limits: ``width`` is a default, replaced by the watchlist's
            ``max_concurrent_sources``.

    Raises:
        CursorError: a step failed (see the port families); ``LeaseLost`` or
            ``RunAborted`` when the run must stop.
    """
    on_event(
        "run.started",
        {
            "run_id": run.run_id,
            "type": job.message.type.value,
            "date": job.message.date.isoformat(),
            "attempts": run.attempts,
        },
    )
    if active.value.gold is None:
        watchlist = config.load()
        sources = watchlist.enabled_sources(job.message.source_filter)
        timeout = watchlist.global_settings.processing_timeout_minutes * 60
        if job.message.type is MessageType.START_DAILY_INGEST:
            limits = attrs.evolve(limits, width=watchlist.global_settings.max_concurrent_sources)
            if active.value.processing is None:  # else the sources were done before
                run_sources(
                    executor=executor,
                    journals=journals,
                    active=active,
                    sources=sources,
                    run=run,
                    limits=limits,
                    monotonic=monotonic,
                    on_event=on_event,
                )
            gold, status = _daily_gold(
                run, active, sources, watchlist, timeout, executor, journals, clock, on_event
            )
        else:
            gold, status = _reprocess_gold(run, active, sources, timeout, executor, journals)
        publish_gold(
            storage=storage,
            journals=journals,
            active=active,
            gold=gold,
            status=status,
            reprocessed=job.message.type is MessageType.REPROCESS,
            clock=clock,
            on_event=on_event,
        )
    active.check()
    alerts: dict[str, Any] = {}
    if active.value.notification is None:  # else its metadata was fixed when it was built
        alerts = alert_metadata(active.value.sources, config.load().global_settings)
    complete_published(
        journals=journals,
        active=active,
        outbox=outbox,
        clock=clock,
        on_event=on_event,
        metadata=alerts,
    )


def _daily_gold(
    run: RunContext,
    active: ActiveRun,
    sources: Sequence[SourceConfig],
    watchlist: WatchlistConfig,
    timeout: float,
    executor: Executor,
    journals: JournalStore,
    clock: Clock,
    on_event: EventSink,
) -> tuple[GoldDocument, RunStatus]:
    """Process the documents the sources collected and build the daily Gold."""
    active.check()
    if active.value.processing is None:
        outcomes = active.value.sources
        if sources and not any(o.ok for o in outcomes):
            failures = "; ".join(f"{o.source_id}: {o.error_type}" for o in outcomes if not o.ok)
            raise AllSourcesFailed(f"every source failed ({failures})")
        done = executor.process(active.value.documents, run, timeout_seconds=timeout)
        active.check()
        journals.save(active, processing=done)
        on_event(
            "processing.finished",
            {
                "run_id": run.run_id,
                "processed": done.processed_count,
                "failed": done.failed_count,
            },
        )
    processing = active.value.processing
    assert processing is not None
    gold = executor.build_gold(run, source_results(active.value), processing)
    active.check()
    extra = [*source_errors(active.value, clock), *invalid_source_errors(watchlist, clock)]
    failed = [o for o in active.value.sources if not o.ok]
    status = RunStatus.PARTIAL if failed or watchlist.invalid else RunStatus.SUCCESS
    return merge_errors(gold, extra), status


def _reprocess_gold(
    run: RunContext,
    active: ActiveRun,
    sources: Sequence[SourceConfig],
    timeout: float,
    executor: Executor,
    journals: JournalStore,
) -> tuple[GoldDocument, RunStatus]:
    """Reprocess the date (once) and build its Gold."""
    if active.value.processing is None:
        done = executor.reprocess(run, sources, timeout_seconds=timeout)
        active.check()
        journals.save(active, processing=done)
    processing = active.value.processing
    assert processing is not None
    gold = executor.build_gold(run, (), processing)
    active.check()
    return gold, RunStatus.PARTIAL if gold.errors else RunStatus.SUCCESS
