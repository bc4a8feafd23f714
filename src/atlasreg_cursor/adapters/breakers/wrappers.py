"""The port wrappers that put a dependency's breaker in front of an adapter.

:class:`BreakerStore` (``storage``), :class:`BreakerNotifier` (``webhook``)
and :class:`BreakerExecutor` (``source:<host>`` per source) implement their
ports by calling the wrapped adapter through :class:`~.board.Breaker`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from atlasreg_cursor.domain.errors import NotificationUnavailable, StorageUnavailable
from atlasreg_cursor.ports.storage import ConditionalWriteProbe

from .board import (
    BreakerBoard,
    CircuitOpen,
    NotifierCircuitOpen,
    SourceCircuitOpen,
    StorageCircuitOpen,
    source_dependency,
    source_host_failure,
)

if TYPE_CHECKING:
    from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
    from atlasreg_cursor.domain.gold import GoldDocument
    from atlasreg_cursor.domain.notifications import Notification
    from atlasreg_cursor.domain.runs import RunContext
    from atlasreg_cursor.domain.sources import SourceConfig
    from atlasreg_cursor.ports import Executor, Notifier, ObjectStore
    from atlasreg_cursor.ports.notifier import Receipt
    from atlasreg_cursor.ports.storage import StoredObject


class BreakerStore:
    """An ``ObjectStore`` behind the ``storage`` breaker."""

    def __init__(self, inner: ObjectStore, board: BreakerBoard) -> None:
        self._inner = inner
        self._breaker = board.breaker_for(
            "storage",
            counts=lambda e: isinstance(e, StorageUnavailable) and not isinstance(e, CircuitOpen),
            open_error=StorageCircuitOpen,
        )

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        metadata: Mapping[str, str] | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """``ObjectStore.put`` through the breaker."""
        return self._breaker.call(
            self._inner.put,
            key,
            body,
            content_type=content_type,
            metadata=metadata,
            if_none_match=if_none_match,
            if_match=if_match,
            sha256=sha256,
        )

    def get(self, key: str) -> tuple[bytes, StoredObject]:
        """``ObjectStore.get`` through the breaker."""
        return self._breaker.call(self._inner.get, key)

    def head(self, key: str) -> StoredObject | None:
        """``ObjectStore.head`` through the breaker."""
        return self._breaker.call(self._inner.head, key)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """``ObjectStore.list`` through the breaker (admitted once, outcome at the end)."""
        self._breaker.admit()
        try:
            yield from self._inner.list(prefix)
        except Exception as exc:
            self._breaker.record(exc)
            raise
        self._breaker.record(None)

    def delete(self, key: str) -> None:
        """``ObjectStore.delete`` through the breaker."""
        self._breaker.call(self._inner.delete, key)

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        """``ObjectStore.presign_get`` (local computation: no breaker)."""
        return self._inner.presign_get(key, expires_s)

    def check_conditional_writes(self) -> None:
        """The wrapped store's start-up probe of create-only writes, when it has one."""
        if isinstance(self._inner, ConditionalWriteProbe):
            self._breaker.call(self._inner.check_conditional_writes)

    def close(self) -> None:
        """Close the wrapped store."""
        getattr(self._inner, "close", lambda: None)()


class BreakerNotifier:
    """A ``Notifier`` behind the ``webhook`` breaker."""

    def __init__(self, inner: Notifier, board: BreakerBoard) -> None:
        self._inner = inner
        self._breaker = board.breaker_for(
            "webhook",
            counts=lambda e: (
                isinstance(e, NotificationUnavailable) and not isinstance(e, CircuitOpen)
            ),
            open_error=NotifierCircuitOpen,
        )

    def send(self, notification: Notification) -> Receipt:
        """``Notifier.send`` through the breaker."""
        return self._breaker.call(self._inner.send, notification)

    def close(self) -> None:
        """Close the wrapped notifier (when it holds connections)."""
        getattr(self._inner, "close", lambda: None)()


class BreakerExecutor:
    """An ``Executor`` whose ``run_source`` goes through the source host's breaker."""

    def __init__(self, inner: Executor, board: BreakerBoard) -> None:
        self._inner = inner
        self._board = board

    def run_source(self, source: SourceConfig, run: RunContext) -> SourceResult:
        """``Executor.run_source`` through ``source:<host>`` (network errors and timeouts count)."""
        dependency = source_dependency(source)
        if dependency is None:
            return self._inner.run_source(source, run)
        breaker = self._board.breaker_for(
            dependency, counts=source_host_failure, open_error=SourceCircuitOpen
        )
        return breaker.call(self._inner.run_source, source, run)

    def process(
        self, documents: Sequence[Document], run: RunContext, *, timeout_seconds: float
    ) -> ProcessingResult:
        """``Executor.process``, unchanged."""
        return self._inner.process(documents, run, timeout_seconds=timeout_seconds)

    def build_gold(
        self, run: RunContext, results: Sequence[SourceResult], processing: ProcessingResult
    ) -> GoldDocument:
        """``Executor.build_gold``, unchanged."""
        return self._inner.build_gold(run, results, processing)

    def reprocess(
        self, run: RunContext, sources: Sequence[SourceConfig], *, timeout_seconds: float
    ) -> ProcessingResult:
        """``Executor.reprocess``, unchanged."""
        return self._inner.reprocess(run, sources, timeout_seconds=timeout_seconds)

    def close_run(self, run: RunContext) -> None:
        """``Executor.close_run``, unchanged."""
        self._inner.close_run(run)

    def cancel_source(self, run: RunContext, source_id: str) -> None:
        """``Executor.cancel_source``, unchanged."""
        self._inner.cancel_source(run, source_id)

    def close(self) -> None:
        """``Executor.close``."""
        self._inner.close()


__all__ = ["BreakerExecutor", "BreakerNotifier", "BreakerStore"]
