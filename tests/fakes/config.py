"""A ConfigSource whose origin is memory, behind the adapters' shared cache."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from atlasreg_cursor.adapters.config_cache import CachingConfigSource
from atlasreg_cursor.domain.errors import ConfigNotFound, ConfigUnavailable
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS, WatchlistConfig


class FakeConfigSource:
    """
    Serves *data* (a watchlist as Python data) or *raw* bytes.

    ``unavailable`` makes fetches fail transiently (the last good config is
    served, as by every adapter); ``data = None`` and ``raw = None`` make the
    origin empty. ``loads`` counts calls. With the default TTL of 0 every load
    fetches again, so a test may change ``data`` between loads.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        raw: bytes | None = None,
        ttl_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data = data
        self.raw = raw
        self.unavailable = False
        self.loads = 0
        self._cache = CachingConfigSource(
            self._fetch,
            origin="memory",
            ttl_seconds=ttl_seconds,
            known_handlers=BUILTIN_HANDLERS,
            clock=clock,
        )

    def load(self) -> WatchlistConfig:
        self.loads += 1
        return self._cache.load()

    def _fetch(self) -> bytes:
        if self.unavailable:
            raise ConfigUnavailable("config is down (fake)")
        if self.raw is not None:
            return self.raw
        if self.data is None:
            raise ConfigNotFound("no watchlist in memory (fake)")
        return json.dumps(self.data).encode("utf-8")
