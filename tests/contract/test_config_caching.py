"""The TTL cache every config adapter is built on, through the ConfigSource contract.

Here its fetch function reads memory, so the cache and last-good fallback are
checked on their own, apart from any file or KV transport.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from atlasreg_cursor.adapters.config_cache import CachingConfigSource
from atlasreg_cursor.domain.errors import ConfigNotFound, ConfigUnavailable
from atlasreg_cursor.ports.config import ConfigSource
from tests.contract.config_contract import (
    ConfigContract,
    ConfigEnv,
    ManualClock,
    ids,
    with_ids,
)


class MemoryOrigin:
    """Raw watchlist bytes in memory, or nothing; "unavailable" is a flag."""

    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.unavailable = False

    def write(self, raw: bytes) -> None:
        self.raw = raw

    def delete(self) -> None:
        self.raw = None

    def make_unavailable(self) -> None:
        self.unavailable = True

    def make_available(self) -> None:
        self.unavailable = False

    def fetch(self) -> bytes:
        """What a transport would return, or its typed failure."""
        if self.unavailable:
            raise ConfigUnavailable("the origin is down (memory)")
        if self.raw is None:
            raise ConfigNotFound("no watchlist (memory)")
        return self.raw

    def source(self, *, ttl_seconds: float, clock: Callable[[], float]) -> ConfigSource:
        return CachingConfigSource(
            self.fetch, origin="memory", ttl_seconds=ttl_seconds, clock=clock
        )


class TestCachingConfigSource(ConfigContract):
    """The cache alone honours the whole contract."""

    @pytest.fixture
    def config_env(self) -> ConfigEnv:
        """An empty in-memory origin."""
        return MemoryOrigin()


def _stale_seconds() -> float | None:
    return REGISTRY.get_sample_value("cursor_config_stale_seconds")


def test_staleness_rises_with_failed_probes_between_runs() -> None:
    """A good probe, then the origin down: each failed probe exports the age (2 h → 7200)."""
    origin, clock = MemoryOrigin(), ManualClock()
    origin.write(with_ids("a"))
    cache = CachingConfigSource(origin.fetch, origin="memory", ttl_seconds=300, clock=clock)
    cache.probe()
    fresh = _stale_seconds()
    origin.make_unavailable()
    ages = []
    for hours in (2, 5):
        clock.now = 1000.0 + hours * 3600
        with pytest.raises(ConfigUnavailable):
            cache.probe()
        ages.append(_stale_seconds())
    origin.make_available()
    cache.probe()

    assert (0.0, [7200.0, 18000.0], 0.0) == (fresh, ages, _stale_seconds())


def test_a_failed_probe_with_nothing_known_leaves_staleness_alone() -> None:
    """No good config yet: nothing is stale (the error is raised, readiness reports it)."""
    origin, clock = MemoryOrigin(), ManualClock()
    cache = CachingConfigSource(origin.fetch, origin="memory", ttl_seconds=300, clock=clock)
    other = CachingConfigSource(lambda: with_ids("b"), origin="other", clock=clock)
    other.probe()  # the gauge is process-wide: start from 0

    with pytest.raises(ConfigNotFound):
        cache.probe()

    assert 0.0 == _stale_seconds()


def test_after_invalidate_a_failed_fetch_still_serves_the_last_good() -> None:
    """``invalidate`` (a push) makes the next load fetch, but not lose the fallback."""
    origin, clock = MemoryOrigin(), ManualClock()
    origin.write(with_ids("a"))
    cache = CachingConfigSource(origin.fetch, origin="memory", ttl_seconds=300, clock=clock)
    cache.load()
    origin.write(with_ids("b"))
    cache.invalidate()
    fetched = ids(cache)
    cache.invalidate()
    origin.make_unavailable()
    clock.advance(30)

    assert (["b"], ["b"]) == (fetched, ids(cache))
    assert 30.0 == _stale_seconds()
