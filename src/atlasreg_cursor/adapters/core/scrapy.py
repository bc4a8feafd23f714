"""Scrapy crawls from the parent side, shared by the local and Core executors.

Each crawl runs ``atlasreg_cursor.adapters.local.spider_runner`` in a new
process (the Twisted reactor cannot restart) and in a new process group, so
a crawl that outlives its timeout is stopped whole: SIGTERM to the group,
then SIGKILL after a grace period. :func:`stop_crawls` stops an owner's
running crawls on close, and a crawl whose parent dies kills its own group.

Scrapy exits 0 even when a crawl failed, so :func:`judge` decides from the
stats the runner writes (finish reason, HTTP statuses, download exceptions,
errors) and raises ``SourceFailed`` with an ``error_type`` of ``timeout``,
``spider_error``, ``http_error``, ``network_error`` or ``forbidden_address``.
:func:`items_to_documents` maps scraped items to Documents.

Settings read (by the composition root): ``SCRAPY_PROJECT_PATH`` (the project
:func:`run_project_spider` runs in).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog

from atlasreg_cursor.domain.documents import Document
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.domain.sources import SourceConfig

log = structlog.get_logger()

RUNNER_MODULE = "atlasreg_cursor.adapters.local.spider_runner"
ITEMS_FILE = "items.jsonl"
STATS_FILE = "stats.json"
FORBIDDEN_STAT = "atlasreg/forbidden_address"
PARENT_PID_ENV = "ATLASREG_CRAWL_PARENT"
KILL_GRACE_SECONDS = 3.0
STDERR_TAIL_BYTES = 4000
MAX_ITEMS = 100_000
MAX_TITLE = 1_000
MAX_SUMMARY = 5_000
_STATUS_PREFIX = "downloader/response_status_count/"
_RUNNING: dict[int, tuple[subprocess.Popen[bytes], object | None]] = {}
_RUNNING_LOCK = threading.Lock()
_EXCEPTION_PREFIX = "downloader/exception_type_count/"


@attrs.frozen(kw_only=True)
class CrawlOutcome:
    """What one crawl process left behind."""

    items: tuple[dict[str, Any], ...] = ()
    stats: Mapping[str, Any] = attrs.field(factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    stderr_tail: str = ""
    spider: str | None = None
    errors: tuple[str, ...] = ()
    http_errors: tuple[str, ...] = ()
    runner_error: str | None = None
    timeout_seconds: float = 0.0
    duration_seconds: float = 0.0
    pid: int | None = None


def run_crawl(
    spec: Mapping[str, Any],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    work_dir: Path | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
    owner: object | None = None,
) -> CrawlOutcome:
    """
    Run one crawl in a subprocess of its own process group.

    Args:
        spec: the crawl, as ``spider_runner`` reads it.
        timeout: seconds before the whole process group is stopped.
        cwd: working directory (a Scrapy project for project spiders).
        env: variables added to the inherited environment.
        work_dir: where the crawl's scratch directory is made (removed after).
        kill_grace: seconds between SIGTERM and SIGKILL.
        owner: whom the crawl belongs to, for :func:`stop_crawls`.

    Returns:
        The outcome; judge it with :func:`judge`.

    Raises:
        SourceFailed: ``spider_error`` when the process cannot be started.
    """
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="crawl-", dir=work_dir))
    try:
        return _run_in(
            scratch, spec, timeout=timeout, cwd=cwd, env=env, kill_grace=kill_grace, owner=owner
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_in(
    scratch: Path,
    spec: Mapping[str, Any],
    *,
    timeout: float,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    kill_grace: float,
    owner: object | None,
) -> CrawlOutcome:
    spec_path, out_dir, stderr_path = scratch / "spec.json", scratch / "out", scratch / "stderr"
    spec_path.write_text(json.dumps(dict(spec), ensure_ascii=False), encoding="utf-8")
    command = [sys.executable, "-m", RUNNER_MODULE, str(spec_path), str(out_dir)]
    started = time.monotonic()
    timed_out = False
    with stderr_path.open("wb") as stderr:
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env={**_environment(env), PARENT_PID_ENV: str(os.getpid())},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            raise SourceFailed(
                f"cannot start the crawler process: {exc}", error_type="spider_error"
            ) from None
        log.debug("crawl.started", pid=proc.pid, kind=spec.get("kind"), timeout=timeout)
        with _RUNNING_LOCK:
            _RUNNING[proc.pid] = (proc, owner)
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = stop_process_group(proc, grace=kill_grace)
            log.warning("crawl.timed_out", pid=proc.pid, timeout=timeout)
        finally:
            if proc.poll() is None:
                stop_process_group(proc, grace=kill_grace)
            _signal_group(proc.pid, signal.SIGKILL)  # leftovers the crawl started
            with _RUNNING_LOCK:
                _RUNNING.pop(proc.pid, None)
    report = _read_report(out_dir / STATS_FILE)
    return CrawlOutcome(
        items=_read_items(out_dir / ITEMS_FILE),
        stats=report.get("stats") or {},
        returncode=returncode,
        timed_out=timed_out,
        stderr_tail=_tail(stderr_path),
        spider=report.get("spider"),
        errors=tuple(str(e) for e in report.get("errors") or ()),
        http_errors=tuple(str(e) for e in report.get("http_errors") or ()),
        runner_error=report.get("runner_error"),
        timeout_seconds=timeout,
        duration_seconds=round(time.monotonic() - started, 3),
        pid=proc.pid,
    )


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
    owner: object | None = None,
) -> CrawlOutcome:
    """
    Run a spider of the Scrapy project at *project_path* (like ``scrapy crawl``).

    Args:
        project_path: the directory holding ``scrapy.cfg``.
        spider: the spider's name.
        spider_args: passed to the spider as ``-a key=value`` would be.
        timeout: seconds before the crawl is stopped.
        work_dir: where the scratch directory is made.
        fallback: a generic crawl spec to run when the project has no such spider.
        allow_private: skip the SSRF guard on each request (project code is trusted).
        download_timeout: Scrapy's ``DOWNLOAD_TIMEOUT``; default below *timeout*.
        owner: whom the crawl belongs to, for :func:`stop_crawls`.

    Returns:
        The outcome; judge it with :func:`judge`.
    """
    spec: dict[str, Any] = {
        "kind": "project",
        "spider": spider,
        "spider_args": {str(k): str(v) for k, v in spider_args.items()},
        "allow_private": allow_private,
        "download_timeout": download_timeout or download_timeout_for(timeout),
    }
    if fallback is not None:
        spec["fallback"] = dict(fallback)
    return run_crawl(
        spec,
        timeout=timeout,
        cwd=project_path,
        env={"SCRAPY_PROJECT_PATH": str(project_path)},
        work_dir=work_dir,
        owner=owner,
    )


def download_timeout_for(timeout: float) -> float:
    """A Scrapy ``DOWNLOAD_TIMEOUT`` safely below a source's timeout."""
    return round(max(1.0, min(180.0, timeout * 0.8)), 3)


