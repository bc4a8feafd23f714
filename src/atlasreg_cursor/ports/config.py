"""The config port (architecture §6 ConfigSource)."""

from __future__ import annotations

from typing import Protocol

from atlasreg_cursor.domain.sources import WatchlistConfig


class ConfigSource(Protocol):
    """
    Protocol: the watchlist, cached with a TTL and a last-good fallback.

    Invalid sources are reported in ``WatchlistConfig.invalid``, never fatal.
    """

    def load(self) -> WatchlistConfig:
        """
        Return the current watchlist.

        Raises:
            ConfigUnavailable: fetch failed and no good copy is cached.
            ConfigNotFound: the file or key does not exist and nothing is cached.
            InvalidConfig: the document is unusable and nothing is cached.
        """
        ...
