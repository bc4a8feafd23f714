"""The crawl process's reactor-lag watchdog: a blocking spider fails alone.

Every crawler of the process runs in the one reactor thread, so a project
spider that blocks it (a synchronous sleep, a long loop, a blocking client)
stalls every other source of the run while their deadlines pass. A thread of
its own, :class:`ReactorWatchdog`, sees when the reactor has not turned for
``lag_seconds`` (a heartbeat the reactor beats every 0.1 s) and looks at the
reactor thread's stack for the project source whose code runs there (its
spider, its crawler's pipelines or middlewares; see ``CrawlService.culprit``).
When it finds one:

1. it reports that source failed (``spider_error``, the message naming the
   blocking function), from the watchdog thread: the parent has its result
   and never sends it again;
2. it interrupts the source: SIGUSR1 to the reactor thread, whose handler
   raises :class:`ReactorBlocked` there while that source's code still runs
   (a sleep or a Python loop ends at once); once the reactor turns, the
   source's crawler is stopped and the other sources go on in this process;
3. if the reactor still has not turned ``lag_seconds`` later (the spider
   swallowed the exception, or blocks inside C code), it kills the process:
   the parent sends the run's other sources again to a new one.

A stall whose culprit cannot be named (no project code on the stack) is left
to the parent, which kills a wedged process past a source's deadline.
The generic newsroom and API spiders are the Cursor's own code: their
callbacks are bounded (page size cap) and are never named.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from atlasreg_cursor.adapters.core.crawl_process import DEFAULT_REACTOR_LAG_SECONDS

HEARTBEAT_SECONDS = 0.1
CHECK_SECONDS = 0.1


class ReactorBlocked(Exception):
    """Raised in the reactor thread, inside the source that blocked it."""


class Culprits(Protocol):
    """What the watchdog needs from the crawl service."""

    def culprit(self, frame: FrameType | None) -> tuple[str, str] | None:
        """The source whose code runs in *frame* (or a caller), and where; ``None``."""
        ...

    def fail_blocked(self, key: str, message: str) -> None:
        """Report source *key* failed (called from the watchdog thread)."""
        ...

    def stop_blocked(self, key: str) -> None:
        """Stop source *key* (called in the reactor thread once it turns)."""
        ...


class ReactorWatchdog:
    """
    Watch the reactor thread for stalls (see the module docstring).

    Build and :meth:`start` it in the reactor's (main) thread, before the
    reactor runs.

    Args:
        reactor: the reactor.
        service: names, fails and stops the blocking source.
        lag_seconds: how long the reactor may stall before the culprit is failed.
        kill: ends the process when interrupting did not help.
    """

    def __init__(
        self,
        reactor: Any,
        service: Culprits,
        *,
        lag_seconds: float = DEFAULT_REACTOR_LAG_SECONDS,
        kill: Callable[[], None],
    ) -> None:
        self.lag_seconds = lag_seconds
        self._reactor = reactor
        self._service = service
        self._kill = kill
        self._thread_id = threading.get_ident()
        self._last_turn = time.monotonic()
        self._acted_at: float | None = None
        self._target: str | None = None

    def start(self) -> None:
        """Install the SIGUSR1 handler, beat the heartbeat, start watching."""
        signal.signal(signal.SIGUSR1, self.interrupt)
        self._reactor.callWhenRunning(self._beat)
        threading.Thread(target=self._watch, name="reactor-watchdog", daemon=True).start()

    def _beat(self) -> None:
        self._last_turn = time.monotonic()
        self._reactor.callLater(HEARTBEAT_SECONDS, self._beat)

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK_SECONDS)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """One look at the reactor: act on a stall of ``lag_seconds`` or more."""
        lag = now - self._last_turn
        if lag < self.lag_seconds:
            self._acted_at = None
            return
        if self._acted_at is not None:
            if now - self._acted_at >= self.lag_seconds:
                self._kill()  # the interruption did not free the reactor
            return
        found = self._service.culprit(sys._current_frames().get(self._thread_id))
        if found is None:
            return
        key, where = found
        self._acted_at = now
        self._service.fail_blocked(
            key,
            f"the spider blocked the crawl process for {lag:.1f} s (in {where}); "
            "it was stopped so that the run's other sources could go on",
        )
        self._target = key
        self._reactor.callFromThread(self._service.stop_blocked, key)
        signal.pthread_kill(self._thread_id, signal.SIGUSR1)

    def interrupt(self, signum: int, frame: FrameType | None) -> None:
        """SIGUSR1 in the reactor thread: raise inside the culprit if it still runs."""
        key, self._target = self._target, None
        found = self._service.culprit(frame) if key is not None else None
        if found is not None and found[0] == key:
            raise ReactorBlocked(f"source {key} blocked the crawl process's reactor")
