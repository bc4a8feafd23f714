"""The watchlist config (DESIGN §2a): typed sources, validation, keyword filter."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import InvalidConfig

BUILTIN_HANDLERS = frozenset(
    {"SCRAPY_CVM_API", "SCRAPY_NEWSROOM_PLAYER", "DOWNLOAD_CSV", "AIRFLOW_DAG", "CUSTOM_SCRAPER"}
)
DEFAULT_SOURCE_TIMEOUT = 600.0
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SOURCE_KEYS = frozenset(
    {
        "id",
        "name",
        "handler_id",
        "url_feed",
        "enabled",
        "schedule",
        "player_id",
        "spider_id",
        "dag_id",
        "task_name",
        "xcom_task_id",
        "timeout_seconds",
        "keywords",
        "selectors",
        "api",
        "csv",
        "max_pages",
        "crawl",
    }
)


@attrs.frozen(kw_only=True)
class CrawlOptions:
    """
    A source's ``crawl`` block: politeness overrides for its crawl.

    ``None`` means "the setting's value" (``CRAWL_MAX_PER_HOST``,
    ``CRAWL_DOWNLOAD_DELAY``, ``CRAWL_OBEY_ROBOTS``, ``CRAWL_AUTOTHROTTLE``,
    ``CRAWL_RETRY_TIMES``, ``CRAWL_USER_AGENT``). A host shared by several
    sources gets the most polite of their values.
    """

    max_per_host: int | None = None
    download_delay: float | None = None
    obey_robots: bool | None = None
    autothrottle: bool | None = None
    retry_times: int | None = None
    user_agent: str | None = None


CRAWL_KEYS = tuple(f.name for f in attrs.fields(CrawlOptions))
MAX_PER_HOST_LIMIT = 16
MAX_DOWNLOAD_DELAY = 60.0
MAX_RETRY_TIMES = 10


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
    keywords: tuple[str, ...] = ()
    selectors: Mapping[str, str] | None = attrs.field(default=None, hash=False)
    api: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    csv: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    crawl: CrawlOptions | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, hash=False, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class InvalidSource:
    """A source that failed validation, with why; it is skipped."""

    index: int
    source_id: str | None
    reason: str


@attrs.frozen(kw_only=True)
class GlobalSettings:
    """``global_settings`` of the watchlist."""

    max_concurrent_sources: int = 5
    processing_timeout_minutes: float = 30.0
    alert_on_zero_results: bool = False
    alert_recipients: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class WatchlistConfig:
    """A parsed watchlist: valid sources, rejected ones, global settings."""

    sources: tuple[SourceConfig, ...] = ()
    invalid: tuple[InvalidSource, ...] = ()
    global_settings: GlobalSettings = GlobalSettings()

    def enabled_sources(self, only: frozenset[str] | None = None) -> tuple[SourceConfig, ...]:
        """Enabled sources, restricted to the ids in *only* when given."""
        return tuple(s for s in self.sources if s.enabled and (only is None or s.id in only))


def parse_watchlist_bytes(
    raw: bytes, *, known_handlers: Iterable[str] = BUILTIN_HANDLERS
) -> WatchlistConfig:
    """
    Parse the watchlist from JSON bytes.

    Raises:
        InvalidConfig: if the bytes are not a JSON object with a ``sources`` list.
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidConfig(f"watchlist is not UTF-8 JSON: {exc}") from None
    return parse_watchlist(data, known_handlers=known_handlers)


def parse_watchlist(
    data: object, *, known_handlers: Iterable[str] = BUILTIN_HANDLERS
) -> WatchlistConfig:
    """
    Parse the watchlist from JSON data; bad sources are reported, not fatal.

    Raises:
        InvalidConfig: if *data* is not an object with a ``sources`` list.
    """
    if not isinstance(data, dict):
        raise InvalidConfig(f"watchlist must be a JSON object, got {type(data).__name__}")
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list):
        raise InvalidConfig("watchlist must have a 'sources' list")
    handlers = frozenset(known_handlers)
    sources: list[SourceConfig] = []
    invalid: list[InvalidSource] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_sources):
        try:
            source = _parse_source(item, handlers)
        except ValueError as exc:
            sid = item.get("id") if isinstance(item, dict) else None
            invalid.append(InvalidSource(index=index, source_id=_str_or_none(sid), reason=str(exc)))
            continue
        if source.id in seen:
            invalid.append(
                InvalidSource(
                    index=index, source_id=source.id, reason=f"duplicate id {source.id!r}"
                )
            )
            continue
        seen.add(source.id)
        sources.append(source)
    return WatchlistConfig(
        sources=tuple(sources),
        invalid=tuple(invalid),
        global_settings=_parse_globals(data.get("global_settings")),
    )


