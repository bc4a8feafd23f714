"""Stopping the local executor's downloads (``DOWNLOAD_CSV``).

- :class:`DownloadStop`: the stop handle of one download; the guarded HTTP
  client shuts the download's socket as soon as it is set (a blocked read
  returns at once) — how a download of a closed run is stopped. Its
  deadline is enforced by the client itself.
- :class:`RunDownloads`: the stop handles of each run's downloads in progress.
- :func:`precheck_url`: what the URL guard can refuse without a DNS lookup,
  checked before a download asks for its turn.

A download's turn on its host comes from the run's crawl process
(``CrawlSessions.host_turn``), so downloads and crawl requests share one
per-host limit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from atlasreg_cursor.adapters._netguard import vet_url


class _NamedHost(Exception):
    """The URL names its host: it is resolved (once) when it is fetched."""


def _no_lookup(host: str, port: int) -> list[str]:
    raise _NamedHost(host)


def precheck_url(url: str, *, allow_private: bool) -> None:
    """
    Refuse *url* now when its syntax, or its address written as an IP literal, fails the
    URL guard; a host name is left to the guarded client (one lookup, when it fetches).

    Raises:
        SourceFailed: ``invalid_url`` or ``forbidden_address``.
    """
    with contextlib.suppress(_NamedHost):
        vet_url(url, allow_private=allow_private, resolver=_no_lookup)


class DownloadStop:
    """Stop one download (of *source_id*) from another thread; ``reason`` says why."""

    def __init__(self, source_id: str | None = None) -> None:
        self.source_id = source_id
        self.event = threading.Event()
        self.reason: str | None = None

    def aborted(self) -> bool:
        """Tell whether :meth:`abort` was called."""
        return self.event.is_set()

    def abort(self, reason: str) -> None:
        """Stop the download (its socket is shut by the client)."""
        self.reason = self.reason or reason
        self.event.set()


class RunDownloads:
    """The stop handles of the downloads in progress, by run."""

    def __init__(self) -> None:
        self._runs: dict[str, set[DownloadStop]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def track(self, run_id: str, stop: DownloadStop) -> Iterator[None]:
        """Register *stop* under *run_id* for the ``with`` block."""
        with self._lock:
            self._runs.setdefault(run_id, set()).add(stop)
        try:
            yield
        finally:
            with self._lock:
                pools = self._runs.get(run_id)
                if pools is not None:
                    pools.discard(stop)
                    if not pools:
                        del self._runs[run_id]

    def abort(self, run_id: str | None = None, source_id: str | None = None) -> int:
        """
        Abort the downloads of *run_id* (of every run when ``None``), or only
        its *source_id*'s.

        Returns:
            How many downloads were aborted.
        """
        with self._lock:
            if run_id is None:
                pools = [p for group in self._runs.values() for p in group]
            else:
                pools = list(self._runs.get(run_id, ()))
        if source_id is not None:
            pools = [p for p in pools if p.source_id == source_id]
        for pool in pools:
            pool.abort("cancelled")
        return len(pools)
