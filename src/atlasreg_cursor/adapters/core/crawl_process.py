"""One crawl process per run, from the parent side (local and Core executors).

The first Scrapy-served source of a run starts one long-lived crawler
process for that run (``atlasreg_cursor.adapters.local.spider_runner``: one
Twisted reactor, one shared downloader for the generic spiders, project
spiders as extra crawlers beside it). :meth:`CrawlSessions.crawl` sends the
process a source's crawl spec as a JSON line on its stdin and blocks until
that source's result comes back on the events pipe, so results stream per
source while the run's other sources go on crawling.

Timeouts are enforced inside the crawl: at a source's deadline the process
drops that source's requests and reports it as timed out. The parent kills
the process only as a last resort:

- a source gets no answer within :data:`REPORT_GRACE_SECONDS` of its
  deadline: that source is a timeout and, when the process had started (its
  reactor is wedged), the process is killed and the others of the run are
  sent again to a new process (once); a process that does not start within
  :data:`STARTUP_SECONDS` is killed;
- :meth:`CrawlSessions.close_run` (the run's source phase is over): sources
  still crawling return ``cancelled`` at once and the process is stopped;
- the run's process stayed idle for ``idle_seconds`` (a safety net when
  nobody closes the run);
- the parent dies: the crawler sees its stdin close (and its parent change)
  and kills its whole process group.

The crawler gets an allow-listed environment (:func:`crawl_environment`):
none of the Cursor's secrets reach it.

Settings read (by the composition root): ``CRAWL_*``, ``SCRAPY_PROJECT_PATH``,
``ALLOW_PRIVATE_SOURCES``.
"""

from __future__ import annotations

import contextlib
import itertools
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
from typing import IO, Any

import attrs
import structlog

from atlasreg_cursor.domain.errors import SourceFailed

log = structlog.get_logger()

RUNNER_MODULE = "atlasreg_cursor.adapters.local.spider_runner"
PARENT_PID_ENV = "ATLASREG_CRAWL_PARENT"
FORBIDDEN_STAT = "atlasreg/forbidden_address"
INVALID_URL_STAT = "atlasreg/invalid_url"
KILL_GRACE_SECONDS = 3.0
REPORT_GRACE_SECONDS = 5.0
STARTUP_SECONDS = 60.0
DEFAULT_IDLE_SECONDS = 120.0
MAX_ITEMS = 100_000
STDERR_TAIL_BYTES = 4000
CONTACT_URL = "https://github.com/atlasreg/atlasreg-cursor"

#: Variables the crawler process inherits (plus ``LC_*`` and ``CRAWL_ENV_ALLOW``).
ENV_ALLOW = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SCRAPY_SETTINGS_MODULE",
        "SCRAPY_PROJECT",
    }
)


def default_user_agent() -> str:
    """``atlasreg-cursor/<version> (+<contact URL>)``."""
    from importlib import metadata

    try:
        version = metadata.version("atlasreg-cursor")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "0"
    return f"atlasreg-cursor/{version} (+{CONTACT_URL})"


@attrs.frozen(kw_only=True)
class CrawlPolicy:
    """
    How every crawl of the Cursor behaves (``CRAWL_*``); a source's ``crawl``
    block overrides it for that source.

    Args:
        max_per_host: requests at once per host, across the whole run.
        obey_robots: obey robots.txt.
        download_delay: seconds between two requests to one host.
        autothrottle: adapt the per-host delay to the host's latency.
        user_agent: the ``User-Agent`` header (default: product, version, contact).
        concurrent_requests: requests at once in the whole crawl process.
        retry_times: retries of 429, 503 (and 5xx, 408, connection errors).
        retry_backoff: first retry delay in seconds (doubles per retry),
            unless the answer's ``Retry-After`` says otherwise.
    """

    max_per_host: int = 2
    obey_robots: bool = True
    download_delay: float = 0.0
    autothrottle: bool = False
    user_agent: str = attrs.field(factory=default_user_agent)
    concurrent_requests: int = 32
    retry_times: int = 2
    retry_backoff: float = 1.0