def _parse_source(item: object, handlers: frozenset[str]) -> SourceConfig:
    if not isinstance(item, dict):
        raise ValueError(f"source must be an object, got {type(item).__name__}")
    sid = item.get("id")
    if not isinstance(sid, str) or not _ID_RE.match(sid):
        raise ValueError("missing or malformed 'id' (letters, digits, '_', '-', '.')")
    handler = item.get("handler_id")
    if not isinstance(handler, str) or handler not in handlers:
        raise ValueError(f"unknown handler_id {handler!r}; known: {', '.join(sorted(handlers))}")
    url = item.get("url_feed")
    if url is not None and (not isinstance(url, str) or not _is_http_url(url)):
        raise ValueError(f"url_feed must be an http(s) URL, got {url!r}")
    if handler in {"SCRAPY_CVM_API", "SCRAPY_NEWSROOM_PLAYER", "DOWNLOAD_CSV"} and url is None:
        raise ValueError(f"handler {handler} needs a url_feed")
    if handler == "AIRFLOW_DAG" and not _opt_str(item, "dag_id"):
        raise ValueError("handler AIRFLOW_DAG needs a dag_id")
    timeout = item.get("timeout_seconds", DEFAULT_SOURCE_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= 86400
    ):
        raise ValueError(f"timeout_seconds must be a number in (0, 86400], got {timeout!r}")
    keywords = item.get("keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords):
        raise ValueError("keywords must be a list of non-empty strings")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be true or false, got {enabled!r}")
    selectors = _opt_mapping(item, "selectors")
    if selectors is not None and not all(isinstance(v, str) for v in selectors.values()):
        raise ValueError("selectors must map names to CSS selector strings")
    return SourceConfig(
        id=sid,
        handler_id=handler,
        name=_opt_str(item, "name") or "",
        url_feed=url,
        enabled=enabled,
        schedule=_opt_str(item, "schedule"),
        player_id=_opt_str(item, "player_id"),
        spider_id=_opt_str(item, "spider_id"),
        dag_id=_opt_str(item, "dag_id"),
        task_name=_opt_str(item, "task_name"),
        xcom_task_id=_opt_str(item, "xcom_task_id"),
        timeout_seconds=float(timeout),
        keywords=tuple(keywords),
        selectors=selectors,
        api=_opt_mapping(item, "api"),
        csv=_opt_mapping(item, "csv"),
        crawl=parse_crawl_options(item.get("crawl")),
        raw=item,
    )


def parse_crawl_options(value: object) -> CrawlOptions | None:
    """
    Validate a source's ``crawl`` block (absent or ``null``: no overrides).

    Raises:
        ValueError: naming the key that is wrong and what it accepts.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"crawl must be an object, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in CRAWL_KEYS)
    if unknown:
        raise ValueError(
            f"crawl has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(CRAWL_KEYS)}"
        )
    return CrawlOptions(
        max_per_host=_crawl_int(value, "max_per_host", 1, MAX_PER_HOST_LIMIT),
        download_delay=_crawl_seconds(value, "download_delay"),
        obey_robots=_crawl_bool(value, "obey_robots"),
        autothrottle=_crawl_bool(value, "autothrottle"),
        retry_times=_crawl_int(value, "retry_times", 0, MAX_RETRY_TIMES),
        user_agent=_crawl_user_agent(value),
    )


def _crawl_int(block: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    number = block.get(key)
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise ValueError(f"crawl.{key} must be a whole number from {low} to {high}, got {number!r}")
    return number


def _crawl_seconds(block: Mapping[str, Any], key: str) -> float | None:
    number = block.get(key)
    if number is None:
        return None
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not 0 <= number <= MAX_DOWNLOAD_DELAY
    ):
        raise ValueError(
            f"crawl.{key} must be a number of seconds from 0 to {MAX_DOWNLOAD_DELAY:g}, "
            f"got {number!r}"
        )
    return float(number)


def _crawl_bool(block: Mapping[str, Any], key: str) -> bool | None:
    flag = block.get(key)
    if flag is None or isinstance(flag, bool):
        return flag
    raise ValueError(f"crawl.{key} must be true or false, got {flag!r}")


def _crawl_user_agent(block: Mapping[str, Any]) -> str | None:
    agent = block.get("user_agent")
    if agent is None:
        return None
    if (
        not isinstance(agent, str)
        or not agent.strip()
        or len(agent) > 300
        or any(not 32 <= ord(c) < 127 for c in agent)
    ):
        raise ValueError("crawl.user_agent must be one line of printable ASCII (at most 300)")
    return agent.strip()


def _parse_globals(data: object) -> GlobalSettings:
    if not isinstance(data, dict):
        return GlobalSettings()
    defaults = GlobalSettings()
    mcs = data.get("max_concurrent_sources", defaults.max_concurrent_sources)
    if isinstance(mcs, bool) or not isinstance(mcs, int) or mcs < 1:
        mcs = defaults.max_concurrent_sources
    ptm = data.get("processing_timeout_minutes", defaults.processing_timeout_minutes)
    if isinstance(ptm, bool) or not isinstance(ptm, int | float) or ptm <= 0:
        ptm = defaults.processing_timeout_minutes
    recipients = data.get("alert_recipients") or []
    if not isinstance(recipients, list):
        recipients = []
    return GlobalSettings(
        max_concurrent_sources=min(mcs, 64),
        processing_timeout_minutes=float(ptm),
        alert_on_zero_results=bool(data.get("alert_on_zero_results", False)),
        alert_recipients=tuple(r for r in recipients if isinstance(r, str)),
    )


def _opt_str(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _opt_mapping(item: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return value


def _is_http_url(url: str) -> bool:
    return bool(re.match(r"^https?://[^\s/?#]+([/?#]\S*)?$", url, re.IGNORECASE))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def fold_text(text: str) -> str:
    """Lower-case *text* and strip accents, for keyword matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def matches_keywords(keywords: Iterable[str], *texts: str | None) -> bool:
    """
    Tell whether any keyword occurs in any text (case- and accent-insensitive).

    No keywords means everything matches.
    """
    folded = [fold_text(k) for k in keywords]
    if not folded:
        return True
    haystack = " ".join(fold_text(t) for t in texts if t)
    return any(k in haystack for k in folded)


def unknown_keys(source: SourceConfig) -> frozenset[str]:
    """Keys of the source's object the Cursor does not use (kept, ignored)."""
    return frozenset(source.raw) - _SOURCE_KEYS
