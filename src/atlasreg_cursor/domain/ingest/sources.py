"""Source scheduling: the run's sources in parallel, bounded, each within its timeout.

Each source runs in a thread of its own (at most ``max_concurrent_sources``
at once) and its outcome is written to the journal as it arrives (the
outcomes that arrive together in one write, after the next sources started).

A source past its deadline (its timeout plus a grace; the executor should
have cut it at its timeout) is recorded as ``timeout`` and stopped at once
with ``executor.cancel_source``. It keeps its slot until its thread ends, so
no more than ``max_concurrent_sources`` ever run; a thread that has not
ended ``join_seconds`` later is given up (``source.abandoned``) and its slot
freed. Once the source phase is over — normally, on a lost lease or a stop
request — ``executor.close_run(run)`` stops whatever still runs for the run,
and the threads are joined for a bounded time; one that still does not end
is reported the same way. Source threads are daemon threads, so none ever
holds the process up.
"""

from __future__ import annotations

import queue as queue_module
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from atlasreg_cursor.domain.documents import Document, SourceResult
from atlasreg_cursor.domain.errors import CursorError, SourceFailed
from atlasreg_cursor.domain.runs import RunContext, RunJournal, SourceOutcome
from atlasreg_cursor.domain.sources import SourceConfig

from .journals import ActiveRun, JournalStore
from .model import EventSink, Monotonic, error_text, error_type

if TYPE_CHECKING:
    from atlasreg_cursor.ports.executor import Executor


@attrs.frozen(kw_only=True)
class SourceLimits:
    """How many sources run at once and how long the stopped ones are waited for."""

    width: int
    grace_seconds: float
    join_seconds: float


def record_source_outcome(source: SourceConfig, result: SourceResult) -> SourceOutcome:
    """
    The journal's record of one source's result: the one place it is made.

    Its error message (kept in the journal and copied into the Gold's
    ``errors``) goes through :func:`~.model.error_text`.
    """
    message = None if result.error_message is None else error_text(result.error_message)
    return SourceOutcome(
        source_id=source.id,
        ok=result.ok,
        documents_count=len(result.documents),
        error_type=result.error_type,
        error_message=message,
        duration_seconds=result.duration_seconds,
    )


def run_sources(
    *,
    executor: Executor,
    journals: JournalStore,
    active: ActiveRun,
    sources: Sequence[SourceConfig],
    run: RunContext,
    limits: SourceLimits,
    monotonic: Monotonic,
    on_event: EventSink,
) -> None:
    """
    Run the sources not yet done, recording each outcome in the journal.

    Raises:
        LeaseLost: another consumer took the run meanwhile.
        RunAborted: the daemon was told to stop at once.
        StorageError: an outcome could not be written.
    """
    pending = [s for s in sources if not _done(active.value, s.id)]
    if not pending:
        return
    width = max(1, min(limits.width, len(pending)))
    results: queue_module.Queue[tuple[SourceConfig, SourceResult]] = queue_module.Queue()
    threads: dict[str, threading.Thread] = {}
    deadlines: dict[str, float] = {}  # running, result awaited: source id → deadline
    stopping: dict[str, float] = {}  # timed out, thread not ended: source id → give-up time
    abandoned: set[str] = set()
    waiting = list(pending)

    def fill() -> None:
        while waiting and len(deadlines) + len(stopping) < width:
            source = waiting.pop(0)
            thread = threading.Thread(
                target=_run_one,
                args=(executor, source, run, results, monotonic),
                name=f"source-{source.id}",
                daemon=True,
            )
            threads[source.id] = thread
            deadlines[source.id] = monotonic() + source.timeout_seconds + limits.grace_seconds
            thread.start()

    try:
        while waiting or deadlines:
            active.check()
            fill()
            finished = _finished(
                results, deadlines, stopping, _wait(deadlines, stopping, monotonic)
            )
            late = _timed_out(deadlines, pending, monotonic)
            for source, _ in late:
                _cancel(executor, run, source, on_event)
                stopping[source.id] = monotonic() + limits.join_seconds
            _given_up(stopping, threads, abandoned, monotonic, run, on_event)
            finished += late
            if finished:
                fill()  # the next sources start before the journal write, not after it
                _record(journals, active, finished, on_event)
    finally:
        _close_run(executor, run, on_event)
        _join(threads, limits.join_seconds, monotonic, run, on_event, abandoned)


def _finished(
    results: queue_module.Queue[tuple[SourceConfig, SourceResult]],
    deadlines: dict[str, float],
    stopping: dict[str, float],
    wait_seconds: float,
) -> list[tuple[SourceConfig, SourceResult]]:
    """
    The results in hand: the first waited for, then every one already there.

    A timed-out source's late result only frees its slot (its outcome is recorded).
    """
    finished: list[tuple[SourceConfig, SourceResult]] = []
    try:
        item = results.get(timeout=wait_seconds)
        while True:
            if deadlines.pop(item[0].id, None) is not None:
                finished.append(item)
            else:
                stopping.pop(item[0].id, None)
            item = results.get_nowait()
    except queue_module.Empty:
        return finished


