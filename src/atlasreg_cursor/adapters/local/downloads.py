"""Turns and deadlines for the local executor's downloads (``DOWNLOAD_CSV``).

- :class:`HostTurns`: at most ``CRAWL_MAX_PER_HOST`` downloads at once per
  host, so CSV downloads take their turn under the same per-host limit as
  crawl requests; waiting for a turn counts against the source's timeout.
- :class:`DownloadStop`: the stop handle of one download; the guarded HTTP
  client shuts the download's socket as soon as it is set (a blocked read
  returns at once) — how a download of a closed run is stopped. Its
  deadline is enforced by the client itself.
- :class:`RunDownloads`: the stop handles of each run's downloads in progress.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from atlasreg_cursor.domain.errors import SourceFailed

TURN_POLL_SECONDS = 0.1


class HostTurns:
    """
    At most *per_host* holders at once per host name.

    Args:
        per_host: how many downloads may run at once against one host.
    """

    def __init__(self, per_host: int) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.per_host = per_host
        self._holders: dict[str, int] = {}
        self._free = threading.Condition()

    def holders(self, host: str) -> int:
        """How many downloads hold a turn on *host* right now."""
        with self._free:
            return self._holders.get(host.lower(), 0)

    @contextlib.contextmanager
    def turn(self, host: str, *, deadline: float, stopped: Callable[[], bool]) -> Iterator[None]:
        """
        Hold one of *host*'s turns for the ``with`` block.

        Raises:
            SourceFailed: ``timeout`` when no turn came before *deadline*,
                ``cancelled`` when *stopped()* became true while waiting.
        """
        key = host.lower()
        with self._free:
            while self._holders.get(key, 0) >= self.per_host:
                if stopped():
                    raise SourceFailed(
                        "the download was cancelled: its run was closed", error_type="cancelled"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SourceFailed(
                        f"no turn on host {host} before the source's timeout "
                        f"({self.per_host} downloads at once per host)",
                        error_type="timeout",
                    )
                self._free.wait(min(left, TURN_POLL_SECONDS))
            self._holders[key] = self._holders.get(key, 0) + 1
        try:
            yield
        finally:
            with self._free:
                left = self._holders.get(key, 1) - 1
                if left:
                    self._holders[key] = left
                else:
                    self._holders.pop(key, None)
                self._free.notify_all()


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
