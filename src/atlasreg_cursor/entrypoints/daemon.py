"""The daemon: receive → handle → settle, one canonical log line per delivery.

Three kinds of thread: the main thread only watches signals and the
consumer; the *consumer* thread receives, handles and settles deliveries
(and resumes swept runs); the notification pump delivers the outbox.

Stopping: the signal handler only counts the signal (it never logs: the log
lock may be held by the very line it interrupted). The main thread sees the
count and acts: on the first SIGTERM/SIGINT the consumer stops after the
message in hand; if that takes more than ``STOP_GRACE_SECONDS`` (default 8,
under Docker's 10 s stop timeout), or on a second signal, the message and
the run's journal lease are given back at once and the daemon exits 130, so
another consumer resumes the run without waiting for the lease to expire.

Nothing between receive and settle can orphan a delivery: any exception
while handling it is logged with its traceback, counted
(``cursor_unexpected_errors_total``), and the delivery retried with
backoff, then dead-lettered with the reason.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

import attrs
import structlog

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.domain.errors import CursorError, QueueError
from atlasreg_cursor.domain.ingest import (
    HandleResult,
    Job,
    JournalStore,
    Outcome,
    Poison,
    RunControl,
    Sweeper,
    handle_delivery,
    read_job,
    resume_run,
    settle_crash,
)
from atlasreg_cursor.ports.queue import Delivery

from .background import NotificationPump
from .bootstrap import App
from .operations import HttpUnavailable, start_operations
from .readiness import LoopMonitor
from .startup import StartupRefused, startup_checks
from .telemetry import record_event, record_handled

log = structlog.get_logger()

EXIT_OK, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 2, 130
_FLUSH_SECONDS = 30.0
_STOP_FLUSH_SECONDS = 2.0


@attrs.define
class DaemonState:
    """
    What the loop obeys; ``monitor`` feeds ``/healthz`` and ``/readyz``.

    ``signals`` is the signal handler's only write.
    """

    stop: threading.Event = attrs.Factory(threading.Event)
    signals: int = 0
    handled: int = 0
    last_sweep_at: float = 0.0
    monitor: LoopMonitor = attrs.Factory(LoopMonitor)


_LEVELS: Mapping[str, str] = {
    "run.failed": "error",
    "message.poison": "error",
    "notification.rejected": "error",
    "notification.expired": "error",
    "run.crashed": "error",
    "executor.close_failed": "error",
    "run.retry_scheduled": "warning",
    "run.deferred": "info",
    "message.ack_late": "warning",
    "queue.extend_failed": "warning",
    "lease.renew_failed": "warning",
    "notification.retry_scheduled": "warning",
    "run.swept": "warning",
    "source.abandoned": "warning",
    "run.release_failed": "warning",
    "run.journal_unavailable": "warning",
    "run.published_not_failed": "warning",
}


def log_event(name: str, data: Mapping[str, Any]) -> None:
    """Turn the service's progress events into log lines and metrics (:mod:`.telemetry`)."""
    record_event(name, data)
    fields = {k: v for k, v in data.items() if v is not None and k != "exc_info"}
    if name == "source.finished":
        level = "info" if data.get("ok") else "warning"
        with structlog.contextvars.bound_contextvars(source_id=data.get("source_id")):
            getattr(log, level)(name, **{k: v for k, v in fields.items() if k != "source_id"})
        return
    level = _LEVELS.get(name, "info")
    exc = data.get("exc_info")
    if isinstance(exc, BaseException):
        fields["exc_info"] = exc
    getattr(log, level)(name, **fields)


# --- one delivery ---------------------------------------------------------------


def process_one(
    app: App,
    state: DaemonState,
    wait_seconds: float,
    *,
    control: RunControl | None = None,
    pump: NotificationPump | None = None,
) -> HandleResult | None:
    """Receive at most one delivery and handle it; ``None`` when nothing came."""
    deliveries = app.queue.receive(1, wait_seconds)
    if not deliveries:
        return None
    (delivery,) = deliveries
    # From here on the delivery is always settled (or left to its visibility timeout).
    with state.monitor.working():
        result = _handle(app, delivery, control)
    state.handled += 1
    if pump is not None:
        pump.nudge()
    return result