def _timed_out(
    deadlines: dict[str, float], pending: Sequence[SourceConfig], monotonic: Monotonic
) -> list[tuple[SourceConfig, SourceResult]]:
    """The sources past their deadline, each with a ``timeout`` result."""
    late: list[tuple[SourceConfig, SourceResult]] = []
    for source_id, deadline in list(deadlines.items()):
        if monotonic() >= deadline:
            del deadlines[source_id]
            source = next(s for s in pending if s.id == source_id)
            timeout = SourceResult(
                source_id=source_id,
                error_type="timeout",
                error_message=f"source did not finish within {source.timeout_seconds:.0f}s",
                duration_seconds=source.timeout_seconds,
            )
            late.append((source, timeout))
    return late


def _wait(deadlines: dict[str, float], stopping: dict[str, float], monotonic: Monotonic) -> float:
    """Seconds to wait for the next result: at most 1 s, at most to the next deadline."""
    times = [*deadlines.values(), *stopping.values()]
    if not times:
        return 0.0
    return max(0.01, min(1.0, min(times) - monotonic()))


def _given_up(
    stopping: dict[str, float],
    threads: dict[str, threading.Thread],
    abandoned: set[str],
    monotonic: Monotonic,
    run: RunContext,
    on_event: EventSink,
) -> None:
    """Free the slots of stopped sources whose thread ended, or that were waited for long enough."""
    for source_id, give_up_at in list(stopping.items()):
        if not threads[source_id].is_alive():
            del stopping[source_id]
        elif monotonic() >= give_up_at:
            del stopping[source_id]
            abandoned.add(source_id)
            on_event("source.abandoned", {"run_id": run.run_id, "source_id": source_id})


def _cancel(executor: Executor, run: RunContext, source: SourceConfig, on_event: EventSink) -> None:
    try:
        executor.cancel_source(run, source.id)
    except Exception as exc:  # the port says never; the run goes on without it
        on_event(
            "executor.close_failed",
            {"run_id": run.run_id, "source_id": source.id, "error": repr(exc)},
        )


def _run_one(
    executor: Executor,
    source: SourceConfig,
    run: RunContext,
    results: queue_module.Queue[tuple[SourceConfig, SourceResult]],
    monotonic: Monotonic,
) -> None:
    started = monotonic()
    try:
        result = executor.run_source(source, run)
    except SourceFailed as exc:
        result = SourceResult(
            source_id=source.id, error_type=exc.error_type, error_message=str(exc)
        )
    except CursorError as exc:
        result = SourceResult(
            source_id=source.id, error_type=error_type(exc), error_message=str(exc)
        )
    except Exception as exc:  # a broken handler must never sink the other sources
        result = SourceResult(
            source_id=source.id,
            error_type="handler_crashed",
            error_message=f"{type(exc).__name__}: {exc}",
        )
    elapsed = round(monotonic() - started, 3)
    results.put((source, attrs.evolve(result, duration_seconds=elapsed)))


def _close_run(executor: Executor, run: RunContext, on_event: EventSink) -> None:
    try:
        executor.close_run(run)
    except Exception as exc:  # the port says never; a broken executor must not hide the run's error
        on_event("executor.close_failed", {"run_id": run.run_id, "error": repr(exc)})


def _join(
    threads: dict[str, threading.Thread],
    seconds: float,
    monotonic: Monotonic,
    run: RunContext,
    on_event: EventSink,
    reported: set[str],
) -> None:
    """Wait (boundedly) for the source threads; report those still alive, once each."""
    deadline = monotonic() + seconds
    for source_id, thread in threads.items():
        thread.join(timeout=max(0.0, deadline - monotonic()))
        if thread.is_alive() and source_id not in reported:
            on_event("source.abandoned", {"run_id": run.run_id, "source_id": source_id})


def _done(journal: RunJournal, source_id: str) -> bool:
    outcome = journal.source_outcome(source_id)
    return outcome is not None and outcome.ok


def _record(
    journals: JournalStore,
    active: ActiveRun,
    finished: Sequence[tuple[SourceConfig, SourceResult]],
    on_event: EventSink,
) -> None:
    """Write the outcomes that finished together in one journal write, then announce them."""
    value = active.value
    done = {source.id for source, _ in finished}
    outcomes = [record_source_outcome(source, result) for source, result in finished]
    kept = tuple(d for d in value.documents if d.source_id not in done)
    fresh = tuple(d for _, result in finished if result.ok for d in result.documents)
    journals.save(
        active,
        sources=(*(o for o in value.sources if o.source_id not in done), *outcomes),
        documents=(*kept, *fresh),
    )
    for (source, _), outcome in zip(finished, outcomes, strict=True):
        on_event(
            "source.finished",
            {
                "run_id": value.run_id,
                "source_id": source.id,
                "handler_id": source.handler_id,
                "ok": outcome.ok,
                "documents": outcome.documents_count,
                "error_type": outcome.error_type,
                "error": outcome.error_message,
                "duration_seconds": outcome.duration_seconds,
            },
        )


def source_results(journal: RunJournal) -> tuple[SourceResult, ...]:
    """The sources' results as the journal keeps them, for building the Gold."""
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
