"""The executor port (architecture §6 Executor): sources, processing, Gold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
from atlasreg_cursor.domain.gold import GoldDocument
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig

__all__ = ["Document", "Executor", "ProcessingResult", "RunContext", "SourceResult"]


class Executor(Protocol):
    """
    Protocol: runs sources and processing on AtlasReg Core or in-process.

    Raises :class:`ExecutorError` subclasses only.
    """

    def run_source(self, source: SourceConfig, run: RunContext) -> SourceResult:
        """
        Run one source through its handler within ``source.timeout_seconds``.

        Blocks until that source is done; several sources of one run may be
        run at once from different threads. The executor enforces the
        timeout itself: past it the source is stopped (its crawl requests
        dropped, its subprocess or download closed, its Celery task revoked)
        and the call returns within a small grace.

        Raises:
            SourceFailed: this source failed (``error_type`` says how:
                ``timeout`` past its timeout, ``cancelled`` once
                :meth:`close_run` was called for *run*).
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        ...

    def close_run(self, run: RunContext) -> None:
        """
        Stop everything still running for *run* and release what was kept for it
        (a crawl process). ``run_source`` calls of that run still in progress
        return promptly with ``SourceFailed(error_type="cancelled")``. Idempotent;
        never raises.
        """
        ...

    def cancel_source(self, run: RunContext, source_id: str) -> None:
        """
        Stop one source of *run* that is still running (the service calls it
        for a source past its deadline). That ``run_source`` call returns
        promptly with ``SourceFailed(error_type="cancelled")``; the run's
        other sources go on. Idempotent; nothing happens when the source is
        not running; never raises.
        """
        ...

    def process(
        self, documents: Sequence[Document], run: RunContext, *, timeout_seconds: float
    ) -> ProcessingResult:
        """
        Process the run's documents (AI processing / enrichment).

        Raises:
            ProcessingFailed: processing failed for the run as a whole.
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        ...

    def build_gold(
        self,
        run: RunContext,
        results: Sequence[SourceResult],
        processing: ProcessingResult,
    ) -> GoldDocument:
        """
        Build the run's Gold document.

        Raises:
            InvalidGold: what Core produced is not Gold 2.0.
            ProcessingFailed: Gold generation failed.
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        ...

    def reprocess(
        self, run: RunContext, sources: Sequence[SourceConfig], *, timeout_seconds: float
    ) -> ProcessingResult:
        """
        Reprocess the run's date (Core's ``reprocess_date``; locally, the
        date's sources again through the same enrichment).

        Raises:
            ProcessingFailed: reprocessing failed.
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        ...

    def close(self) -> None:
        """Release clients and subprocesses."""
        ...
