"""Scrapy crawls from the parent side, shared by the local and Core executors.

Crawls run in one crawl process per run (:mod:`.crawl_process`); this module
builds their specs, judges what they left behind and maps items to
Documents. :func:`run_crawl` and :func:`run_project_spider` run one crawl in
a process of its own (for one-off use and tests).

Scrapy exits 0 even when a crawl failed, so :func:`judge` decides from the
per-source stats the crawl reports (finish reason, HTTP statuses, download
exceptions, errors) and raises ``SourceFailed`` with an ``error_type`` of
``timeout``, ``cancelled``, ``spider_error``, ``too_many_items``,
``http_error``, ``network_error``, ``robots_disallowed``, ``invalid_url``
or ``forbidden_address``. Every spec carries its source's ``max_items``: the
crawl stops a source at one item past it. :func:`items_to_documents` maps scraped items to
Documents.

Settings read (by the composition root): ``SCRAPY_PROJECT_PATH`` (the project
:func:`run_project_spider` runs in), ``CRAWL_*``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog

from atlasreg_cursor.domain.documents import Document
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.domain.sources import CrawlOptions, SourceConfig

from .crawl_process import (
    FORBIDDEN_STAT,
    INVALID_URL_STAT,
    KILL_GRACE_SECONDS,
    MAX_ITEMS,
    PARENT_PID_ENV,
    TOO_MANY_ITEMS_STAT,
    CrawlOutcome,
    CrawlPolicy,
    CrawlSessions,
    stop_process_group,
)

__all__ = [
    "FORBIDDEN_STAT",
    "INVALID_URL_STAT",
    "MAX_ITEMS",
    "PARENT_PID_ENV",
    "CrawlOutcome",
    "CrawlPolicy",
    "CrawlSessions",
    "crawl_options",
    "download_timeout_for",
    "items_to_documents",
    "judge",
    "run_crawl",
    "run_project_spider",
    "stop_process_group",
]

log = structlog.get_logger()

MAX_TITLE = 1_000
MAX_SUMMARY = 5_000
_STATUS_PREFIX = "downloader/response_status_count/"
_EXCEPTION_PREFIX = "downloader/exception_type_count/"
_ROBOTS_STATUS_PREFIX = "robotstxt/response_status_count/"
_ROBOTS_FORBIDDEN = "robotstxt/forbidden"
_ONE_OFF_RUN = "one-off"


def run_crawl(
    spec: Mapping[str, Any],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    work_dir: Path | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
    policy: CrawlPolicy | None = None,
) -> CrawlOutcome:
    """
    Run one crawl in a crawl process of its own, stopped when it is done.

    Args:
        spec: the crawl, as ``spider_runner`` reads it (``allow_private``
            in it lifts the address check).
        timeout: the crawl's timeout in seconds.
        cwd: working directory (a Scrapy project for project spiders).
        env: variables added to the crawler's (allow-listed) environment.
        work_dir: where the process's scratch directory is made (removed after).
        kill_grace: seconds between SIGTERM and SIGKILL.
        policy: the crawl policy (default: ``CrawlPolicy()``).

    Returns:
        The outcome (with the process's exit code); judge it with :func:`judge`.
    """
    root = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
    sessions = CrawlSessions(
        work_dir=root,
        policy=policy,
        project_path=cwd,
        allow_private=bool(spec.get("allow_private", False)),
        extra_env=env,
        kill_grace=kill_grace,
    )
    source_id = str(spec.get("source_id") or "crawl")
    try:
        outcome = sessions.crawl(_ONE_OFF_RUN, source_id, spec, timeout=timeout)
        code = sessions.close_run(_ONE_OFF_RUN)
    finally:
        sessions.close()
    return attrs.evolve(outcome, returncode=outcome.returncode if code is None else code)


def run_project_spider(
    project_path: Path,
    spider: str,
    spider_args: Mapping[str, str],
    *,
    timeout: float,
    work_dir: Path | None = None,
    fallback: Mapping[str, Any] | None = None,
    allow_private: bool = True,
    download_timeout: float | None = None,
) -> CrawlOutcome:
    """
    Run a spider of the Scrapy project at *project_path* (like ``scrapy crawl``)
    in a crawl process of its own.

    Args:
        project_path: the directory holding ``scrapy.cfg``.
        spider: the spider's name.
        spider_args: passed to the spider as ``-a key=value`` would be.
        timeout: seconds before the crawl is stopped.
        work_dir: where the scratch directory is made.
        fallback: a generic crawl spec to run when the project has no such spider.
        allow_private: lift the address check of the guard.
        download_timeout: Scrapy's ``DOWNLOAD_TIMEOUT``; default below *timeout*.

    Returns:
        The outcome; judge it with :func:`judge`.
    """
    spec = project_spec(
        spider,
        spider_args,
        fallback=fallback,
        download_timeout=download_timeout or download_timeout_for(timeout),
    )
    spec["allow_private"] = allow_private
    return run_crawl(spec, timeout=timeout, cwd=project_path, work_dir=work_dir)


def project_spec(
    spider: str,
    spider_args: Mapping[str, str],
    *,
    fallback: Mapping[str, Any] | None = None,
    download_timeout: float,
    options: CrawlOptions | None = None,
    max_items: int | None = None,
) -> dict[str, Any]:
    """The crawl spec of a project spider (``fallback``: a generic spec; ``max_items``: its cap)."""
    spec: dict[str, Any] = {
        "kind": "project",
        "spider": spider,
        "spider_args": {str(k): str(v) for k, v in spider_args.items()},
        "download_timeout": download_timeout,
        "crawl": crawl_options(options),
    }
    if max_items is not None:
        spec["max_items"] = max_items
    if fallback is not None:
        spec["fallback"] = dict(fallback)
    return spec


def crawl_options(options: CrawlOptions | None) -> dict[str, Any]:
    """A source's ``crawl`` block as the crawl spec carries it (set keys only)."""
    if options is None:
        return {}
    return {k: v for k, v in attrs.asdict(options).items() if v is not None}


def download_timeout_for(timeout: float) -> float:
    """A Scrapy ``DOWNLOAD_TIMEOUT`` safely below a source's timeout."""
    return round(max(1.0, min(180.0, timeout * 0.8)), 3)


def judge(outcome: CrawlOutcome, source_id: str) -> list[dict[str, Any]]:
    """
    Return the crawl's items, or raise why the crawl failed.

    A crawl with items succeeded even if some requests failed. A crawl with
    no items and no error is an empty success.

    Raises:
        SourceFailed: ``timeout`` (cut at the source's timeout, or every
            download timed out), ``cancelled`` (its run was closed first),
            ``spider_error`` (spider not found, failed to start, finish
            reason not ``finished``, callback errors with no items),
            ``too_many_items`` (more items than the spec's ``max_items``;
            the crawl stopped the source there),
            ``http_error`` (HTTP 4xx/5xx and no items), ``network_error``
            (downloads failed and no items), ``robots_disallowed`` (robots.txt
            forbids the URLs and no items), ``forbidden_address`` /
            ``invalid_url`` (the URL guard refused the URLs).
    """
    if outcome.cancelled:
        raise SourceFailed(
            f"crawl of {source_id} was cancelled: its run was closed", error_type="cancelled"
        )
    if outcome.timed_out:
        raise SourceFailed(
            f"crawl of {source_id} did not finish within {outcome.timeout_seconds:g}s; "
            "its requests were dropped",
            error_type="timeout",
        )
    if outcome.runner_error:
        raise SourceFailed(outcome.runner_error, error_type="spider_error")
    stats = outcome.stats
    if not stats:
        detail = _last_line(outcome.stderr_tail) or "no output"
        raise SourceFailed(
            f"crawler exited with code {outcome.returncode} without stats: {detail}",
            error_type="spider_error",
        )
    cap = stats.get(TOO_MANY_ITEMS_STAT)
    if cap:
        raise SourceFailed(
            f"crawl of {source_id} yielded more than {cap} items (the source's max_items); "
            "it was stopped there",
            error_type="too_many_items",
        )
    items = list(outcome.items)
    reason = str(stats.get("finish_reason"))
    if reason != "finished" and not (reason.startswith("closespider_") and items):
        raise SourceFailed(
            f"crawl of {source_id} ended with finish_reason {reason!r}", error_type="spider_error"
        )
    if items:
        problems = len(outcome.errors) + len(outcome.http_errors) + len(outcome.robots)
        if problems:
            log.warning("crawl.partial", source_id=source_id, items=len(items), errors=problems)
        return items
    _raise_for_empty(outcome, stats)
    return []


def _raise_for_empty(outcome: CrawlOutcome, stats: Mapping[str, Any]) -> None:
    forbidden = stats.get(FORBIDDEN_STAT)
    if forbidden:
        raise SourceFailed(str(forbidden), error_type="forbidden_address")
    invalid = stats.get(INVALID_URL_STAT)
    if invalid:
        raise SourceFailed(str(invalid), error_type="invalid_url")
    if outcome.robots:
        more = f" (and {len(outcome.robots) - 1} more)" if len(outcome.robots) > 1 else ""
        raise SourceFailed(f"no items; {outcome.robots[0]}{more}", error_type="robots_disallowed")
    refused = int(stats.get(_ROBOTS_FORBIDDEN, 0) or 0)
    if refused:  # counted by Scrapy's robots.txt middleware, the URL not recorded
        raise SourceFailed(
            f"no items; robots.txt disallowed {refused} of the spider's requests",
            error_type="robots_disallowed",
        )
    statuses = {
        code: left
        for key, count in stats.items()
        if key.startswith(_STATUS_PREFIX)
        and (code := key.removeprefix(_STATUS_PREFIX)).isdigit()
        and int(code) >= 400
        # robots.txt answers are counted too; a missing robots.txt is no error
        and (left := int(count) - int(stats.get(f"{_ROBOTS_STATUS_PREFIX}{code}", 0) or 0)) > 0
    }
    if outcome.http_errors or statuses:
        first = outcome.http_errors[0] if outcome.http_errors else None
        shown = ", ".join(f"HTTP {code} x{count}" for code, count in sorted(statuses.items()))
        raise SourceFailed(
            f"no items; {first or 'the site answered with errors'} ({shown})",
            error_type="http_error",
        )
    exceptions = {
        key.removeprefix(_EXCEPTION_PREFIX).rsplit(".", 1)[-1]: count
        for key, count in stats.items()
        if key.startswith(_EXCEPTION_PREFIX)
    }
    if exceptions:
        kind = "timeout" if all("Timeout" in name for name in exceptions) else "network_error"
        shown = ", ".join(f"{name} x{count}" for name, count in sorted(exceptions.items()))
        raise SourceFailed(f"no items; downloads failed: {shown}", error_type=kind)
    spider_exceptions = sum(int(v) for k, v in stats.items() if k.startswith("spider_exceptions/"))
    logged = int(stats.get("log_count/ERROR", 0) or 0)
    if outcome.errors or spider_exceptions or logged:
        detail = outcome.errors[0] if outcome.errors else f"{logged} errors logged"
        raise SourceFailed(f"no items; the spider failed: {detail}", error_type="spider_error")


def items_to_documents(
    items: Iterable[Mapping[str, Any]], source: SourceConfig
) -> tuple[Document, ...]:
    """
    Map scraped items to Documents of *source* (first of each id kept).

    ``document_id`` is the item's ``document_id`` or ``id``, else a stable
    hash of its URL (of its title when it has no URL).
    """
    documents: dict[str, Document] = {}
    for item in items:
        url = _clean(item.get("url") or item.get("link"))
        title = _clean(item.get("title") or item.get("titulo"), MAX_TITLE) or ""
        explicit = _clean(item.get("document_id") or item.get("id"), 200)
        if explicit:
            document_id = explicit
        elif url:
            document_id = sha256_hex(url.encode("utf-8"))[:32]
        elif title:
            document_id = sha256_hex(f"{source.id}\n{title}".encode())[:32]
        else:
            continue
        documents.setdefault(
            document_id,
            Document(
                document_id=document_id,
                source_id=source.id,
                title=title,
                url=url,
                date=_clean(item.get("date") or item.get("data"), 64),
                summary=_clean(item.get("summary") or item.get("resumo"), MAX_SUMMARY) or "",
                player_id=_clean(item.get("player_id"), 200) or source.player_id,
            ),
        )
    return tuple(documents.values())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _clean(value: Any, limit: int = 2_000) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = " ".join(str(value).split())
    return text[:limit] or None
