"""The daemon: receive → handle → settle, one canonical log line per run.

SIGTERM/SIGINT stop it after the message in hand is finished; a second
signal releases that message back to the queue at once and exits.
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
from atlasreg_cursor.domain.ingest import HandleResult, Outcome, handle_delivery

from .bootstrap import App
from .operations import HttpUnavailable, start_operations
from .readiness import LoopMonitor
from .telemetry import record_event, record_handled

log = structlog.get_logger()


class _Abort(BaseException):
    """Raised in the main thread by a second stop signal."""


@attrs.define
class DaemonState:
    """What ``/readyz`` reports and the loop obeys."""

    stop: threading.Event = attrs.Factory(threading.Event)
    signals: int = 0
    handled: int = 0
    last_queue_ok: float | None = None
    last_error: str | None = None
    monitor: LoopMonitor = attrs.Factory(LoopMonitor)


def log_event(name: str, data: Mapping[str, Any]) -> None:
    """Turn the service's progress events into log lines and metrics."""
    record_event(name, data)
    fields = {k: v for k, v in data.items() if v is not None}
    if name == "source.finished":
        level = "info" if data.get("ok") else "warning"
        with structlog.contextvars.bound_contextvars(source_id=data.get("source_id")):
            getattr(log, level)(name, **{k: v for k, v in fields.items() if k != "source_id"})
        return
    if name in {"run.failed", "message.poison", "notification.failed", "notification.rejected"}:
        log.error(name, **fields)
    elif name in {"run.retry_scheduled", "run.deferred", "message.ack_late", "queue.extend_failed"}:
        log.warning(name, **fields)
    else:
        log.info(name, **fields)


def process_one(app: App, state: DaemonState, wait_seconds: float) -> HandleResult | None:
    """Receive at most one delivery and handle it; ``None`` when nothing came."""
    deliveries = app.queue.receive(1, wait_seconds)
    state.last_queue_ok, state.last_error = time.monotonic(), None
    if not deliveries:
        return None
    (delivery,) = deliveries
    started = time.monotonic()
    structlog.contextvars.clear_contextvars()
    with structlog.contextvars.bound_contextvars(queue_message_id=delivery.message_id):
        try:
            with state.monitor.working():
                result = _handle(app, delivery)
        except _Abort:
            app.queue.retry(delivery, 0)
            log.warning("message.released", reason="stop requested twice")
            raise
        duration = time.monotonic() - started
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
        )
    state.handled += 1
    return result


def _handle(app: App, delivery: Any) -> HandleResult:
    from atlasreg_cursor.domain.messages import message_identity, parse_message
    from atlasreg_cursor.domain.runs import derive_run_id

    run_id = identity = None
    try:
        message = parse_message(delivery.body)
        identity = message_identity(
            message, delivery.body, delivery.message_id if delivery.identity_from_queue else None
        )
        run_id = derive_run_id(message.type, identity)
    except CursorError:
        pass
    with structlog.contextvars.bound_contextvars(run_id=run_id, message_id=identity):
        return handle_delivery(
            delivery,
            queue=app.queue,
            config=app.config,
            executor=app.executor,
            store=app.store,
            notifier=app.notifier,
            policy=app.policy,
            on_event=log_event,
        )


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
        ops = start_operations(app, state.monitor, serve_http=serve_http)
    except HttpUnavailable as exc:
        log.error("daemon.http_unavailable", error=str(exc))
        return 2
    previous = _install_signals(state)
    log.info(
        "daemon.started",
        mode=app.settings.mode,
        queue=app.settings.backend("queue"),
        storage=app.settings.backend("storage"),
        executor=app.settings.backend("executor"),
        consumer_id=app.policy.consumer_id,
        metrics_port=ops.port,
    )
    code = 0
    backoff = 1.0
    try:
        while not state.stop.is_set():
            state.monitor.beat()
            try:
                result = process_one(
                    app, state, app.settings.poll_seconds if not until_empty else 1.0
                )
                backoff = 1.0
            except QueueError as exc:
                state.last_error = str(exc)
                metrics.ERRORS.labels(error_type=type(exc).__name__).inc()
                log.error("queue.unavailable", error=str(exc), retry_in=backoff)
                state.stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            if result is None and until_empty:
                break
            if once and result is not None:
                break
            if max_messages is not None and state.handled >= max_messages:
                break
    except _Abort:
        code = 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ops.stop()
        log.info("daemon.stopped", handled=state.handled, exit_code=code)
    return code


def _install_signals(state: DaemonState) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        state.signals += 1
        state.stop.set()
        log.warning("daemon.stopping", signal=signal.Signals(signum).name, count=state.signals)
        if state.signals > 1:
            raise _Abort

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, on_signal)
    return previous


__all__ = ["DaemonState", "Outcome", "log_event", "process_one", "run_daemon"]
