"""What sources yield and processing makes of it: documents and results."""

from __future__ import annotations

import attrs

from .gold import GoldErrorEntry, GoldEvent


@attrs.frozen(kw_only=True)
class Document:
    """
    One item collected by a source.

    In Core mode only ``document_id`` matters (Core stored the document);
    the local executor also fills the text fields it enriches.
    """

    document_id: str
    source_id: str
    title: str = ""
    url: str | None = None
    date: str | None = None
    summary: str = ""
    player_id: str | None = None
    tags: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SourceResult:
    """The outcome of running one source through its handler."""

    source_id: str
    documents: tuple[Document, ...] = ()
    items_count: int = 0
    error_type: str | None = None
    error_message: str | None = None
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """A source succeeded when it reported no error."""
        return self.error_type is None


@attrs.frozen(kw_only=True)
class ProcessingResult:
    """
    The outcome of processing a run's documents.

    ``events`` is filled by executors that enrich in-process (local mode);
    Core keeps its results and builds the Gold itself.
    """

    processed_count: int = 0
    failed_count: int = 0
    events: tuple[GoldEvent, ...] = ()
    errors: tuple[GoldErrorEntry, ...] = ()
    documents_count: int = 0
