"""TTL cache with last-good fallback, shared by every ConfigSource adapter.

An adapter supplies ``fetch() -> bytes`` (raising ``ConfigUnavailable`` or
``ConfigNotFound``); this wraps it with the architecture §6 policy: cached for
``ttl_seconds`` (300, like the seed); when a fetch fails, or what it returns
is unusable, the last good config is served and its staleness is logged and
exported as the ``cursor_config_stale_seconds`` gauge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import structlog

from atlasreg_cursor.domain.errors import ConfigError, InvalidConfig
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS, WatchlistConfig, parse_watchlist_bytes

from . import metrics

log = structlog.get_logger()

DEFAULT_TTL_SECONDS = 300.0


class CachingConfigSource:
    """
    A ``ConfigSource`` built from a fetch function.

    Args:
        fetch: returns the raw watchlist bytes; raises ``ConfigError`` subclasses.
        origin: where the config comes from, for logs (a path or a KV key).
        ttl_seconds: how long a fetched config is served without refetching.
        known_handlers: handler ids that make a source valid.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        fetch: Callable[[], bytes],
        *,
        origin: str,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        known_handlers: Iterable[str] = BUILTIN_HANDLERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.origin = origin
        self._ttl = ttl_seconds
        self._handlers = frozenset(known_handlers)
        self._clock = clock
        self._lock = threading.Lock()
        self._good: WatchlistConfig | None = None
        self._good_at: float | None = None  # when the last good config was fetched
        self._expired = False  # ``invalidate``: fetch at the next load, whatever the TTL

    def load(self) -> WatchlistConfig:
        """Return the watchlist (cached, or the last good one on failure)."""
        with self._lock:
            now = self._clock()
            if (
                self._good is not None
                and self._good_at is not None
                and not self._expired
                and now - self._good_at < self._ttl
            ):
                return self._good
            try:
                config = parse_watchlist_bytes(self._fetch(), known_handlers=self._handlers)
            except ConfigError as exc:
                return self._fallback(exc, now)
            except InvalidConfig as exc:
                return self._fallback(exc, now)
            self._good, self._good_at, self._expired = config, now, False
            metrics.CONFIG_STALE_SECONDS.set(0)
            for bad in config.invalid:
                log.warning(
                    "config.source_invalid",
                    source_id=bad.source_id,
                    index=bad.index,
                    reason=bad.reason,
                    origin=self.origin,
                )
            return config

    def probe(self) -> WatchlistConfig:
        """
        Fetch and parse from the origin now, whatever the cache holds; return it.

        A good result refreshes the cache; a failure leaves it alone (``load``
        still serves the last good config), sets ``cursor_config_stale_seconds``
        to the age of that config (so it rises between runs while the origin
        is down) and is raised, for readiness.

        Raises:
            ConfigError: the origin cannot be read.
            InvalidConfig: it holds no usable watchlist.
        """
        try:
            config = parse_watchlist_bytes(self._fetch(), known_handlers=self._handlers)
        except (ConfigError, InvalidConfig):
            with self._lock:
                if self._good_at is not None:
                    metrics.CONFIG_STALE_SECONDS.set(self._clock() - self._good_at)
            raise
        with self._lock:
            self._good, self._good_at, self._expired = config, self._clock(), False
        metrics.CONFIG_STALE_SECONDS.set(0)
        return config

    def invalidate(self) -> None:
        """Make the next ``load`` fetch (the last good config stays the fallback)."""
        with self._lock:
            self._expired = True

    def _fallback(self, exc: Exception, now: float) -> WatchlistConfig:
        if self._good is None or self._good_at is None:
            raise exc
        stale = now - self._good_at
        metrics.CONFIG_STALE_SECONDS.set(stale)
        log.warning(
            "config.stale",
            origin=self.origin,
            error=str(exc),
            error_type=type(exc).__name__,
            stale_seconds=round(stale, 1),
        )
        return self._good