def judge(outcome: CrawlOutcome, source_id: str) -> list[dict[str, Any]]:
    """
    Return the crawl's items, or raise why the crawl failed.

    A crawl with items succeeded even if some requests failed. A crawl with
    no items and no error is an empty success.

    Raises:
        SourceFailed: ``timeout`` (stopped by the parent, or every download
            timed out), ``spider_error`` (spider not found, failed to start,
            finish reason not ``finished``, callback errors with no items),
            ``http_error`` (HTTP 4xx/5xx and no items), ``network_error``
            (downloads failed and no items), ``forbidden_address`` (the SSRF
            guard refused the URL).
    """
    if outcome.timed_out:
        raise SourceFailed(
            f"crawl of {source_id} did not finish within {outcome.timeout_seconds:g}s; "
            "its processes were stopped",
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
    items = list(outcome.items)
    reason = str(stats.get("finish_reason"))
    if reason != "finished" and not (reason.startswith("closespider_") and items):
        raise SourceFailed(
            f"crawl of {source_id} ended with finish_reason {reason!r}", error_type="spider_error"
        )
    if items:
        if outcome.errors or outcome.http_errors:
            log.warning(
                "crawl.partial",
                source_id=source_id,
                items=len(items),
                errors=len(outcome.errors) + len(outcome.http_errors),
            )
        return items
    _raise_for_empty(outcome, stats)
    return []


def _raise_for_empty(outcome: CrawlOutcome, stats: Mapping[str, Any]) -> None:
    forbidden = stats.get(FORBIDDEN_STAT)
    if forbidden:
        raise SourceFailed(str(forbidden), error_type="forbidden_address")
    statuses = {
        code: count
        for key, count in stats.items()
        if key.startswith(_STATUS_PREFIX)
        and (code := key.removeprefix(_STATUS_PREFIX)).isdigit()
        and int(code) >= 400
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


def stop_process_group(proc: subprocess.Popen[bytes], *, grace: float) -> int | None:
    """
    Stop *proc*'s whole process group: SIGTERM, then SIGKILL after *grace*.

    Returns:
        The process's exit code (``None`` if it could not be reaped).
    """
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.error("crawl.unkillable", pid=proc.pid)
        return None


def stop_crawls(owner: object | None = None, *, grace: float = KILL_GRACE_SECONDS) -> int:
    """
    Stop the running crawls of *owner* (every crawl when ``None``).

    Returns:
        How many crawls were running.
    """
    with _RUNNING_LOCK:
        procs = [p for p, o in _RUNNING.values() if owner is None or o is owner]
    procs = [p for p in procs if p.poll() is None]
    for proc in procs:
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
    if procs:
        log.info("crawl.stopped_on_close", crawls=len(procs))
    return len(procs)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    package_root = str(Path(__file__).resolve().parents[3])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, package_root])
    return env


def _read_items(path: Path) -> tuple[dict[str, Any], ...]:
    if not path.exists():
        return ()
    items = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(item, dict):
                items.append(item)
            if len(items) >= MAX_ITEMS:
                break
    return tuple(items)


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - STDERR_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _clean(value: Any, limit: int = 2_000) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = " ".join(str(value).split())
    return text[:limit] or None
