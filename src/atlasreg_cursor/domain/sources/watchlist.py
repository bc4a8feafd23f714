"""Parsing the watchlist (architecture §2a): JSON bytes to a typed, validated watchlist.

The watchlist is untrusted input (in cloudflare mode it is changed remotely,
in KV): every number must be finite and in its range (``NaN``, ``Infinity``,
``1e400`` or a huge integer anywhere in a source rejects that source, in
``global_settings`` the whole document, naming the field), every id pattern
must match whole (a ``dag_id`` or ``xcom_task_id`` Airflow's, and not only
dots: ``..`` would be a dot segment in Airflow's API paths), and a
``url_feed`` must be a plain http(s) URL (no backslash, user-info,
whitespace or control characters).

Keys the Cursor does not read are kept and ignored (the Worker side may add
fields), but listed in ``WatchlistConfig.ignored_keys`` with a hint, so a
misspelt field is reported instead of silently doing nothing.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from atlasreg_cursor.domain.cron import parse_cron
from atlasreg_cursor.domain.errors import InvalidConfig, InvalidSchedule

from ._fields import (
    ID_RE,
    first_bad_number,
    is_http_url,
    json_float,
    non_finite,
    opt_mapping,
    opt_str,
    read_number,
    show,
)
from .crawl import parse_crawl_options
from .handlers import (
    AIRFLOW_ID_RULE,
    BUILTIN_HANDLERS,
    DAG_HANDLER,
    URL_FEED_HANDLERS,
    is_airflow_id,
)
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
_GLOBAL_KEYS = frozenset(
    {
        "max_concurrent_sources",
        "processing_timeout_minutes",
        "alert_on_zero_results",
        "alert_recipients",
    }
)
_TOP_KEYS = frozenset({"sources", "global_settings"})


def parse_watchlist_bytes(
    raw: bytes, *, known_handlers: Iterable[str] = BUILTIN_HANDLERS
) -> WatchlistConfig:
    """
    Parse the watchlist from JSON bytes.

    Raises:
        InvalidConfig: if the bytes are not a JSON object with a ``sources`` list.
    """
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=non_finite, parse_float=json_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidConfig(f"watchlist is not UTF-8 JSON: {str(exc)[:200]}") from None
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
    bad_number = first_bad_number(data.get("global_settings"), "global_settings")
    if bad_number:
        raise InvalidConfig(bad_number)
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list):
        raise InvalidConfig("watchlist must have a 'sources' list")
    handlers = frozenset(known_handlers)
    sources: list[SourceConfig] = []
    invalid: list[InvalidSource] = []
    ignored = [f"{key}: {_hint(key, _TOP_KEYS)}" for key in sorted(frozenset(data) - _TOP_KEYS)]
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
        ignored += [
            f"sources[{index}].{key} ({source.id}): {_hint(key, _SOURCE_KEYS, _GLOBAL_KEYS)}"
            for key in sorted(unknown_keys(source))
        ]
    globals_ = data.get("global_settings")
    if isinstance(globals_, dict):
        ignored += [
            f"global_settings.{key}: {_hint(key, _GLOBAL_KEYS, _SOURCE_KEYS)}"
            for key in sorted(frozenset(globals_) - _GLOBAL_KEYS)
        ]
    return WatchlistConfig(
        sources=tuple(sources),
        invalid=tuple(invalid),
        global_settings=_parse_globals(globals_),
        ignored_keys=tuple(ignored),
    )


def _hint(key: str, known: frozenset[str], elsewhere: frozenset[str] = frozenset()) -> str:
    """Why *key* does nothing: unknown here, perhaps a misspelling or in the wrong place."""
    text = "not a field the Cursor reads (kept, ignored)"
    close = difflib.get_close_matches(key, sorted(known | elsewhere), n=1, cutoff=0.8)
    if key in elsewhere or (close and close[0] in elsewhere - known):
        where = "global_settings" if elsewhere == _GLOBAL_KEYS else "each source"
        name = key if key in elsewhere else close[0]
        return f"{text}; {name!r} belongs in {where}"
    return f"{text}; did you mean {close[0]!r}?" if close else text


def _parse_source(item: object, handlers: frozenset[str]) -> SourceConfig:
    if not isinstance(item, dict):
        raise ValueError(f"source must be an object, got {type(item).__name__}")
    sid = item.get("id")
    if not isinstance(sid, str) or not ID_RE.fullmatch(sid):
        raise ValueError("missing or malformed 'id' (letters, digits, '_', '-', '.')")
    bad_number = first_bad_number(item, "source")
    if bad_number:
        raise ValueError(bad_number.removeprefix("source."))
    handler = item.get("handler_id")
    if not isinstance(handler, str) or handler not in handlers:
        raise ValueError(
            f"unknown handler_id {show(handler)}; known: {', '.join(sorted(handlers))}"
        )
    url = item.get("url_feed")
    if url is not None and (not isinstance(url, str) or not is_http_url(url)):
        raise ValueError(
            "url_feed must be a plain http(s) URL (no backslash, user-info, whitespace "
            "or control characters)"
        )
    if handler in URL_FEED_HANDLERS and url is None:
        raise ValueError(f"handler {handler} needs a url_feed")
    if handler == DAG_HANDLER and not opt_str(item, "dag_id"):
        raise ValueError(f"handler {DAG_HANDLER} needs a dag_id")
    dag_id = opt_str(item, "dag_id")
    if dag_id is not None and not is_airflow_id(dag_id):
        raise ValueError(f"dag_id must be {AIRFLOW_ID_RULE}")
    xcom_task_id = opt_str(item, "xcom_task_id")
    if xcom_task_id is not None and not is_airflow_id(xcom_task_id):
        raise ValueError(f"xcom_task_id must be {AIRFLOW_ID_RULE}")
    timeout = read_number(
        item,
        "timeout_seconds",
        DEFAULT_SOURCE_TIMEOUT,
        low=0,
        high=MAX_SOURCE_TIMEOUT,
        low_open=True,
    )
    max_items = read_number(
        item, "max_items", DEFAULT_MAX_ITEMS, low=1, high=MAX_ITEMS_LIMIT, integer=True
    )
    if item.get("max_pages") is not None:
        read_number(item, "max_pages", 1, low=1, high=MAX_PAGES_LIMIT, integer=True)
    keywords = item.get("keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k for k in keywords):
        raise ValueError("keywords must be a list of non-empty strings")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be true or false, got {show(enabled)}")
    selectors = opt_mapping(item, "selectors")
    if selectors is not None and not all(isinstance(v, str) for v in selectors.values()):
        raise ValueError("selectors must map names to CSS selector strings")
    _check_schedule(item)
    return SourceConfig(
        id=sid,
        handler_id=handler,
        name=opt_str(item, "name") or "",
        url_feed=url,
        enabled=enabled,
        schedule=opt_str(item, "schedule"),
        player_id=opt_str(item, "player_id"),
        spider_id=opt_str(item, "spider_id"),
        dag_id=dag_id,
        task_name=opt_str(item, "task_name"),
        xcom_task_id=xcom_task_id,
        timeout_seconds=float(timeout),
        max_items=int(max_items),
        keywords=tuple(keywords),
        selectors=selectors,
        api=opt_mapping(item, "api"),
        csv=opt_mapping(item, "csv"),
        crawl=parse_crawl_options(item.get("crawl")),
        raw=item,
    )


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
        mcs = read_number(
            data,
            "max_concurrent_sources",
            defaults.max_concurrent_sources,
            low=1,
            high=MAX_CONCURRENT_SOURCES,
            integer=True,
            where="global_settings.",
        )
        ptm = read_number(
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
            f"global_settings.alert_on_zero_results must be true or false, got {show(flag)}"
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
    """A source's own ``schedule`` must be a 5-field cron expression (architecture §2a)."""
    value = opt_str(item, "schedule")
    if value is None:
        return
    try:
        parse_cron(value)
    except InvalidSchedule as exc:
        raise ValueError(f"schedule: {exc}") from None


def _str_or_none(value: object) -> str | None:
    """An invalid source's id for reports: as is when well-formed, else its short repr."""
    if not isinstance(value, str):
        return None
    return value if ID_RE.fullmatch(value) else show(value)


def unknown_keys(source: SourceConfig) -> frozenset[str]:
    """Keys of the source's object the Cursor does not use (kept, ignored)."""
    return frozenset(source.raw) - _SOURCE_KEYS
