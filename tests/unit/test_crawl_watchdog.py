"""The crawl process's reactor-lag watchdog, driven by hand (no reactor, no thread)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from atlasreg_cursor.adapters.local.spider_runner.watchdog import ReactorBlocked, ReactorWatchdog


class Service:
    """Names *key* as the culprit of any stall (``None``: no one); records what it is told."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.failed: list[tuple[str, str]] = []

    def culprit(self, frame: FrameType | None) -> tuple[str, str] | None:
        return (self.key, "BlockerSpider.__init__ (blocker.py:21)") if self.key else None

    def fail_blocked(self, key: str, message: str) -> None:
        self.failed.append((key, message))

    def stop_blocked(self, key: str) -> None:
        raise AssertionError("only scheduled on the reactor, never called from the watchdog")


class Reactor:
    """Records what is scheduled from the watchdog's thread."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callFromThread(self, call: Callable[..., Any], *args: Any) -> None:
        self.scheduled.append((call, args))


@contextlib.contextmanager
def watching(service: Service, kills: list[int]) -> Iterator[tuple[ReactorWatchdog, Reactor]]:
    """A watchdog over a fake reactor, its SIGUSR1 handler installed for the block."""
    reactor = Reactor()
    dog = ReactorWatchdog(reactor, service, lag_seconds=2.0, kill=lambda: kills.append(1))
    previous = signal.signal(signal.SIGUSR1, dog.interrupt)
    try:
        yield dog, reactor
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_named_culprit_is_failed_interrupted_and_then_the_process_killed() -> None:
    """Past the lag the culprit is reported (once), stopped on the reactor and interrupted
    where it runs; if the reactor still does not turn, the process is killed."""
    service, kills = Service("bloqueio#3"), []
    with watching(service, kills) as (dog, reactor):
        start = time.monotonic()
        dog.check(start + 1.0)
        with pytest.raises(ReactorBlocked):
            dog.check(start + 2.5)
        dog.check(start + 3.5)
        before_kill = list(kills)
        dog.check(start + 4.6)

        assert [("bloqueio#3",)] == [args for _, args in reactor.scheduled]
        assert 1 == len(service.failed)
        key, message = service.failed[0]
        assert "bloqueio#3" == key
        assert "blocked the crawl process for 2.5 s" in message
        assert "BlockerSpider.__init__ (blocker.py:21)" in message
        assert ([], [1]) == (before_kill, kills)


def test_a_stall_nobody_can_be_named_for_is_left_to_the_parent() -> None:
    """No project code on the stack: nothing is failed, interrupted or killed."""
    service, kills = Service(None), []
    with watching(service, kills) as (dog, reactor):
        start = time.monotonic()
        dog.check(start + 3.0)
        dog.check(start + 9.0)

        assert ([], [], []) == (service.failed, reactor.scheduled, kills)