@attrs.frozen(kw_only=True)
class CrawlOutcome:
    """What one source's crawl left behind."""

    items: tuple[dict[str, Any], ...] = ()
    stats: Mapping[str, Any] = attrs.field(factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    stderr_tail: str = ""
    spider: str | None = None
    errors: tuple[str, ...] = ()
    http_errors: tuple[str, ...] = ()
    robots: tuple[str, ...] = ()
    runner_error: str | None = None
    timeout_seconds: float = 0.0
    duration_seconds: float = 0.0
    pid: int | None = None


def crawl_environment(
    extra_names: Iterable[str] = (), extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """
    The crawler's environment: allow-listed variables only, plus *extra*.

    Secrets of the Cursor (``HOOK_HMAC_SECRET``, ``CF_API_TOKEN``, storage
    keys, ``DATABASE_URL``, …) are never passed; *extra_names*
    (``CRAWL_ENV_ALLOW``) lets a project spider get the variables it needs.
    """
    allowed = ENV_ALLOW | frozenset(n.strip() for n in extra_names if n.strip())
    env = {k: v for k, v in os.environ.items() if k in allowed or k.startswith("LC_")}
    env.update(extra or {})
    package_root = str(Path(__file__).resolve().parents[3])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, package_root])
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


@attrs.define(kw_only=True, eq=False)
class _Pending:
    """One source sent to a crawl process, waiting for its result."""

    key: str
    spec: Mapping[str, Any]
    deadline: float
    done: threading.Event = attrs.field(factory=threading.Event)
    result: dict[str, Any] | None = None
    cancelled: bool = False
    died: bool = False


