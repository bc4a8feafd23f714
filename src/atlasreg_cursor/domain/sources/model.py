"""The typed watchlist: sources, rejected sources, global settings, their limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from atlasreg_cursor.domain.redaction import redact_bounded

from .crawl import CrawlOptions

DEFAULT_SOURCE_TIMEOUT = 600.0
MAX_SOURCE_TIMEOUT = 86400.0
DEFAULT_MAX_ITEMS = 50_000
MAX_ITEMS_LIMIT = 1_000_000
MAX_PAGES_LIMIT = 10_000
MAX_CONCURRENT_SOURCES = 64
MAX_PROCESSING_TIMEOUT_MINUTES = 1440.0


@attrs.frozen(kw_only=True)
class SourceConfig:
    """One watched source. ``raw`` is the source's object as configured."""

    id: str
    handler_id: str
    name: str = ""
    url_feed: str | None = None
    enabled: bool = True
    schedule: str | None = None
    player_id: str | None = None
    spider_id: str | None = None
    dag_id: str | None = None
    task_name: str | None = None
    xcom_task_id: str | None = None
    timeout_seconds: float = DEFAULT_SOURCE_TIMEOUT
    max_items: int = DEFAULT_MAX_ITEMS
    keywords: tuple[str, ...] = ()
    selectors: Mapping[str, str] | None = attrs.field(default=None, hash=False)
    api: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    csv: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    crawl: CrawlOptions | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, hash=False, eq=False, repr=False)


#: Most characters an invalid source's reason keeps.
MAX_REASON_LENGTH = 500


def _reason(text: str) -> str:
    return redact_bounded(text, MAX_REASON_LENGTH)


@attrs.frozen(kw_only=True)
class InvalidSource:
    """
    A source that failed validation, with why; it is skipped.

    ``reason`` and ``source_id`` echo the watchlist, so both are redacted
    (URL credentials hidden) and bounded when the record is made.
    """

    index: int
    source_id: str | None = attrs.field(converter=attrs.converters.optional(_reason))
    reason: str = attrs.field(converter=_reason)


@attrs.frozen(kw_only=True)
class GlobalSettings:
    """``global_settings`` of the watchlist."""

    max_concurrent_sources: int = 5
    processing_timeout_minutes: float = 30.0
    alert_on_zero_results: bool = False
    alert_recipients: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class WatchlistConfig:
    """A parsed watchlist: valid sources, rejected ones, global settings, keys not read."""

    sources: tuple[SourceConfig, ...] = ()
    invalid: tuple[InvalidSource, ...] = ()
    global_settings: GlobalSettings = GlobalSettings()
    ignored_keys: tuple[str, ...] = ()  # "<where>.<key>: why", for warnings

    def enabled_sources(self, only: frozenset[str] | None = None) -> tuple[SourceConfig, ...]:
        """Enabled sources, restricted to the ids in *only* when given."""
        return tuple(s for s in self.sources if s.enabled and (only is None or s.id in only))
