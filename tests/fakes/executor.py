"""An Executor whose per-source behaviour is given as data.

Like the real executors it cuts a source at its ``timeout_seconds``
(``SourceFailed(timeout)``); :meth:`FakeExecutor.close_run` makes the run's
sources still running return ``SourceFailed(cancelled)`` at once, and
:meth:`FakeExecutor.cancel_source` one of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.gold import EventType, GoldDocument, GoldEvent, build_gold
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig, matches_keywords

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
    otherwise (a callable, or an exception to raise), or ``pages`` has items
    for their ``url_feed`` (mapped and filtered by ``keywords`` as the real
    executors do). ``sleep`` makes a source take that long (cut at its
    timeout, or by :meth:`close_run` and :meth:`cancel_source`); a source in
    ``overrun`` is not cut at its timeout (a misbehaving executor), one in
    ``deaf`` not even by a cancellation (code nothing can interrupt). Calls
    are recorded; ``most_running`` is the most sources that ran at once.
    """

    def __init__(self, *, docs_per_source: int = 2) -> None:
        self.docs_per_source = docs_per_source
        self.behaviours: dict[str, Behaviour | BaseException] = {}
        self.calls: list[tuple[str, str]] = []
        self.sleep: dict[str, float] = {}
        self.pages: dict[str, list[dict[str, str]]] = {}
        self.closed_runs: list[str] = []
        self.overrun: set[str] = set()
        self.deaf: set[str] = set()
        self.running = 0
        self.most_running = 0
        self._cancels: dict[str, dict[str, threading.Event]] = {}
        self.process_error: BaseException | None = None
        self.process_sleep = 0.0
        self.gold_error: BaseException | None = None
        self._lock = threading.Lock()

    def run_source(self, source: SourceConfig, run: RunContext) -> SourceResult:
        with self._lock:
            self.calls.append(("run_source", source.id))
            cancel = self._cancels.setdefault(run.run_id, {}).setdefault(
                source.id, threading.Event()
            )
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return self._run(source, run, cancel)
        finally:
            with self._lock:
                self.running -= 1

    def _run(self, source: SourceConfig, run: RunContext, cancel: threading.Event) -> SourceResult:
        if source.id in self.sleep:
            pause = self.sleep[source.id]
            if source.id in self.deaf:
                time.sleep(pause)
            elif cancel.wait(
                pause if source.id in self.overrun else min(pause, source.timeout_seconds)
            ):
                raise SourceFailed(f"{source.id} was cancelled", error_type="cancelled")
            if pause > source.timeout_seconds:
                raise SourceFailed(
                    f"{source.id} did not finish within {source.timeout_seconds:g}s",
                    error_type="timeout",
                )
        behaviour = self.behaviours.get(source.id)
        if isinstance(behaviour, BaseException):
            raise behaviour
        if behaviour is not None:
            return behaviour(source, run)
        if source.url_feed in self.pages:
            from atlasreg_cursor.adapters.core.scrapy import items_to_documents

            items = self.pages[source.url_feed]
            found = items_to_documents(items, source)
            kept = tuple(d for d in found if matches_keywords(source.keywords, d.title, d.summary))
            return SourceResult(source_id=source.id, documents=kept, items_count=len(items))
        docs = documents_for(source.id, self.docs_per_source)
        return SourceResult(source_id=source.id, documents=docs, items_count=len(docs))

    def close_run(self, run: RunContext) -> None:
        with self._lock:
            self.closed_runs.append(run.run_id)
            cancels = self._cancels.pop(run.run_id, {})
        for cancel in cancels.values():
            cancel.set()

    def cancel_source(self, run: RunContext, source_id: str) -> None:
        with self._lock:
            self.calls.append(("cancel_source", source_id))
            cancel = self._cancels.get(run.run_id, {}).pop(source_id, None)
        if cancel is not None:
            cancel.set()

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
