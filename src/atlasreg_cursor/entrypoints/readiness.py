"""What ``/healthz`` and ``/readyz`` answer, from cached background probes.

- ``/healthz`` (liveness): the consume loop is not wedged. It goes round at
  least every ``max(60 s, 3 x POLL_SECONDS)`` while idle; a run in progress
  counts as alive until it has lasted longer than three hours (or its queue lease).
- ``/readyz`` (readiness): alive, not stopping (from the stop signal to the
  exit ``cursor_stopping`` is 1, so alerts tell a graceful stop, however
  long its grace, from an outage), and the queue backend, the
  object store and the config source answered their last probe. Probes run
  on a background thread every ``PROBE_INTERVAL_SECONDS``; a request only
  reads the cached results, and a failure clears as soon as a probe passes.
  A result older than three intervals (at least 10 s) counts as a failure,
  "probe stale": a probe that hangs cannot leave its last answer standing.
  Open circuit breakers are listed (which dependency, since when).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from atlasreg_cursor.adapters import metrics

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.breakers import BreakerBoard

log = structlog.get_logger()

Check = Callable[[], Any]


@attrs.define
class LoopMonitor:
    """
    The consume loop's heartbeat and whether a run is being worked.

    ``idle_limit``: seconds without a beat, while no run is worked, after
    which the loop counts as wedged (``None``: ``max(60 s, 3 x POLL_SECONDS)``).
    """

    beat_at: float | None = None
    busy_since: float | None = None
    stopping: bool = False
    idle_limit: float | None = None

    def begin_stopping(self) -> None:
        """A stop was asked for: ``/readyz`` answers 503 "stopping", ``cursor_stopping`` is 1."""
        self.stopping = True
        metrics.STOPPING.set(1)

    def beat(self) -> None:
        """The loop went round."""
        self.beat_at = time.monotonic()
        metrics.LOOP_HEARTBEAT.set(time.time())

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Mark a run in hand (a delivery, a swept run) for the duration of the block."""
        self.busy_since = time.monotonic()
        try:
            yield
        finally:
            self.busy_since = None
            self.beat()

    def liveness(self, *, idle_limit: float, run_limit: float) -> tuple[bool, dict[str, Any]]:
        """``(alive, detail)``: wedged when idle too long without beating, or stuck in a run."""
        now = time.monotonic()
        beat, busy = self.beat_at, self.busy_since
        detail: dict[str, Any] = {
            "loop_heartbeat_age_seconds": None if beat is None else round(now - beat, 1),
            "run_in_progress_seconds": None if busy is None else round(now - busy, 1),
        }
        if busy is not None:
            ok = now - busy < run_limit
            reason = f"a run has been in progress for over {run_limit:.0f}s"
        else:
            ok = beat is not None and now - beat < idle_limit
            reason = f"the consume loop has not gone round for over {idle_limit:.0f}s"
        if not ok:
            detail["reason"] = reason
        return ok, detail


@attrs.frozen(kw_only=True)
class ProbeResult:
    """One dependency's last probe."""

    ok: bool
    checked_at: float
    error: str | None = None
    duration_seconds: float = 0.0


class ReadinessProber:
    """
    Probe each dependency on a background thread and cache the results.

    Args:
        checks: dependency name → a call that raises when it is unreachable.
        interval: seconds between two rounds.
        breakers: the circuit breakers whose state is reported and exported.
        stale_after: seconds after which a result no longer counts (a probe
            hangs); three intervals by default.
    """

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        interval: float,
        breakers: BreakerBoard | None = None,
        stale_after: float | None = None,
    ) -> None:
        self._checks = dict(checks)
        self._interval = interval
        self._stale_after = 3 * interval if stale_after is None else stale_after
        self._probing: tuple[str, float] | None = None  # (dependency, since), time.time()
        self._breakers = breakers
        self._results: dict[str, ProbeResult] = {}
        self.after_round: Callable[[], object] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness-probe", daemon=True)

    def start(self) -> ReadinessProber:
        """Start probing (the first round runs at once)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()
        self._thread.join(timeout=10)

    def probe_once(self) -> None:
        """One round over every dependency."""
        for name, check in self._checks.items():
            started = time.monotonic()
            self._probing = (name, time.time())
            try:
                check()
            except Exception as exc:  # any failure means "not reachable"; it is reported
                result = ProbeResult(
                    ok=False,
                    checked_at=time.time(),
                    error=f"{type(exc).__name__}: {exc}",
                    duration_seconds=round(time.monotonic() - started, 3),
                )
                if self.results().get(name, result).ok:
                    log.warning("readiness.dependency_down", dependency=name, error=result.error)
            else:
                result = ProbeResult(
                    ok=True,
                    checked_at=time.time(),
                    duration_seconds=round(time.monotonic() - started, 3),
                )
                previous = self.results().get(name)
                if previous is not None and not previous.ok:
                    log.info("readiness.dependency_recovered", dependency=name)
            metrics.DEPENDENCY_UP.labels(dependency=name).set(1 if result.ok else 0)
            with self._lock:
                self._results[name] = result
        self._probing = None
        if self._breakers is not None:
            self._breakers.export()
        if self.after_round is not None:
            self.after_round()

    def results(self) -> dict[str, ProbeResult]:
        """The last result per dependency (empty before the first round)."""
        with self._lock:
            return dict(self._results)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, detail)`` from the cached results; a stale result is a failure."""
        results = self.results()
        now = time.time()
        errors = {name: r.error for name, r in results.items() if not r.ok}
        for name, r in results.items():
            if now - r.checked_at > self._stale_after:
                errors[name] = f"probe stale: no result for {now - r.checked_at:.0f}s"
        detail: dict[str, Any] = {
            "dependencies": {
                name: {
                    "ok": name not in errors,
                    "error": errors.get(name),
                    "checked_at": round(r.checked_at, 3),
                }
                for name, r in results.items()
            }
        }
        probing = self._probing
        if probing is not None and now - probing[1] > self._interval:
            detail["probing"] = {"dependency": probing[0], "seconds": round(now - probing[1], 1)}
        if self._breakers is not None:
            detail["breakers"] = self._breakers.snapshot()
        missing = [name for name in self._checks if name not in results]
        if missing:
            detail["reason"] = f"not probed yet: {', '.join(missing)}"
        elif errors:
            detail["reason"] = "; ".join(f"{n} unreachable ({e})" for n, e in errors.items())
        return not missing and not errors, detail

    def _run(self) -> None:
        while True:
            try:
                self.probe_once()
            except Exception as exc:  # never let the prober die silently
                log.error("readiness.probe_crashed", error=f"{type(exc).__name__}: {exc}")
            if self._stop.wait(self._interval):
                return