class CrawlProcess:
    """
    One crawler subprocess serving one run (see the module docstring).

    Args:
        run_id: the run it serves (for logs).
        config: what the crawler is told at start (policy, allow_private).
        cwd: its working directory (the Scrapy project, if any).
        env: its whole environment.
        scratch: a directory of its own (items files, stderr), removed on stop.
    """

    def __init__(
        self,
        *,
        run_id: str,
        config: Mapping[str, Any],
        cwd: Path | None,
        env: Mapping[str, str],
        scratch: Path,
    ) -> None:
        self.run_id = run_id
        self.scratch = scratch
        self._config = dict(config)
        self._cwd = cwd
        self._env = dict(env)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._exited = threading.Event()
        self.ready = threading.Event()
        self.started_at = time.monotonic()
        self._stopping = False
        self.closing = False
        self.idle_since = time.monotonic()

    @property
    def pid(self) -> int | None:
        """The crawler's pid (its process group id too)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """Tell whether the crawler runs and is not being stopped."""
        return (
            self._proc is not None
            and not self._exited.is_set()
            and not self.closing
            and not self._stopping
        )

    @property
    def busy(self) -> bool:
        """Tell whether a source is waiting for its result."""
        with self._lock:
            return bool(self._pending)

    def start(self) -> None:
        """
        Start the crawler.

        Raises:
            SourceFailed: ``spider_error`` when it cannot be started.
        """
        self.scratch.mkdir(parents=True, exist_ok=True)
        config_path = self.scratch / "config.json"
        config_path.write_text(json.dumps({**self._config, "scratch": str(self.scratch)}))
        events_r, events_w = os.pipe()
        stderr = (self.scratch / "stderr").open("wb")
        command = [sys.executable, "-m", RUNNER_MODULE, str(config_path), str(events_w)]
        try:
            self._proc = subprocess.Popen(
                command,
                cwd=self._cwd,
                env=self._env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(events_w,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(events_r)
            raise SourceFailed(
                f"cannot start the crawler process: {exc}", error_type="spider_error"
            ) from None
        finally:
            os.close(events_w)
            stderr.close()
        self._stdin = self._proc.stdin
        self._reader = threading.Thread(
            target=self._read, args=(events_r,), name=f"crawl-events-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        log.debug("crawl.process_started", run_id=self.run_id, pid=self._proc.pid)

    def submit(self, pending: _Pending) -> bool:
        """Send a source to the crawler; ``False`` when it is gone or stopping."""
        command = {
            "op": "crawl",
            "key": pending.key,
            "spec": dict(pending.spec),
            "deadline": pending.deadline,
        }
        line = json.dumps(command, ensure_ascii=False).encode("utf-8") + b"\n"
        with self._lock:
            if not self.alive:
                return False
            self._pending[pending.key] = pending
        try:
            with self._write_lock:
                assert self._stdin is not None
                self._stdin.write(line)
                self._stdin.flush()
        except (OSError, ValueError):
            with self._lock:
                self._pending.pop(pending.key, None)
            return False
        return True

    def forget(self, pending: _Pending) -> None:
        """Stop waiting for *pending* (its caller gave up)."""
        with self._lock:
            self._pending.pop(pending.key, None)
            if not self._pending:
                self.idle_since = time.monotonic()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as events:
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("event") == "done":
                    self._resolve(str(event.get("key")), event)
                elif event.get("event") == "ready":
                    self.ready.set()
        self._exited.set()
        with self._lock:
            left = list(self._pending.values())
            self._pending.clear()
            self.idle_since = time.monotonic()
        for pending in left:
            pending.cancelled = pending.cancelled or self.closing
            pending.died = True
            pending.done.set()

    def _resolve(self, key: str, event: dict[str, Any]) -> None:
        with self._lock:
            pending = self._pending.pop(key, None)
            if not self._pending:
                self.idle_since = time.monotonic()
        if pending is not None:
            pending.result = event
            pending.done.set()

    def cancel_all(self) -> None:
        """Mark the process as stopping; every waiting source returns ``cancelled``."""
        with self._lock:
            self.closing = True
            left = list(self._pending.values())
            self._pending.clear()
        for pending in left:
            pending.cancelled = True
            pending.done.set()

    def stop(self, *, grace: float = KILL_GRACE_SECONDS, cancel: bool = True) -> int | None:
        """
        Stop the crawler: ask it to shut down, then SIGTERM and SIGKILL its
        whole process group; remove its scratch directory.

        Args:
            grace: seconds to wait before each harder step.
            cancel: waiting sources return ``cancelled`` (else they see the
                process die, and are sent again to a new one).

        Returns:
            Its exit code (``None`` if it could not be reaped).
        """
        if cancel:
            self.cancel_all()
        else:
            with self._lock:
                self._stopping = True
        proc = self._proc
        if proc is None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            return None
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            assert self._stdin is not None
            self._stdin.write(b'{"op": "shutdown"}\n')
            self._stdin.flush()
            self._stdin.close()
        code: int | None
        try:
            code = proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            code = stop_process_group(proc, grace=grace)
        _signal_group(proc.pid, signal.SIGKILL)  # what the spiders started
        if self._reader is not None:
            self._reader.join(timeout=5)
        shutil.rmtree(self.scratch, ignore_errors=True)
        log.debug("crawl.process_stopped", run_id=self.run_id, pid=proc.pid, code=code)
        return code

    def stderr_tail(self) -> str:
        """The end of the crawler's stderr."""
        try:
            with (self.scratch / "stderr").open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - STDERR_TAIL_BYTES))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    @property
    def returncode(self) -> int | None:
        """The exit code once the crawler exited."""
        return self._proc.poll() if self._proc is not None else None


