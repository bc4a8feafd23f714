"""An Executor whose per-source behaviour is given as data."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.gold import EventType, GoldDocument, GoldEvent, build_gold
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig

Behaviour = Callable[[SourceConfig, RunContext], SourceResult]


def documents_for(source_id: str, count: int) -> tuple[Document, ...]:
    """*count* documents of a source with predictable ids and titles."""
    return tuple(
        Document(document_id=f"{source_id}-{i}", source_id=source_id, title=f"{source_id} {i}")
        for i in range(count)
    )


class FakeExecutor:
    """
    Sources yield ``docs_per_source`` documents unless ``behaviours`` says
    otherwise (a callable, or an exception to raise). Calls are recorded. A
    source given a ``sleep`` waits that long, or until ``close_run`` of its
    run, which stops it with ``SourceFailed("cancelled")``.
    """

    def __init__(self, *, docs_per_source: int = 2) -> None:
        self.docs_per_source = docs_per_source
        self.behaviours: dict[str, Behaviour | BaseException] = {}
        self.calls: list[tuple[str, str]] = []
        self.sleep: dict[str, float] = {}
        self.process_error: BaseException | None = None
        self.process_sleep = 0.0
        self.gold_error: BaseException | None = None
        self.closed_runs: list[str] = []
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def run_source(self, source: SourceConfig, run: RunContext) -> SourceResult:
        with self._lock:
            self.calls.append(("run_source", source.id))
            stop = self._stops.setdefault(run.run_id, threading.Event())
        if source.id in self.sleep and stop.wait(self.sleep[source.id]):
            raise SourceFailed(f"{source.id} stopped: run closed", error_type="cancelled")
        behaviour = self.behaviours.get(source.id)
        if isinstance(behaviour, BaseException):
            raise behaviour
        if behaviour is not None:
            return behaviour(source, run)
        docs = documents_for(source.id, self.docs_per_source)
        return SourceResult(source_id=source.id, documents=docs, items_count=len(docs))

    def process(
        self, documents: Sequence[Document], run: RunContext, *, timeout_seconds: float
    ) -> ProcessingResult:
        with self._lock:
            self.calls.append(("process", str(len(documents))))
        time.sleep(self.process_sleep)
        if self.process_error is not None:
            raise self.process_error
        events = tuple(_event(d) for d in documents)
        return ProcessingResult(
            processed_count=len(documents), events=events, documents_count=len(documents)
        )

    def build_gold(
        self, run: RunContext, results: Sequence[SourceResult], processing: ProcessingResult
    ) -> GoldDocument:
        with self._lock:
            self.calls.append(("build_gold", run.run_id))
        if self.gold_error is not None:
            raise self.gold_error
        import datetime as dt

        return build_gold(
            run_id=run.run_id,
            date=run.date,
            generated_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
            sources_processed=len(results),
            documents_count=processing.documents_count,
            events=processing.events,
            errors=processing.errors,
        )

    def reprocess(
        self, run: RunContext, sources: Sequence[SourceConfig], *, timeout_seconds: float
    ) -> ProcessingResult:
        with self._lock:
            self.calls.append(("reprocess", run.run_id))
        docs = [d for s in sources for d in documents_for(s.id, self.docs_per_source)]
        return ProcessingResult(
            processed_count=len(docs),
            events=tuple(_event(d) for d in docs),
            documents_count=len(docs),
        )

    def close_run(self, run: RunContext) -> None:
        with self._lock:
            self.closed_runs.append(run.run_id)
            self._stops.setdefault(run.run_id, threading.Event()).set()

    def close(self) -> None:
        return None


def _event(doc: Document) -> GoldEvent:
    return GoldEvent(
        event_id=f"ev-{doc.document_id}",
        title=doc.title,
        summary=doc.summary,
        event_type=EventType.NOTICIA,
        company=None,
        amount=None,
        date=doc.date,
        source=doc.source_id,
        source_url=doc.url,
        confidence_score=0.5,
        is_critical=False,
    )


def failing(error_type: str, message: str = "boom") -> SourceFailed:
    """A SourceFailed to put in ``behaviours``."""
    return SourceFailed(message, error_type=error_type)