def _handle(app: App, delivery: Delivery, control: RunControl | None) -> HandleResult:
    """Parse, handle and settle one delivery; nothing here lets an exception escape unsettled."""
    started = time.monotonic()
    structlog.contextvars.clear_contextvars()
    job: Job | Poison | None = None
    with structlog.contextvars.bound_contextvars(queue_message_id=delivery.queue_message_id):
        try:
            job = read_job(delivery)
            if isinstance(job, Job):
                structlog.contextvars.bind_contextvars(run_id=job.run_id, identity=job.identity)
            result = handle_delivery(
                delivery,
                job=job,
                queue=app.queue,
                config=app.config,
                executor=app.executor,
                storage=app.storage,
                policy=app.policy,
                clock=app.clock,
                monotonic=app.monotonic,
                on_event=log_event,
                control=control,
            )
        except QueueError as exc:
            metrics.ERRORS.labels(error_type=type(exc).__name__).inc()
            log.error("message.settle_failed", error=str(exc), attempts=delivery.attempts)
            result = HandleResult(  # the delivery comes back after its visibility timeout
                outcome=Outcome.RELEASED,
                run_id=job.run_id if isinstance(job, Job) else None,
                reason=f"settling failed: {exc}",
            )
        except Exception as exc:  # the daemon survives anything
            metrics.UNEXPECTED_ERRORS.labels(where="handle").inc()
            log.exception("message.crashed", attempts=delivery.attempts)
            result = _settle_crash(app, delivery, job, exc)
        _log_handled(result, delivery, time.monotonic() - started)
    return result


def _settle_crash(
    app: App, delivery: Delivery, job: Job | Poison | None, exc: Exception
) -> HandleResult:
    """Retry a delivery whose handling raised, then dead-letter it (:func:`settle_crash`)."""
    try:
        return settle_crash(
            delivery,
            job,
            exc,
            queue=app.queue,
            storage=app.storage,
            policy=app.policy,
            clock=app.clock,
        )
    except Exception as error:  # the delivery comes back after its visibility timeout
        log.error("message.settle_failed", error=f"{type(error).__name__}: {error}")
        return HandleResult(outcome=Outcome.RELEASED, reason=f"settling failed: {error}")


def _log_handled(result: HandleResult, delivery: Delivery, duration: float) -> None:
    record_handled(result, duration)
    summary = result.summary
    log.info(
        "message.handled",
        outcome=result.outcome.value,
        run_id=result.run_id,
        attempts=delivery.attempts,
        duration_seconds=round(duration, 3),
        status=summary.status.value if summary else None,
        gold_key=summary.gold_key if summary else None,
        sha256=summary.sha256 if summary else None,
        documents_count=summary.documents_count if summary else None,
        events_count=summary.events_count if summary else None,
        errors_count=summary.errors_count if summary else None,
        reason=result.reason,
        delay_seconds=result.delay_seconds,
    )


def sweep_once(
    app: App,
    state: DaemonState,
    sweeper: Sweeper,
    control: RunControl,
    pump: NotificationPump | None = None,
) -> int:
    """
    Resume the stranded runs the journals show (at most every ``SWEEP_SECONDS``).

    A sweep is work in hand like a delivery (``state.monitor.working()``):
    a long resumed run keeps ``/healthz`` and ``/readyz`` up.
    """
    now = time.monotonic()
    if now - state.last_sweep_at < app.settings.sweep_seconds:
        return 0
    state.last_sweep_at = now
    with state.monitor.working():
        return _sweep(app, state, sweeper, control, pump)


def _sweep(
    app: App,
    state: DaemonState,
    sweeper: Sweeper,
    control: RunControl,
    pump: NotificationPump | None,
) -> int:
    try:
        stranded = sweeper.stranded()
    except CursorError as exc:
        log.warning("sweep.failed", error=str(exc))
        return 0
    resumed = 0
    for run_id in stranded:
        if state.stop.is_set():
            break
        structlog.contextvars.clear_contextvars()
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            try:
                result = resume_run(
                    run_id,
                    config=app.config,
                    executor=app.executor,
                    storage=app.storage,
                    policy=app.policy,
                    clock=app.clock,
                    monotonic=app.monotonic,
                    on_event=log_event,
                    control=control,
                )
            except Exception:  # the daemon survives anything; the run is swept again
                metrics.UNEXPECTED_ERRORS.labels(where="sweep").inc()
                log.exception("sweep.crashed")
                continue
            log.info("run.sweep_handled", outcome=result.outcome.value, reason=result.reason)
            resumed += 1
            if pump is not None:
                pump.nudge()
    return resumed


# --- the daemon -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Limits:
    once: bool
    max_messages: int | None
    until_empty: bool


