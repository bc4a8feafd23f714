"""One crawler subprocess, from the parent side: start, submit, read events, stop.

:class:`CrawlProcess` starts ``python -m`` :data:`~.wire.RUNNER_MODULE` in a
process group of its own, writes one ``crawl`` command per source on its
stdin and resolves each waiting source when its ``done`` event comes back on
the events pipe (read by one thread per process); a download waiting for its
turn on a host is resolved by a ``turn`` event the same way. Cancelling a
source resolves its waiting crawls and turns at once and tells the crawler
(``cancel``) to end them. Stopping asks the crawler to shut down, then
signals the whole group (SIGTERM, then SIGKILL), so what the spiders started
goes too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import attrs
import structlog

from atlasreg_cursor.domain.errors import SourceFailed

from .wire import (
    RUNNER_MODULE,
    SHUTDOWN_COMMAND,
    cancel_command,
    crawl_command,
    hold_command,
    parse_event,
    release_command,
    turn_command,
)

log = structlog.get_logger()

KILL_GRACE_SECONDS = 3.0
STDERR_TAIL_BYTES = 4000


@attrs.define(kw_only=True, eq=False)
class PendingCrawl:
    """One source sent to a crawl process, waiting for its result."""

    key: str
    spec: Mapping[str, Any]
    deadline: float
    done: threading.Event = attrs.field(factory=threading.Event)
    result: dict[str, Any] | None = None
    cancelled: bool = False
    died: bool = False


@attrs.define(kw_only=True, eq=False)
class PendingTurn:
    """One download waiting for its turn on a host, then holding it."""

    key: str
    host: str
    max_per_host: int
    download_delay: float
    done: threading.Event = attrs.field(factory=threading.Event)
    granted: bool = False
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
        self._pending: dict[str, PendingCrawl] = {}
        self._turns: dict[str, PendingTurn] = {}
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
        """Tell whether a source is waiting for its result or a download holds a turn."""
        with self._lock:
            return bool(self._pending or self._turns)

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

    def submit(self, pending: PendingCrawl) -> bool:
        """Send a source to the crawler; ``False`` when it is gone or stopping."""
        line = crawl_command(pending.key, pending.spec, pending.deadline)
        with self._lock:
            if not self.alive:
                return False
            self._pending[pending.key] = pending
        if not self._write(line):
            with self._lock:
                self._pending.pop(pending.key, None)
            return False
        return True

    def request_turn(self, turn: PendingTurn) -> bool:
        """Ask for a turn on ``turn.host``; ``False`` when the crawler is gone or stopping."""
        line = turn_command(
            turn.key,
            turn.host,
            max_per_host=turn.max_per_host,
            download_delay=turn.download_delay,
        )
        with self._lock:
            if not self.alive:
                return False
            self._turns[turn.key] = turn
        if not self._write(line):
            with self._lock:
                self._turns.pop(turn.key, None)
            return False
        return True

    def hold(self, turn: PendingTurn) -> bool:
        """
        Count *turn* (granted by an earlier process of the run, its download
        still going) as a place taken on its host; ``False`` when the crawler is gone.
        """
        line = hold_command(
            turn.key,
            turn.host,
            max_per_host=turn.max_per_host,
            download_delay=turn.download_delay,
        )
        with self._lock:
            if self._exited.is_set():
                return False
            self._turns[turn.key] = turn
        return self._write(line)

    def release_turn(self, turn: PendingTurn) -> None:
        """Give the turn back (or stop waiting for it)."""
        with self._lock:
            self._turns.pop(turn.key, None)
            self._touch()
        self._write(release_command(turn.key))

    def _touch(self) -> None:
        """Note when the process became idle (call with ``_lock`` held)."""
        if not (self._pending or self._turns):
            self.idle_since = time.monotonic()

    def _write(self, line: bytes) -> bool:
        try:
            with self._write_lock:
                assert self._stdin is not None
                self._stdin.write(line)
                self._stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def forget(self, pending: PendingCrawl) -> None:
        """Stop waiting for *pending* (its caller gave up)."""
        with self._lock:
            self._pending.pop(pending.key, None)
            self._touch()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as events:
            for line in events:
                event = parse_event(line)
                if event is None:
                    continue
                if event.get("event") == "done":
                    self._resolve(str(event.get("key")), event)
                elif event.get("event") == "turn":
                    self._grant(str(event.get("key")))
                elif event.get("event") == "ready":
                    self.ready.set()
        self._exited.set()
        with self._lock:
            left: list[PendingCrawl | PendingTurn] = [
                *self._pending.values(),
                *self._turns.values(),
            ]
            self._pending.clear()
            self._turns.clear()
            self.idle_since = time.monotonic()
        for pending in left:
            pending.cancelled = pending.cancelled or self.closing
            pending.died = True
            pending.done.set()

    def _resolve(self, key: str, event: dict[str, Any]) -> None:
        with self._lock:
            pending = self._pending.pop(key, None)
            self._touch()
        if pending is not None:
            pending.result = event
            pending.done.set()
        else:  # nobody waits (cancelled, or given up at its deadline): drop its items
            self._discard_items(event.get("items_file"))

    def _discard_items(self, name: object) -> None:
        if not isinstance(name, str):
            return
        path = Path(name)
        if path.parent.resolve() == self.scratch.resolve():
            path.unlink(missing_ok=True)

    def _grant(self, key: str) -> None:
        with self._lock:
            turn = self._turns.get(key)
            if turn is not None:
                turn.granted = True
        if turn is not None:
            turn.done.set()

    def cancel(self, source_id: str) -> int:
        """
        Make *source_id*'s waiting crawls and turns (keys ``<source_id>#<n>``)
        return ``cancelled``, and tell the crawler to end them (``cancel``).
        A turn already granted is left to its download (stopped by its caller).

        Returns:
            How many were cancelled.
        """
        with self._lock:
            left: list[PendingCrawl | PendingTurn] = [
                self._pending.pop(k) for k in [k for k in self._pending if _source(k) == source_id]
            ]
            left += [
                self._turns.pop(k)
                for k, turn in list(self._turns.items())
                if _source(k) == source_id and not turn.granted
            ]
            self._touch()
        for pending in left:
            pending.cancelled = True
            pending.done.set()
            self._write(cancel_command(pending.key))
        return len(left)

    def cancel_all(self) -> None:
        """Mark the process as stopping; every waiting source and download returns ``cancelled``."""
        with self._lock:
            self.closing = True
            left: list[PendingCrawl | PendingTurn] = [
                *self._pending.values(),
                *self._turns.values(),
            ]
            self._pending.clear()
            self._turns.clear()
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
            self._stdin.write(SHUTDOWN_COMMAND)
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


def _source(key: str) -> str:
    """The source of a key ``<source_id>#<n>``."""
    return key.rpartition("#")[0]


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