class CrawlSessions:
    """
    The crawl processes of the runs in progress, one per run.

    Args:
        work_dir: where each process gets a scratch directory.
        policy: the crawl policy (``CRAWL_*``).
        project_path: the Scrapy project (``SCRAPY_PROJECT_PATH``), the
            processes' working directory.
        allow_private: fetch from non-public addresses (``ALLOW_PRIVATE_SOURCES``).
        env_allow: more variables the crawler may inherit (``CRAWL_ENV_ALLOW``).
        extra_env: variables set in the crawler's environment.
        idle_seconds: a process without work this long is stopped.
        kill_grace: seconds between asking a process to stop and killing it.
        report_grace: seconds past a source's deadline before its process
            is considered wedged and killed.
    """

    def __init__(
        self,
        *,
        work_dir: Path,
        policy: CrawlPolicy | None = None,
        project_path: Path | None = None,
        allow_private: bool = False,
        env_allow: Iterable[str] = (),
        extra_env: Mapping[str, str] | None = None,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        kill_grace: float = KILL_GRACE_SECONDS,
        report_grace: float = REPORT_GRACE_SECONDS,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.policy = policy or CrawlPolicy()
        self.project_path = project_path
        self.allow_private = allow_private
        self._env_allow = tuple(env_allow)
        self._extra_env = dict(extra_env or {})
        self.idle_seconds = idle_seconds
        self.kill_grace = kill_grace
        self.report_grace = report_grace
        self._runs: dict[str, CrawlProcess] = {}
        self._lock = threading.Lock()
        self._keys = itertools.count(1)
        self._reaper: threading.Thread | None = None
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"CrawlSessions(runs={sorted(self._runs)!r}, policy={self.policy!r})"

    def environment(self) -> dict[str, str]:
        """The (allow-listed) environment crawl processes get."""
        return crawl_environment(self._env_allow, self._extra_env)

    def running(self) -> dict[str, int | None]:
        """The pid of each run's live crawl process."""
        with self._lock:
            return {run: p.pid for run, p in self._runs.items() if p.alive}

    def crawl(
        self, run_id: str, source_id: str, spec: Mapping[str, Any], *, timeout: float
    ) -> CrawlOutcome:
        """
        Crawl one source in its run's crawl process; block until its result.

        Args:
            run_id: the run (one process per run).
            source_id: the source, for logs and keys.
            spec: what to crawl (see ``spider_runner``).
            timeout: the source's ``timeout_seconds``.

        Returns:
            The outcome; judge it with ``scrapy.judge``.

        Raises:
            SourceFailed: ``spider_error`` when no crawl process can be started.
        """
        started = time.monotonic()
        deadline = started + timeout
        for attempt in (1, 2):
            process = self._process_for(run_id)
            pending = _Pending(key=f"{source_id}#{next(self._keys)}", spec=spec, deadline=deadline)
            if not process.submit(pending):
                if process.closing:
                    return self._cancelled(timeout, started, process)
                continue
            answered = pending.done.wait(max(0.0, deadline + self.report_grace - time.monotonic()))
            if pending.result is not None:
                return self._outcome(pending.result, process, timeout, started)
            if pending.cancelled:
                return self._cancelled(timeout, started, process)
            if answered and pending.died:
                if attempt == 1 and time.monotonic() < deadline - 1.0:
                    log.warning(
                        "crawl.process_died",
                        run_id=run_id,
                        source_id=source_id,
                        code=process.returncode,
                    )
                    continue
                return self._died(process, timeout, started)
            process.forget(pending)
            if process.ready.is_set():
                self._kill_wedged(run_id, process, source_id)
            return CrawlOutcome(
                timed_out=True,
                timeout_seconds=timeout,
                duration_seconds=_since(started),
                pid=process.pid,
                returncode=process.returncode,
            )
        return self._died(process, timeout, started)

    def close_run(self, run_id: str) -> int | None:
        """
        Stop *run_id*'s crawl process; its waiting sources return ``cancelled``.

        Returns:
            The process's exit code (``None`` when the run had none running).
        """
        with self._lock:
            process = self._runs.pop(run_id, None)
        if process is None:
            return None
        return process.stop(grace=self.kill_grace)

    def close(self) -> None:
        """Stop every crawl process."""
        self._closed.set()
        with self._lock:
            processes = list(self._runs.values())
            self._runs.clear()
        for process in processes:
            process.cancel_all()
        for process in processes:
            process.stop(grace=self.kill_grace)

    # --- internals ----------------------------------------------------------

    def _process_for(self, run_id: str) -> CrawlProcess:
        with self._lock:
            process = self._runs.get(run_id)
            if process is not None and process.alive:
                return process
            stale = process
            process = CrawlProcess(
                run_id=run_id,
                config=self._config(),
                cwd=self.project_path,
                env=self.environment(),
                scratch=Path(tempfile.mkdtemp(prefix=f"crawl-{run_id}-", dir=self._scratch_root())),
            )
            process.start()
            self._runs[run_id] = process
            self._start_reaper()
        if stale is not None:
            stale.stop(grace=0.1)
        return process

    def _scratch_root(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def _config(self) -> dict[str, Any]:
        return {
            "policy": attrs.asdict(self.policy),
            "allow_private": self.allow_private,
            "project": self.project_path is not None,
        }

    def _kill_wedged(self, run_id: str, process: CrawlProcess, source_id: str) -> None:
        log.warning("crawl.process_wedged", run_id=run_id, source_id=source_id, pid=process.pid)
        with self._lock:
            if self._runs.get(run_id) is process:
                del self._runs[run_id]
        # The others of the run see the process die and are sent again.
        process.stop(grace=0.5, cancel=False)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="crawl-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        interval = max(0.2, min(5.0, self.idle_seconds / 4))
        while not self._closed.wait(interval):
            now = time.monotonic()
            with self._lock:
                idle = [
                    (run, p)
                    for run, p in self._runs.items()
                    if (not p.busy and (not p.alive or now - p.idle_since >= self.idle_seconds))
                    or (not p.ready.is_set() and now - p.started_at >= STARTUP_SECONDS)
                ]
                for run, _ in idle:
                    del self._runs[run]
                if not self._runs:
                    self._reaper = None
            for run, process in idle:
                log.debug("crawl.process_idle", run_id=run, pid=process.pid)
                process.stop(grace=self.kill_grace)
            if self._reaper is None:
                return

    def _outcome(
        self, result: Mapping[str, Any], process: CrawlProcess, timeout: float, started: float
    ) -> CrawlOutcome:
        items_file = result.get("items_file")
        items = _read_items(Path(items_file)) if isinstance(items_file, str) else ()
        return CrawlOutcome(
            items=items,
            stats=dict(result.get("stats") or {}),
            timed_out=bool(result.get("timed_out")),
            spider=result.get("spider"),
            errors=tuple(str(e) for e in result.get("errors") or ()),
            http_errors=tuple(str(e) for e in result.get("http_errors") or ()),
            robots=tuple(str(e) for e in result.get("robots") or ()),
            runner_error=result.get("runner_error"),
            timeout_seconds=timeout,
            duration_seconds=_since(started),
            pid=process.pid,
        )

    def _cancelled(self, timeout: float, started: float, process: CrawlProcess) -> CrawlOutcome:
        return CrawlOutcome(
            cancelled=True,
            timeout_seconds=timeout,
            duration_seconds=_since(started),
            pid=process.pid,
        )

    def _died(self, process: CrawlProcess, timeout: float, started: float) -> CrawlOutcome:
        return CrawlOutcome(
            runner_error=(
                f"the crawl process exited with code {process.returncode}"
                + (f": {tail}" if (tail := _last_line(process.stderr_tail())) else "")
            ),
            returncode=process.returncode,
            stderr_tail=process.stderr_tail(),
            timeout_seconds=timeout,
            duration_seconds=_since(started),
            pid=process.pid,
        )


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


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _read_items(path: Path) -> tuple[dict[str, Any], ...]:
    if not path.exists():
        return ()
    items = []
    try:
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
    finally:
        path.unlink(missing_ok=True)
    return tuple(items)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