def run_daemon(
    app: App,
    *,
    once: bool = False,
    max_messages: int | None = None,
    until_empty: bool = False,
    serve_http: bool = True,
    state: DaemonState | None = None,
) -> int:
    """
    Consume until stopped; return the process exit code.

    Args:
        once: handle at most one message, then return.
        max_messages: stop after this many messages.
        until_empty: stop when a receive comes back empty (scripts, the demo).
        serve_http: serve ``/healthz``, ``/readyz``, ``/metrics``.
    """
    state = state or DaemonState()
    try:
        startup_checks(app)
    except StartupRefused as exc:
        log.error("daemon.refused", error=str(exc))
        return EXIT_REFUSED
    try:
        ops = start_operations(app, state.monitor, serve_http=serve_http)
    except HttpUnavailable as exc:
        log.error("daemon.http_unavailable", error=str(exc))
        return EXIT_REFUSED
    previous = _install_signals(state)
    control = RunControl()
    pump = NotificationPump(app, on_event=log_event).start()
    limits = _Limits(once=once, max_messages=max_messages, until_empty=until_empty)
    consumer = threading.Thread(
        target=_consume, args=(app, state, control, pump, limits), name="consumer", daemon=True
    )
    log.info(
        "daemon.started",
        mode=app.settings.mode,
        queue=app.settings.backend("queue"),
        storage=app.settings.backend("storage"),
        executor=app.settings.backend("executor"),
        consumer_id=app.policy.consumer_id,
        lease_seconds=app.policy.lease_seconds,
        visibility_seconds=app.settings.visibility_seconds,
        sweeps=app.settings.sweeps,
        metrics_port=ops.port,
    )
    code = EXIT_OK
    try:
        consumer.start()
        code = _supervise(app, state, consumer, control)
        if code == EXIT_OK:
            pump.drain(_FLUSH_SECONDS if until_empty or once else _STOP_FLUSH_SECONDS)
    finally:
        pump.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ops.stop()
        log.info("daemon.stopped", handled=state.handled, exit_code=code)
    return code


def _supervise(
    app: App, state: DaemonState, consumer: threading.Thread, control: RunControl
) -> int:
    """Watch the signal count and the consumer; give the run in hand back when told."""
    seen = 0
    stopping_since: float | None = None
    while consumer.is_alive():
        consumer.join(timeout=0.1)
        if state.signals > seen:
            seen = state.signals
            state.stop.set()
            state.monitor.begin_stopping()  # /readyz: 503 "stopping", cursor_stopping 1
            log.warning("daemon.stopping", count=seen)
            if stopping_since is None:
                stopping_since = time.monotonic()
        grace_over = (
            stopping_since is not None
            and time.monotonic() - stopping_since > app.settings.stop_grace_seconds
        )
        if seen > 1 or (grace_over and consumer.is_alive()):
            run_id = control.abort()
            log.warning(
                "daemon.released",
                run_id=run_id,
                reason="second signal" if seen > 1 else "stop grace period over",
            )
            return EXIT_INTERRUPTED
    return EXIT_OK


def _consume(
    app: App, state: DaemonState, control: RunControl, pump: NotificationPump, limits: _Limits
) -> None:
    """The consumer thread: receive, handle, settle; sweep stranded runs."""
    sweeper = None
    if app.settings.sweeps:
        journals = JournalStore(
            app.storage,
            owner=app.policy.consumer_id,
            lease_seconds=app.policy.lease_seconds,
            clock=app.clock,
        )
        overdue = max(60.0, 2 * app.policy.lease_seconds)
        sweeper = Sweeper(journals, overdue_seconds=overdue, clock=app.clock)
    backoff = 1.0
    wait = 1.0 if limits.until_empty else app.settings.poll_seconds
    while not state.stop.is_set():
        state.monitor.beat()
        try:
            if sweeper is not None:
                sweep_once(app, state, sweeper, control, pump)
            result = process_one(app, state, wait, control=control, pump=pump)
            backoff = 1.0
        except QueueError as exc:
            metrics.ERRORS.labels(error_type=type(exc).__name__).inc()
            log.error("queue.unavailable", error=str(exc), retry_in=backoff)
            state.stop.wait(backoff)
            backoff = min(backoff * 2, 60.0)
            continue
        except Exception:  # the loop survives anything
            metrics.UNEXPECTED_ERRORS.labels(where="loop").inc()
            log.exception("daemon.loop_crashed", retry_in=backoff)
            state.stop.wait(backoff)
            backoff = min(backoff * 2, 60.0)
            continue
        if result is None and limits.until_empty:
            break
        if limits.once and result is not None:
            break
        if limits.max_messages is not None and state.handled >= limits.max_messages:
            break


def _install_signals(state: DaemonState) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only count: no lock, no log line (it may have interrupted one).
        state.signals += 1

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, on_signal)
    return previous


__all__ = ["DaemonState", "Outcome", "log_event", "process_one", "run_daemon", "sweep_once"]
