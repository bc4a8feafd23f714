"""Calling AtlasReg Core's Celery tasks by name, with deadlines and typed errors.

The Cursor holds no task code: :class:`CeleryGateway` sends a task by its
registered name (``process_document``, ``generate_gold_json``, ...) and waits
for its result with a bounded deadline. JSON is the only serializer on the
way out and the only content accepted back; pickle is never enabled.

Outcomes are translated at this edge:

- the task returned: its JSON value;
- the task raised: :class:`TaskFailed` with the remote exception's type name
  and message (classes unknown here are matched by name, as Celery rebuilds
  them);
- no worker knows the name: :class:`TaskNotRegistered`;
- the caller's ``cancel`` event was set: :class:`TaskCancelled`, after
  revoking the task the same way;
- the deadline passed: :class:`TaskTimeout`, after revoking the task with
  ``terminate=True`` so it does not go on working for nobody (tasks are
  also sent with ``expires`` at the deadline, so a worker that picks one up
  late discards it);
- the broker or the result backend cannot be reached (kombu
  ``OperationalError``, redis errors, Celery's "Retry limit exceeded"
  ``RuntimeError``): ``ExecutorUnavailable`` (transient).

:class:`TaskError` and its subclasses are ``ExecutorError`` s carrying an
``error_type``; callers turn them into ``SourceFailed`` or
``ProcessingFailed`` with :func:`as_source_failed` / :func:`as_processing_failed`.

Publishing and reconnecting to the result backend retry a few times only, so
a dead Redis surfaces within seconds instead of Celery's default ~20 s.

Settings read (by the composition root): ``CELERY_BROKER_URL``,
``CELERY_RESULT_BACKEND`` (both default to ``REDIS_URL``).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import structlog

from atlasreg_cursor.domain.errors import (
    ExecutorError,
    ExecutorUnavailable,
    ProcessingFailed,
    SourceFailed,
)

log = structlog.get_logger()

#: Retries of a publish while the broker is away (seconds add up to ~1 s).
PUBLISH_RETRY_POLICY: Mapping[str, float] = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
#: Retries of a result-backend reconnection (Celery's default is 20 x 1 s).
BACKEND_RETRY_POLICY: Mapping[str, float] = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.3,
    "interval_max": 0.5,
}
CONNECT_TIMEOUT = 5.0
#: How often a cancellable wait looks at its cancel event.
CANCEL_POLL_SECONDS = 0.5
_RETRY_LIMIT_TEXT = "Retry limit exceeded"


class TaskError(ExecutorError):
    """Raised when a Core task did not give a usable result (see subclasses)."""

    error_type = "task_error"

    def __init__(self, message: str, *, task_name: str, task_id: str) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.task_id = task_id


class TaskNotRegistered(TaskError):
    """Raised when no worker has a task registered under the name sent."""

    error_type = "task_not_registered"


class TaskFailed(TaskError):
    """Raised when the task raised on the worker (or was revoked there)."""

    error_type = "task_failed"

    def __init__(
        self, message: str, *, task_name: str, task_id: str, remote_type: str, remote_message: str
    ) -> None:
        super().__init__(message, task_name=task_name, task_id=task_id)
        self.remote_type = remote_type
        self.remote_message = remote_message


class TaskTimeout(TaskError):
    """Raised when the task gave no result before the deadline (it is revoked)."""

    error_type = "timeout"


class TaskCancelled(TaskError):
    """Raised when the caller cancelled the wait (the task is revoked)."""

    error_type = "cancelled"


class _Cancelled(Exception):
    """Raised between two waits for a result, to stop waiting."""


def as_source_failed(exc: TaskError) -> SourceFailed:
    """Return the ``SourceFailed`` a source handler raises for *exc*."""
    return SourceFailed(str(exc), error_type=exc.error_type)


def as_processing_failed(exc: TaskError) -> ProcessingFailed:
    """Return the ``ProcessingFailed`` processing raises for *exc*."""
    return ProcessingFailed(str(exc))


@attrs.frozen
class CallOutcome:
    """What one call of :meth:`CeleryGateway.call_many` gave: a value or an error."""

    value: Any = None
    error: TaskError | None = None

    @property
    def ok(self) -> bool:
        """A call succeeded when it has no error."""
        return self.error is None


def _safe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _connection_errors() -> tuple[type[Exception], ...]:
    """Library errors that mean the broker or the backend cannot be reached."""
    import kombu.exceptions
    import redis.exceptions

    return (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)


class CeleryGateway:
    """
    Send Core tasks by name over Celery and wait for them with a deadline.

    Args:
        broker_url: the broker (``CELERY_BROKER_URL``), e.g. ``redis://host:6379/0``.
        result_backend: where results are read (``CELERY_RESULT_BACKEND``).
        app_name: the Celery app's main name.
        queue: the queue tasks are sent to (Celery's default ``celery`` if unset).
        breaker: the ``celery`` circuit breaker (:mod:`..breakers`); calls go
            through it, and fail fast while it is open.
    """

    def __init__(
        self,
        *,
        broker_url: str,
        result_backend: str,
        app_name: str = "atlasreg-cursor",
        queue: str | None = None,
        breaker: Any = None,
    ) -> None:
        from celery import Celery

        self._breaker = breaker
        self._broker_url = broker_url
        self._backend_url = result_backend
        self._app = Celery(
            app_name, broker=broker_url, backend=result_backend, set_as_current=False
        )
        self._app.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            task_publish_retry_policy=dict(PUBLISH_RETRY_POLICY),
            broker_connection_timeout=CONNECT_TIMEOUT,
            broker_connection_retry_on_startup=False,
            broker_transport_options={"socket_connect_timeout": CONNECT_TIMEOUT},
            result_backend_transport_options={"retry_policy": dict(BACKEND_RETRY_POLICY)},
            redis_socket_connect_timeout=CONNECT_TIMEOUT,
            redis_retry_on_timeout=False,
        )
        if queue:
            self._app.conf.task_default_queue = queue
        self._errors = _connection_errors()
        self._best_effort_errors: tuple[type[Exception], ...] = (*self._errors, RuntimeError)
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return (
            f"CeleryGateway(broker_url={_safe_url(self._broker_url)!r}, "
            f"result_backend={_safe_url(self._backend_url)!r})"
        )

    @property
    def app(self) -> Any:
        """The underlying Celery app (json-only, used as a client)."""
        return self._app

    def call(
        self,
        name: str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float,
        task_id: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        """
        Send task *name* and wait for its result until *timeout* seconds pass.

        Args:
            name: the task's registered name on Core's workers.
            args: positional arguments (JSON-able).
            kwargs: keyword arguments (JSON-able).
            timeout: seconds to wait for the result, sending included.
            task_id: a chosen task id (idempotent re-sends); random otherwise.
            cancel: once set, stop waiting (within about a second) and revoke the task.

        Returns:
            The task's JSON result.

        Raises:
            TaskNotRegistered: no worker knows *name*.
            TaskFailed: the task raised on the worker.
            TaskTimeout: no result in time; the task was revoked.
            TaskCancelled: *cancel* was set; the task was revoked.
            ExecutorUnavailable: the broker or the result backend is unreachable.
        """
        deadline = time.monotonic() + timeout
        return self._guarded(name, list(args), dict(kwargs or {}), deadline, task_id, cancel)

    def call_many(
        self,
        name: str,
        kwargs_list: Sequence[Mapping[str, Any]],
        *,
        concurrency: int,
        timeout: float,
    ) -> list[CallOutcome]:
        """
        Run task *name* once per kwargs, at most *concurrency* in flight.

        All calls share one deadline, *timeout* seconds from now; a call not
        sent by then is a :class:`TaskTimeout` without being sent.

        Args:
            name: the task's registered name.
            kwargs_list: one kwargs mapping per call.
            concurrency: most tasks waited on at once (at least 1).
            timeout: seconds for the whole batch.

        Returns:
            One :class:`CallOutcome` per kwargs, in order.

        Raises:
            ExecutorUnavailable: the broker or the result backend is unreachable.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not kwargs_list:
            return []
        deadline = time.monotonic() + timeout
        unavailable = threading.Event()

        def one(kwargs: Mapping[str, Any]) -> CallOutcome:
            if unavailable.is_set() or self._closed.is_set():
                raise ExecutorUnavailable("Celery calls stopped: Core is unreachable")
            if time.monotonic() >= deadline:
                tid = str(uuid.uuid4())
                return CallOutcome(
                    error=TaskTimeout(
                        f"task {name} was not sent: the deadline of {timeout:.0f}s passed",
                        task_name=name,
                        task_id=tid,
                    )
                )
            try:
                return CallOutcome(value=self._guarded(name, [], dict(kwargs), deadline, None))
            except TaskError as exc:
                return CallOutcome(error=exc)
            except ExecutorUnavailable:
                unavailable.set()
                raise

        width = min(concurrency, len(kwargs_list))
        with cf.ThreadPoolExecutor(max_workers=width, thread_name_prefix="celery-call") as pool:
            futures = [pool.submit(one, kwargs) for kwargs in kwargs_list]
            outcomes: list[CallOutcome] = []
            failure: ExecutorUnavailable | None = None
            for future in futures:
                try:
                    outcomes.append(future.result())
                except ExecutorUnavailable as exc:
                    failure = failure or exc
                    outcomes.append(CallOutcome())
        if failure is not None:
            raise failure
        return outcomes

    def _guarded(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        deadline: float,
        task_id: str | None,
        cancel: threading.Event | None = None,
    ) -> Any:
        """``_call`` through the breaker when there is one."""
        if self._breaker is None:
            return self._call(name, args, kwargs, deadline, task_id, cancel)
        return self._breaker.call(self._call, name, args, kwargs, deadline, task_id, cancel)

    def _call(
        self,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        deadline: float,
        task_id: str | None,
        cancel: threading.Event | None = None,
    ) -> Any:
        from celery.exceptions import TimeoutError as CeleryTimeoutError

        ctx = {"task_name": name, "broker": _safe_url(self._broker_url)}
        started = time.monotonic()
        if cancel is not None and cancel.is_set():
            raise TaskCancelled(
                f"task {name} was not sent: the wait was cancelled",
                task_name=name,
                task_id=task_id or "",
            )
        try:
            result = self._app.send_task(
                name,
                args=args,
                kwargs=kwargs,
                task_id=task_id,
                expires=max(deadline - started, 1.0),
            )
        except self._errors as exc:
            raise self._unavailable("send", exc, ctx) from None
        except RuntimeError as exc:
            if _RETRY_LIMIT_TEXT not in str(exc):
                raise
            raise self._unavailable("send", exc, ctx) from None
        tid = str(result.id)
        log.debug("celery.sent", task_id=tid, **ctx)
        try:
            value = self._wait(result, deadline, cancel)
            state = result.state
        except _Cancelled:
            self._revoke(tid, ctx)
            log.info("celery.cancelled", task_id=tid, **ctx)
            raise TaskCancelled(
                f"task {name} ({tid}) was cancelled; it was revoked", task_name=name, task_id=tid
            ) from None
        except CeleryTimeoutError:
            self._revoke(tid, ctx)
            waited = time.monotonic() - started
            log.warning("celery.timeout", task_id=tid, waited=round(waited, 3), **ctx)
            raise TaskTimeout(
                f"task {name} ({tid}) gave no result within {waited:.1f}s; it was revoked",
                task_name=name,
                task_id=tid,
            ) from None
        except self._errors as exc:
            raise self._unavailable("wait", exc, ctx) from None
        except RuntimeError as exc:
            if _RETRY_LIMIT_TEXT not in str(exc):
                raise
            raise self._unavailable("wait", exc, ctx) from None
        if state == "SUCCESS":
            log.debug("celery.succeeded", task_id=tid, **ctx)
            return value
        raise self._failure(name, tid, state, value)

    def _wait(self, result: Any, deadline: float, cancel: threading.Event | None) -> Any:
        """``result.get`` until *deadline*, in short slices while *cancel* may be set."""
        from celery.exceptions import TimeoutError as CeleryTimeoutError

        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CeleryTimeoutError("The operation timed out.")
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            step = remaining if cancel is None else min(remaining, CANCEL_POLL_SECONDS)
            try:
                return result.get(timeout=step, propagate=False, disable_sync_subtasks=False)
            except CeleryTimeoutError:
                if step >= remaining:
                    raise

    def _failure(self, name: str, tid: str, state: str, value: Any) -> TaskError:
        remote_type = type(value).__name__ if isinstance(value, BaseException) else state
        remote_message = _exception_text(value)
        if remote_type == "NotRegistered":
            log.warning("celery.not_registered", task_name=name, task_id=tid)
            return TaskNotRegistered(
                f"task {name} is not registered on any worker", task_name=name, task_id=tid
            )
        log.warning("celery.failed", task_name=name, task_id=tid, remote_type=remote_type)
        return TaskFailed(
            f"task {name} ({tid}) failed: {remote_type}: {remote_message}",
            task_name=name,
            task_id=tid,
            remote_type=remote_type,
            remote_message=remote_message,
        )

    def _revoke(self, tid: str, ctx: Mapping[str, str]) -> None:
        try:
            self._app.control.revoke(tid, terminate=True, signal="SIGTERM")
        except self._best_effort_errors as exc:
            log.warning("celery.revoke_failed", task_id=tid, error=type(exc).__name__, **ctx)
        else:
            log.debug("celery.revoked", task_id=tid, **ctx)

    def _unavailable(
        self, step: str, exc: BaseException, ctx: Mapping[str, str]
    ) -> ExecutorUnavailable:
        log.warning("celery.unavailable", step=step, error=type(exc).__name__, **ctx)
        return ExecutorUnavailable(
            f"Celery {step} of task {ctx['task_name']} failed: Core's broker or result backend "
            f"is unreachable ({type(exc).__name__}: {exc})"
        )

    def ping(self, *, timeout: float = 1.0) -> list[str]:
        """
        Return the names of the workers answering a ping within *timeout*.

        Raises:
            ExecutorUnavailable: the broker cannot be reached.
        """
        try:
            replies = self._app.control.ping(timeout=timeout) or []
        except self._errors as exc:
            raise self._unavailable("ping", exc, {"task_name": "ping"}) from None
        return sorted(name for reply in replies for name in reply)

    def close(self) -> None:
        """Close the broker pools and the result backend connections."""
        self._closed.set()
        try:
            self._app.close()
        except self._best_effort_errors as exc:  # pragma: no cover - best effort
            log.debug("celery.close_failed", error=type(exc).__name__)


def _exception_text(value: Any) -> str:
    if isinstance(value, BaseException):
        if value.args and len(value.args) == 1:
            return str(value.args[0])
        return str(value)
    return "" if value is None else str(value)
