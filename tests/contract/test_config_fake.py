"""The in-memory fake through the ConfigSource contract (it stands in for adapters in unit tests)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from atlasreg_cursor.ports.config import ConfigSource
from tests.contract.config_contract import ConfigContract, ConfigEnv
from tests.fakes import FakeConfigSource


class FakeConfigEnv:
    """Memory as the origin: ``raw`` bytes, or nothing; "unavailable" is a flag."""

    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.unavailable = False
        self._sources: list[FakeConfigSource] = []

    def write(self, raw: bytes) -> None:
        self.raw = raw
        self._sync()

    def delete(self) -> None:
        self.raw = None
        self._sync()

    def make_unavailable(self) -> None:
        self.unavailable = True
        self._sync()

    def make_available(self) -> None:
        self.unavailable = False
        self._sync()

    def source(self, *, ttl_seconds: float, clock: Callable[[], float]) -> ConfigSource:
        fake = FakeConfigSource(ttl_seconds=ttl_seconds, clock=clock)
        self._sources.append(fake)
        self._sync()
        return fake

    def _sync(self) -> None:
        for fake in self._sources:
            fake.raw, fake.unavailable = self.raw, self.unavailable


class TestFakeConfigSource(ConfigContract):
    """The fake caches and falls back like the real adapters."""

    @pytest.fixture
    def config_env(self) -> ConfigEnv:
        """An empty in-memory origin."""
        return FakeConfigEnv()
