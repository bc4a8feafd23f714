"""The crawl processes of the runs in progress: one per run, results per source.

The first Scrapy-served source of a run starts that run's crawl process
(:class:`~.process.CrawlProcess`), or takes the spare one started ahead of
any run (:meth:`CrawlSessions.start_spare`). :meth:`CrawlSessions.crawl`
sends it a source's crawl spec and blocks until that source's result comes
back, so results stream per source while the run's other sources go on
crawling. :meth:`CrawlSessions.host_turn` gives a download of the parent (a
CSV) its turn on a host from the same process, so downloads and crawl
requests share one per-host budget. The turns granted are remembered per run
until given back: when the process that granted them dies, the run's next
one counts them as taken (``hold``) before it grants anything.
When the parent kills a process (wedged, idle, run closed) is told in the
package docstring (:mod:`atlasreg_cursor.adapters.core.crawl_process`).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog

from atlasreg_cursor.domain.errors import SourceFailed

from .environment import crawl_environment
from .outcome import CrawlOutcome
from .policy import CrawlPolicy
from .process import KILL_GRACE_SECONDS, CrawlProcess, PendingCrawl, PendingTurn
from .wire import DEFAULT_REACTOR_LAG_SECONDS

log = structlog.get_logger()

REPORT_GRACE_SECONDS = 5.0
STARTUP_SECONDS = 60.0
DEFAULT_IDLE_SECONDS = 120.0


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
        idle_seconds: a process without work this long is stopped (the spare too).
        kill_grace: seconds between asking a process to stop and killing it.
        report_grace: seconds past a source's deadline before its process
            is considered wedged and killed.
        stub_network: test-only fake DNS answers and loopback sites for the
            crawl processes (``{"answers": {name: [[address, ...], ...]},
            "sites": {address: port}}``); never set from settings or the
            watchlist.
        reactor_lag: seconds the process's reactor may stall before the
            project spider blocking it is failed (``None``: never; the
            process is then killed past a source's deadline).
        keep_spare: after a run's crawl process is closed, start a spare for
            the next run (:meth:`start_spare`; the daemon).
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
        stub_network: Mapping[str, Any] | None = None,
        reactor_lag: float | None = DEFAULT_REACTOR_LAG_SECONDS,
        keep_spare: bool = False,
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
        self._stub_network = dict(stub_network) if stub_network is not None else None
        self.reactor_lag = reactor_lag
        self.keep_spare = keep_spare
        self._runs: dict[str, CrawlProcess] = {}
        self._spare: CrawlProcess | None = None
        self._held: dict[str, dict[str, PendingTurn]] = {}
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

    def spare_pid(self) -> int | None:
        """The pid of the spare crawl process (``None`` when there is none)."""
        with self._lock:
            spare = self._spare
        return spare.pid if spare is not None and spare.alive else None

    def start_spare(self) -> None:
        """
        Start a crawl process ahead of any run, unless one is waiting already:
        the first run that needs a process takes it (no run shares it), so its
        start-up overlaps the caller's own work. It is stopped by :meth:`close`,
        or after ``idle_seconds`` without a taker. Never raises (a run then
        starts its own).
        """
        with self._lock:
            if self._closed.is_set() or (self._spare is not None and self._spare.alive):
                return
            stale, self._spare = self._spare, None
            try:
                self._spare = self._new_process("spare")
            except SourceFailed as exc:
                log.warning("crawl.spare_failed", error=str(exc))
            else:
                log.debug("crawl.spare_started", pid=self._spare.pid)
                self._start_reaper()
        if stale is not None:
            stale.stop(grace=0.1)

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
            pending = PendingCrawl(
                key=f"{source_id}#{next(self._keys)}", spec=spec, deadline=deadline
            )
            if not process.submit(pending):
                if process.closing:
                    return self._cancelled(timeout, started, process)
                continue
            answered = pending.done.wait(max(0.0, deadline + self.report_grace - time.monotonic()))
            if pending.result is not None:
                return CrawlOutcome.from_event(
                    pending.result, timeout=timeout, duration=_since(started), pid=process.pid
                )
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

    @contextlib.contextmanager
    def host_turn(
        self,
        run_id: str,
        host: str,
        *,
        source_id: str,
        deadline: float,
        max_per_host: int,
        download_delay: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[None]:
        """
        Hold one of *host*'s places in *run_id*'s crawl process for the ``with`` block.

        The place counts against the run's per-host limit like a crawl
        request (the most polite of *max_per_host* and the crawls' limits
        holds, and *download_delay* spaces it from the host's other requests).
        :meth:`cancel_source` for *source_id* ends the wait, as does *cancel*
        (the download's stop event) once set.

        Raises:
            SourceFailed: ``timeout`` when no turn came before *deadline*,
                ``cancelled`` when the source or the run was stopped meanwhile,
                ``spider_error`` when no crawl process can be started.
        """
        process, turn = self._wait_turn(
            run_id, source_id, host, deadline, max_per_host, download_delay, cancel
        )
        try:
            yield
        finally:
            self._release(run_id, process, turn)

    def _wait_turn(
        self,
        run_id: str,
        source_id: str,
        host: str,
        deadline: float,
        max_per_host: int,
        download_delay: float,
        cancel: threading.Event | None,
    ) -> tuple[CrawlProcess, PendingTurn]:
        """Ask *run_id*'s process for a turn on *host* (again in a new one if it dies)."""
        for attempt in (1, 2):
            process = self._process_for(run_id)
            turn = PendingTurn(
                key=f"{source_id}#{next(self._keys)}",
                host=host,
                max_per_host=max_per_host,
                download_delay=download_delay,
            )
            stopped = cancel.is_set if cancel is not None else lambda: False
            gone = True
            if process.request_turn(turn):
                if not stopped():  # else stopped before cancel_source could see this turn
                    turn.done.wait(max(0.0, deadline - time.monotonic()))
                if turn.granted and not stopped() and self._hold(run_id, process, turn):
                    return process, turn
                process.release_turn(turn)
                gone = turn.died
            if turn.cancelled or process.closing or stopped():
                break
            if not gone or time.monotonic() >= deadline:
                raise SourceFailed(
                    f"no turn on host {host} before the source's timeout "
                    f"({max_per_host} requests at once per host)",
                    error_type="timeout",
                )
            if attempt == 2:
                raise SourceFailed(
                    f"no turn on host {host}: the run's crawl process exited "
                    f"with code {process.returncode}",
                    error_type="spider_error",
                )
        raise SourceFailed(
            f"the download was cancelled while waiting for its turn on host {host} "
            "(its source or its run was stopped)",
            error_type="cancelled",
        )

    def _hold(self, run_id: str, process: CrawlProcess, turn: PendingTurn) -> bool:
        """
        Remember *turn*, granted by *process*, until it is released; ``False``
        when that process died meanwhile (the turn is asked for again).
        """
        with self._lock:
            if turn.died:
                return False
            self._held.setdefault(run_id, {})[turn.key] = turn
            current = self._runs.get(run_id)
            if current is not None and current is not process:
                current.hold(turn)  # the run's process was replaced after the grant
        return True

    def _release(self, run_id: str, process: CrawlProcess, turn: PendingTurn) -> None:
        """Give *turn* back, to the process that granted it and to the run's current one."""
        with self._lock:
            held = self._held.get(run_id, {})
            held.pop(turn.key, None)
            if not held:
                self._held.pop(run_id, None)
            current = self._runs.get(run_id)
        process.release_turn(turn)
        if current is not None and current is not process:
            current.release_turn(turn)

    def close_run(self, run_id: str) -> int | None:
        """
        Stop *run_id*'s crawl process; its waiting sources return ``cancelled``.

        Returns:
            The process's exit code (``None`` when the run had none running).
        """
        with self._lock:
            process = self._runs.pop(run_id, None)
            self._held.pop(run_id, None)
        if process is None:
            return None
        code = process.stop(grace=self.kill_grace)
        if self.keep_spare:
            self.start_spare()
        return code

    def cancel_source(self, run_id: str, source_id: str) -> int:
        """
        Stop waiting for *source_id*'s crawl, or for its download's turn, in
        *run_id*'s process: it returns ``cancelled``. The process ends that
        crawl at once (its requests dropped, its host places freed) and goes
        on for the run's other sources.

        Returns:
            How many waiting crawls and turns were cancelled.
        """
        with self._lock:
            process = self._runs.get(run_id)
        return 0 if process is None else process.cancel(source_id)

    def close(self) -> None:
        """Stop every crawl process."""
        self._closed.set()
        with self._lock:
            processes = [*self._runs.values(), *([self._spare] if self._spare else [])]
            self._runs.clear()
            self._held.clear()
            self._spare = None
        for process in processes:
            process.cancel_all()
        for process in processes:
            process.stop(grace=self.kill_grace)

    # --- internals ----------------------------------------------------------

    def _process_for(self, run_id: str) -> CrawlProcess:
        """*run_id*'s live process: its own, else the spare, else a new one."""
        with self._lock:
            process = self._runs.get(run_id)
            if process is not None and process.alive:
                return process
            stale = [p for p in (process, self._spare) if p is not None and not p.alive]
            spare, self._spare = self._spare, None
            if spare is not None and spare.alive:
                spare.run_id, spare.idle_since = run_id, time.monotonic()
                process = spare
                log.debug("crawl.spare_taken", run_id=run_id, pid=spare.pid)
            else:
                process = self._new_process(run_id)
            for turn in self._held.get(run_id, {}).values():
                process.hold(turn)  # still downloading: counted before anything is granted
            self._runs[run_id] = process
            self._start_reaper()
        for old in stale:
            old.stop(grace=0.1)
        return process

    def _new_process(self, run_id: str) -> CrawlProcess:
        """Start a crawl process (call with ``_lock`` held)."""
        process = CrawlProcess(
            run_id=run_id,
            config=self._config(),
            cwd=self.project_path,
            env=self.environment(),
            scratch=Path(tempfile.mkdtemp(prefix=f"crawl-{run_id}-", dir=self._scratch_root())),
        )
        process.start()
        return process

    def _scratch_root(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "policy": attrs.asdict(self.policy),
            "allow_private": self.allow_private,
            "project": self.project_path is not None,
            "lag_seconds": self.reactor_lag,
        }
        if self._stub_network is not None:
            config["stub_network"] = self._stub_network
        return config

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
                idle = [(run, p) for run, p in self._runs.items() if self._idle(p, now)]
                for run, _ in idle:
                    del self._runs[run]
                if self._spare is not None and self._idle(self._spare, now):
                    idle.append(("spare", self._spare))
                    self._spare = None
                if not self._runs and self._spare is None:
                    self._reaper = None
            for run, process in idle:
                log.debug("crawl.process_idle", run_id=run, pid=process.pid)
                process.stop(grace=self.kill_grace)
            if self._reaper is None:
                return

    def _idle(self, process: CrawlProcess, now: float) -> bool:
        """Tell whether *process* is to be reaped: dead, idle too long, or never started."""
        return (
            not process.busy
            and (not process.alive or now - process.idle_since >= self.idle_seconds)
        ) or (not process.ready.is_set() and now - process.started_at >= STARTUP_SECONDS)

    def _cancelled(self, timeout: float, started: float, process: CrawlProcess) -> CrawlOutcome:
        return CrawlOutcome(
            cancelled=True,
            timeout_seconds=timeout,
            duration_seconds=_since(started),
            pid=process.pid,
        )

    def _died(self, process: CrawlProcess, timeout: float, started: float) -> CrawlOutcome:
        return CrawlOutcome.died(
            returncode=process.returncode,
            stderr_tail=process.stderr_tail(),
            timeout=timeout,
            duration=_since(started),
            pid=process.pid,
        )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
