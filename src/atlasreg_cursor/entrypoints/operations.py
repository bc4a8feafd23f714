"""What runs beside the daemon's consume loop: probes, metrics, HTTP, the schedule.

:func:`start_operations` is called once when the daemon starts and returns
an :class:`Operations` the daemon stops on its way out. It

- exports build info and the labelled series the alerts need;
- starts the readiness prober (queue, store, config; breaker states), whose
  queue probe also refreshes the queue-depth gauges, during runs too;
- seeds the "last success" gauges and the failure streaks from the
  store's recent journals at start and every few minutes (a source no
  longer in the watchlist, or in those journals, loses its streak series;
  the pending-webhook gauges are the outbox pump's, set at each scan,
  every ``NOTIFY_SCAN_SECONDS``);
- serves ``/healthz``, ``/readyz``, ``/metrics`` (:class:`HttpUnavailable` when
  ``METRICS_PORT`` cannot be bound: the daemon then exits 2);
- starts the built-in schedule when ``SCHEDULE`` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.domain.errors import CursorError
from atlasreg_cursor.domain.sources import WatchlistConfig

from .readiness import LoopMonitor, ReadinessProber
from .telemetry import seed_from_store, start_metrics

if TYPE_CHECKING:
    from .bootstrap import App


#: A run in hand longer than this (or than its queue lease, if longer) means
#: the loop is wedged: sources are bounded by their timeouts and processing by
#: ``processing_timeout_minutes`` (30 by default), so a healthy run ends well before.
WEDGED_RUN_SECONDS = 3 * 3600.0

log = structlog.get_logger()

PROBE_KEY = "probe/readiness"
SEED_EVERY_SECONDS = 300.0
#: A probe result older than this many intervals (and at least STALE_MIN_SECONDS) is a failure.
STALE_INTERVALS, STALE_MIN_SECONDS = 3, 10.0


class HttpUnavailable(CursorError):
    """Raised when ``/healthz``, ``/readyz`` and ``/metrics`` cannot be served (port taken)."""


@attrs.define
class Operations:
    """The running side-cars of one daemon."""

    monitor: LoopMonitor
    prober: ReadinessProber
    server: Any = None
    schedule: tuple[threading.Thread, threading.Event] | None = None

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on."""
        return int(self.server.port) if self.server is not None else None

    def stop(self) -> None:
        """Stop the schedule, the HTTP server and the prober."""
        self.monitor.begin_stopping()
        metrics.READY.set(0)
        if self.schedule is not None:
            thread, stop = self.schedule
            stop.set()
            thread.join(timeout=10)
        if self.server is not None:
            self.server.stop()
        self.prober.stop()


def export_depth(app: App) -> None:
    """Read the queue's depth and export it (the queue probe)."""
    stats = app.queue.stats()
    for name in ("ready", "in_flight", "delayed", "dead"):
        value = getattr(stats, name)
        if value is not None:
            metrics.QUEUE_DEPTH.labels(state=name).set(value)


def _config_probe(app: App, enabled: list[frozenset[str]]) -> Callable[[], None]:
    """
    Fetch the watchlist from its origin (not the cache), so a missing file shows.

    After a good fetch its enabled source ids become ``enabled[0]``, for the
    seed of the failure streaks.
    """
    probe = getattr(app.config, "probe", None)

    def check() -> None:
        config = probe() if callable(probe) else app.config.load()
        if isinstance(config, WatchlistConfig):
            enabled[:] = [frozenset(s.id for s in config.enabled_sources())]

    return check


def _seeder(app: App, enabled: list[frozenset[str]]) -> Callable[[], None]:
    last = [0.0]

    def seed() -> None:
        if time.monotonic() - last[0] < SEED_EVERY_SECONDS and last[0]:
            return
        last[0] = time.monotonic()
        try:
            seed_from_store(app.storage, sources=enabled[0] if enabled else None)
        except CursorError as exc:
            log.warning("metrics.seed_failed", error=str(exc))

    return seed


def start_operations(app: App, monitor: LoopMonitor, *, serve_http: bool) -> Operations:
    """
    Start everything beside the loop (see the module docstring).

    Raises:
        HttpUnavailable: *serve_http* and ``METRICS_HOST:METRICS_PORT`` cannot be bound.
    """
    from atlasreg_cursor import __version__

    settings = app.settings
    start_metrics(__version__)
    metrics.STOPPING.set(1 if monitor.stopping else 0)
    enabled: list[frozenset[str]] = []  # the watchlist's enabled sources, once probed
    seed = _seeder(app, enabled)
    prober = ReadinessProber(
        {
            "queue": lambda: export_depth(app),
            # config before storage: the seed in the storage probe filters by its sources
            "config": _config_probe(app, enabled),
            "storage": lambda: (app.storage.head(PROBE_KEY), seed()),
        },
        interval=settings.probe_interval_seconds,
        breakers=app.breakers,
        stale_after=max(STALE_INTERVALS * settings.probe_interval_seconds, STALE_MIN_SECONDS),
    )
    ops = Operations(monitor=monitor, prober=prober)
    idle_limit = monitor.idle_limit or max(60.0, settings.poll_seconds * 3)
    run_limit = max(settings.visibility_seconds + 60.0, WEDGED_RUN_SECONDS)

    def health() -> tuple[bool, dict[str, Any]]:
        return monitor.liveness(idle_limit=idle_limit, run_limit=run_limit)

    def ready() -> tuple[bool, dict[str, Any]]:
        alive, detail = health()
        ok, deps = prober.readiness()
        detail.update(deps)
        if monitor.stopping:
            ok, detail["reason"] = False, "stopping"
        elif not alive:
            ok = False
        metrics.READY.set(1 if ok and alive else 0)
        return ok and alive, detail

    if serve_http:
        from .http import HealthServer

        try:
            ops.server = HealthServer(
                settings.metrics_host, settings.metrics_port, ready, health
            ).start()
        except OSError as exc:
            raise HttpUnavailable(
                f"cannot serve /healthz, /readyz, /metrics on "
                f"{settings.metrics_host}:{settings.metrics_port}: {exc.strerror or exc} "
                "(set METRICS_PORT to a free port, or run with --no-http)"
            ) from None
    prober.after_round = lambda: ready()[0]  # keeps cursor_ready current without requests
    prober.start()
    from .scheduler import start_scheduler

    ops.schedule = start_scheduler(
        settings, queue=app.queue, storage=app.storage, config=app.config
    )
    return ops
