"""The TTL cache every config adapter is built on, through the ConfigSource contract.

Here its fetch function reads memory, so the cache and last-good fallback are
checked on their own, apart from any file or KV transport.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atlasreg_cursor.adapters.config_cache import CachingConfigSource
from atlasreg_cursor.domain.errors import ConfigNotFound, ConfigUnavailable
from atlasreg_cursor.ports.config import ConfigSource
from tests.contract.config_contract import ConfigContract, ConfigEnv


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
