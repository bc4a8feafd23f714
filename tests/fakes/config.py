"""A ConfigSource that serves a watchlist given as data."""

from __future__ import annotations

from typing import Any

from atlasreg_cursor.domain.errors import ConfigUnavailable
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS, WatchlistConfig, parse_watchlist


class FakeConfigSource:
    """Parses *data* on every load; ``unavailable`` makes loads fail."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.unavailable = False
        self.loads = 0

    def load(self) -> WatchlistConfig:
        self.loads += 1
        if self.unavailable:
            raise ConfigUnavailable("config is down (fake)")
        return parse_watchlist(self.data, known_handlers=BUILTIN_HANDLERS)
