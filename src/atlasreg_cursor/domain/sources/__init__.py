"""The watchlist config (architecture §2a): typed sources, validation, keyword filter.

The watchlist is untrusted input (in cloudflare mode it is changed remotely,
in KV): every number must be finite and in its range (``NaN``, ``Infinity``,
``1e400`` or a huge integer anywhere in a source rejects that source, in
``global_settings`` the whole document, naming the field), every id pattern
must match whole, and a ``url_feed`` must be a plain http(s) URL (no
backslash, user-info, whitespace or control characters).

Modules: :mod:`.model` (the typed watchlist and its limits),
:mod:`.handlers` (the built-in handlers and what they need),
:mod:`.crawl` (a source's ``crawl`` block), :mod:`.watchlist` (parsing and
validation), :mod:`.keywords` (keyword matching).
"""

from ._fields import MAX_ABS_INT, NonFinite
from .crawl import (
    CRAWL_KEYS,
    MAX_DOWNLOAD_DELAY,
    MAX_PER_HOST_LIMIT,
    MAX_RETRY_TIMES,
    CrawlOptions,
    parse_crawl_options,
)
from .handlers import (
    AIRFLOW_ID_RULE,
    BUILTIN_HANDLERS,
    DAG_HANDLER,
    DAG_ID_RE,
    URL_FEED_HANDLERS,
    is_airflow_id,
)
from .keywords import fold_text, matches_keywords
from .model import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_SOURCE_TIMEOUT,
    MAX_CONCURRENT_SOURCES,
    MAX_ITEMS_LIMIT,
    MAX_PAGES_LIMIT,
    MAX_PROCESSING_TIMEOUT_MINUTES,
    MAX_SOURCE_TIMEOUT,
    GlobalSettings,
    InvalidSource,
    SourceConfig,
    WatchlistConfig,
)
from .watchlist import parse_watchlist, parse_watchlist_bytes, unknown_keys

__all__ = [
    "AIRFLOW_ID_RULE",
    "BUILTIN_HANDLERS",
    "CRAWL_KEYS",
    "DAG_HANDLER",
    "DAG_ID_RE",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_SOURCE_TIMEOUT",
    "MAX_ABS_INT",
    "MAX_CONCURRENT_SOURCES",
    "MAX_DOWNLOAD_DELAY",
    "MAX_ITEMS_LIMIT",
    "MAX_PAGES_LIMIT",
    "MAX_PER_HOST_LIMIT",
    "MAX_PROCESSING_TIMEOUT_MINUTES",
    "MAX_RETRY_TIMES",
    "MAX_SOURCE_TIMEOUT",
    "URL_FEED_HANDLERS",
    "CrawlOptions",
    "GlobalSettings",
    "InvalidSource",
    "NonFinite",
    "SourceConfig",
    "WatchlistConfig",
    "fold_text",
    "is_airflow_id",
    "matches_keywords",
    "parse_crawl_options",
    "parse_watchlist",
    "parse_watchlist_bytes",
    "unknown_keys",
]
