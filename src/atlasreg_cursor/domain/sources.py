"""The watchlist config (DESIGN §2a): typed sources, validation, keyword filter.

The watchlist is untrusted input (in cloudflare mode it is changed remotely,
in KV): every number must be finite and in its range (``NaN``, ``Infinity``,
``1e400`` or a huge integer anywhere in a source rejects that source, in
``global_settings`` the whole document, naming the field), every id pattern
must match whole, and a ``url_feed`` must be a plain http(s) URL (no
backslash, user-info, whitespace or control characters).
"""

from __future__ import annotations

import json
import math
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
MAX_SOURCE_TIMEOUT = 86400.0
DEFAULT_MAX_ITEMS = 50_000
MAX_ITEMS_LIMIT = 1_000_000
MAX_PAGES_LIMIT = 10_000
MAX_CONCURRENT_SOURCES = 64
MAX_PROCESSING_TIMEOUT_MINUTES = 1440.0
#: Integers beyond a signed 64-bit range are refused anywhere in a source.
MAX_ABS_INT = 2**63 - 1
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Airflow's ``KEY_REGEX`` (``airflow.utils.helpers``) and ``ID_LEN`` (250).
DAG_ID_RE = re.compile(r"[\w.-]{1,250}")
_HTTP_URL_RE = re.compile(r"https?://[^\s/?#\\@]+(?:[/?#][^\s\\]*)?", re.IGNORECASE)
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
        "max_items",
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
    max_items: int = DEFAULT_MAX_ITEMS
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
        data = json.loads(raw.decode("utf-8"), parse_constant=_non_finite, parse_float=_json_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidConfig(f"watchlist is not UTF-8 JSON: {str(exc)[:200]}") from None
    return parse_watchlist(data, known_handlers=known_handlers)


class NonFinite:
    """A JSON number that is not a finite float (``NaN``, ``Infinity``, ``1e400``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _non_finite(text: str) -> NonFinite:
    return NonFinite(text)


def _json_float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text[:40])


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
    bad_number = _bad_number(data.get("global_settings"), "global_settings")
    if bad_number:
        raise InvalidConfig(bad_number)
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


def _bad_number(value: object, path: str, depth: int = 0) -> str | None:
    """The first number under *value* that is not finite or is out of range, described."""
    if isinstance(value, NonFinite) or (isinstance(value, float) and not math.isfinite(value)):
        return f"{path}: {value!r} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ABS_INT:
        return f"{path}: integer with {len(str(abs(value)))} digits is out of range"
    if depth > 64:
        return f"{path}: nested too deeply"
    if isinstance(value, dict):
        for key, item in value.items():
            found = _bad_number(item, f"{path}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _bad_number(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


def _number(
    item: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float,
    high: float,
    integer: bool = False,
    low_open: bool = False,
    where: str = "",
) -> float:
    """Read a numeric field in ``[low, high]`` (``(low, high]`` with *low_open*)."""
    value = item.get(key, default)
    name = f"{where}{key}"
    kind = "an integer" if integer else "a number"
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be {kind} in {interval}, got {_show(value)}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be {kind} in {interval}, got {_show(value)}")
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        raise ValueError(f"{name} must be {kind} in {interval}, got {_show(value)}")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _parse_source(item: object, handlers: frozenset[str]) -> SourceConfig:
    if not isinstance(item, dict):
        raise ValueError(f"source must be an object, got {type(item).__name__}")
    sid = item.get("id")
    if not isinstance(sid, str) or not _ID_RE.fullmatch(sid):
        raise ValueError("missing or malformed 'id' (letters, digits, '_', '-', '.')")
    bad_number = _bad_number(item, "source")
    if bad_number:
        raise ValueError(bad_number.removeprefix("source."))
    handler = item.get("handler_id")
    if not isinstance(handler, str) or handler not in handlers:
        raise ValueError(f"unknown handler_id {handler!r}; known: {', '.join(sorted(handlers))}")
    url = item.get("url_feed")
    if url is not None and (not isinstance(url, str) or not _is_http_url(url)):
        raise ValueError(
            "url_feed must be a plain http(s) URL (no backslash, user-info, whitespace "
            "or control characters)"
        )
    if handler in {"SCRAPY_CVM_API", "SCRAPY_NEWSROOM_PLAYER", "DOWNLOAD_CSV"} and url is None:
        raise ValueError(f"handler {handler} needs a url_feed")
    if handler == "AIRFLOW_DAG" and not _opt_str(item, "dag_id"):
        raise ValueError("handler AIRFLOW_DAG needs a dag_id")
    dag_id = _opt_str(item, "dag_id")
    if dag_id is not None and not DAG_ID_RE.fullmatch(dag_id):
        raise ValueError(
            "dag_id must be 1-250 letters, digits, '_', '.' or '-' (Airflow's id pattern)"
        )
    timeout = _number(
        item,
        "timeout_seconds",
        DEFAULT_SOURCE_TIMEOUT,
        low=0,
        high=MAX_SOURCE_TIMEOUT,
        low_open=True,
    )
    max_items = _number(
        item, "max_items", DEFAULT_MAX_ITEMS, low=1, high=MAX_ITEMS_LIMIT, integer=True
    )
    if item.get("max_pages") is not None:
        _number(item, "max_pages", 1, low=1, high=MAX_PAGES_LIMIT, integer=True)
    keywords = item.get("keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords):
        raise ValueError("keywords must be a list of non-empty strings")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be true or false, got {enabled!r}")
    selectors = _opt_mapping(item, "selectors")
    if selectors is not None and not all(isinstance(v, str) for v in selectors.values()):
        raise ValueError("selectors must map names to CSS selector strings")
    _check_schedule(item)
    return SourceConfig(
        id=sid,
        handler_id=handler,
        name=_opt_str(item, "name") or "",
        url_feed=url,
        enabled=enabled,
        schedule=_opt_str(item, "schedule"),
        player_id=_opt_str(item, "player_id"),
        spider_id=_opt_str(item, "spider_id"),
        dag_id=dag_id,
        task_name=_opt_str(item, "task_name"),
        xcom_task_id=_opt_str(item, "xcom_task_id"),
        timeout_seconds=float(timeout),
        max_items=int(max_items),
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
    """
    Read ``global_settings``; a number out of its range rejects the document.

    Raises:
        InvalidConfig: naming the field.
    """
    if not isinstance(data, dict):
        return GlobalSettings()
    defaults = GlobalSettings()
    try:
        mcs = _number(
            data,
            "max_concurrent_sources",
            defaults.max_concurrent_sources,
            low=1,
            high=MAX_CONCURRENT_SOURCES,
            integer=True,
            where="global_settings.",
        )
        ptm = _number(
            data,
            "processing_timeout_minutes",
            defaults.processing_timeout_minutes,
            low=0,
            high=MAX_PROCESSING_TIMEOUT_MINUTES,
            low_open=True,
            where="global_settings.",
        )
    except ValueError as exc:
        raise InvalidConfig(str(exc)) from None
    alert_on_zero, recipients = _parse_alerts(data)
    return GlobalSettings(
        max_concurrent_sources=int(mcs),
        processing_timeout_minutes=float(ptm),
        alert_on_zero_results=alert_on_zero,
        alert_recipients=recipients,
    )


def _parse_alerts(data: Mapping[str, Any]) -> tuple[bool, tuple[str, ...]]:
    """
    ``alert_on_zero_results`` and ``alert_recipients`` (see :mod:`.alerts`).

    Raises:
        InvalidConfig: either has the wrong type (the watchlist is refused, not guessed at).
    """
    flag = data.get("alert_on_zero_results", False)
    if not isinstance(flag, bool):
        raise InvalidConfig(
            f"global_settings.alert_on_zero_results must be true or false, got {flag!r}"
        )
    recipients = data.get("alert_recipients", [])
    if recipients is None:
        recipients = []
    if not isinstance(recipients, list) or not all(
        isinstance(r, str) and r.strip() for r in recipients
    ):
        raise InvalidConfig(
            "global_settings.alert_recipients must be a list of addresses (strings), "
            f"got {recipients!r}"[:200]
        )
    return flag, tuple(r.strip() for r in recipients)


def _check_schedule(item: Mapping[str, Any]) -> None:
    """A source's own ``schedule`` must be a 5-field cron expression (DESIGN §2a)."""
    from .errors import InvalidSchedule
    from .schedule import parse_cron

    value = _opt_str(item, "schedule")
    if value is None:
        return
    try:
        parse_cron(value)
    except InvalidSchedule as exc:
        raise ValueError(f"schedule: {exc}") from None


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
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        return False
    return _HTTP_URL_RE.fullmatch(url) is not None


def _str_or_none(value: object) -> str | None:
    """An invalid source's id for reports: as is when well-formed, else its short repr."""
    if not isinstance(value, str):
        return None
    return value if _ID_RE.fullmatch(value) else _show(value)


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
