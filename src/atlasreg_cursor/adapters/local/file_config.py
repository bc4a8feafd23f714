"""ConfigSource reading the watchlist from a local JSON file.

Used by the ``local`` and ``standalone`` modes. Caching, the last-good
fallback and staleness reporting come from
:class:`~atlasreg_cursor.adapters.config_cache.CachingConfigSource`; this
module only fetches the bytes. A missing file is ``ConfigNotFound`` naming
the path; a file that cannot be read is ``ConfigUnavailable``.

Settings read (by the composition root): ``WATCHLIST_FILE`` (default
``config/news_watchlist_config.json`` under ``CURSOR_HOME``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from atlasreg_cursor.adapters.config_cache import DEFAULT_TTL_SECONDS, CachingConfigSource
from atlasreg_cursor.domain.errors import ConfigNotFound, ConfigUnavailable
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS, WatchlistConfig

log = structlog.get_logger()


class FileConfigSource:
    """
    The watchlist from a JSON file, cached for *ttl_seconds*.

    Args:
        path: the watchlist file.
        ttl_seconds: how long a read config is served without rereading.
        known_handlers: handler ids that make a source valid.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        path: Path,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        known_handlers: Iterable[str] = BUILTIN_HANDLERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._cache = CachingConfigSource(
            self._fetch,
            origin=str(self.path),
            ttl_seconds=ttl_seconds,
            known_handlers=known_handlers,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"FileConfigSource(path={str(self.path)!r})"

    def _fetch(self) -> bytes:
        """
        Read the file.

        Raises:
            ConfigNotFound: the file does not exist.
            ConfigUnavailable: the file exists but cannot be read.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise ConfigNotFound(f"watchlist file {self.path} does not exist") from None
        except OSError as exc:
            raise ConfigUnavailable(
                f"cannot read watchlist file {self.path}: {exc.strerror or exc}"
            ) from exc
        log.debug("config.fetched", origin=str(self.path), size=len(raw))
        return raw

    def load(self) -> WatchlistConfig:
        """
        Return the watchlist (cached, or the last good one after a failure).

        Raises:
            ConfigNotFound: the file does not exist and nothing is cached.
            ConfigUnavailable: the file cannot be read and nothing is cached.
            InvalidConfig: the file is not a usable watchlist and nothing is cached.
        """
        return self._cache.load()

    def probe(self) -> WatchlistConfig:
        """
        Fetch and parse the watchlist from its origin, bypassing the cache (readiness).

        Raises:
            ConfigError: the origin cannot be read.
            InvalidConfig: what it holds is not a usable watchlist.
        """
        return self._cache.probe()

    def invalidate(self) -> None:
        """Make the next ``load`` reread the file."""
        self._cache.invalidate()
