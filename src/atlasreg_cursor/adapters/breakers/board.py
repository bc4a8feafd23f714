"""Circuit breakers, one per dependency, on pybreaker.

After ``BREAKER_FAIL_MAX`` consecutive failures that mean "unreachable" (the
port's transient errors, not answers such as a failed precondition or a 4xx)
a dependency's breaker opens: calls fail at once with a :class:`CircuitOpen`
subclass of that port's transient error, instead of waiting out timeouts and
retries. After ``BREAKER_RESET_SECONDS`` the next call is a trial: success
closes the breaker, failure opens it again.

Dependencies: ``storage``, ``webhook``, ``celery``, ``airflow`` and
``source:<host>`` per source host. With the Redis queue backend the state is
kept in that Redis (pybreaker's ``CircuitRedisStorage``), so every daemon on
the queue sees the same breakers; otherwise it is kept in memory.

Calls run outside pybreaker's lock (it would serialise every call through a
breaker): admission is checked first, and the outcome is then recorded
through the breaker's state machine.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pybreaker
import structlog

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.domain.errors import (
    CursorError,
    ExecutorUnavailable,
    NotificationUnavailable,
    SourceFailed,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from atlasreg_cursor.domain.sources import SourceConfig

log = structlog.get_logger()
# pybreaker logs Redis trouble with tracebacks through stdlib logging; the
# readiness probe of the queue (the same Redis) reports it instead.
logging.getLogger("pybreaker").addHandler(logging.NullHandler())
logging.getLogger("pybreaker").propagate = False

T = TypeVar("T")
STATE_CODES = {"closed": 0, "half-open": 1, "open": 2}
SOURCE_HOST_ERRORS = frozenset({"network_error", "timeout"})


class CircuitOpen(CursorError):
    """Raised instead of calling a dependency whose breaker is open (fail fast)."""

    transient = True

    def __init__(
        self,
        message: str,
        *,
        dependency: str,
        opened_at: dt.datetime | None,
        trial_in: float | None = None,
    ) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.opened_at = opened_at
        self.retry_after_seconds = trial_in


class StorageCircuitOpen(CircuitOpen, StorageUnavailable):
    """Raised by the store while the ``storage`` breaker is open."""


class NotifierCircuitOpen(CircuitOpen, NotificationUnavailable):
    """Raised by the notifier while the ``webhook`` breaker is open."""


class ExecutorCircuitOpen(CircuitOpen, ExecutorUnavailable):
    """Raised by Core clients while the ``celery`` or ``airflow`` breaker is open."""


class SourceCircuitOpen(CircuitOpen, SourceFailed):
    """Raised for a source whose host's breaker is open (``error_type`` ``circuit_open``)."""

    def __init__(
        self,
        message: str,
        *,
        dependency: str,
        opened_at: dt.datetime | None,
        trial_in: float | None = None,
    ) -> None:
        super().__init__(message, dependency=dependency, opened_at=opened_at, trial_in=trial_in)
        self.error_type = "circuit_open"


def _reraise(exc: BaseException) -> None:
    raise exc


def _noop() -> None:
    return None


class Breaker:
    """
    One dependency's breaker.

    Args:
        dependency: its name (``storage``, ``source:www.gov.br``, …).
        breaker: the pybreaker breaker holding the state.
        counts: whether an exception means the dependency is unreachable.
        open_error: the exception class raised while open.
    """

    def __init__(
        self,
        dependency: str,
        breaker: pybreaker.CircuitBreaker,
        *,
        counts: Callable[[BaseException], bool],
        open_error: type[CircuitOpen],
    ) -> None:
        self.dependency = dependency
        self._cb = breaker
        self._counts = counts
        self._open_error = open_error

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (as stored, shared or not)."""
        return str(self._cb.current_state)

    @property
    def opened_at(self) -> dt.datetime | None:
        """When the breaker last opened (UTC)."""
        opened: dt.datetime | None = self._cb._state_storage.opened_at
        return opened

    @property
    def failures(self) -> int:
        """Consecutive failures counted."""
        return int(self._cb.fail_counter)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Call *fn* unless the breaker is open; record the outcome.

        Raises:
            CircuitOpen: (the port's subclass) the breaker is open and cooling down.
        """
        self.admit()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.record(exc)
            raise
        self.record(None)
        return result

    def admit(self) -> None:
        """
        Raise the fail-fast error while open and cooling down; a trial passes after.

        Raises:
            CircuitOpen: (the port's subclass) the breaker is open.
        """
        if self.state != "open":
            return
        opened = self.opened_at
        reset = dt.timedelta(seconds=self._cb.reset_timeout)
        now = dt.datetime.now(dt.UTC)
        if opened is not None and now < opened + reset:
            raise self._open_error(
                f"circuit open for {self.dependency} since {opened.isoformat()}: failing fast "
                f"(next trial after {(opened + reset).isoformat()})",
                dependency=self.dependency,
                opened_at=opened,
                trial_in=(opened + reset - now).total_seconds(),
            )

    def record(self, exc: BaseException | None) -> None:
        """Feed one call's outcome (``None``: success) to the state machine."""
        try:
            if exc is None or not self._counts(exc):
                self._cb.call(_noop)
            else:
                self._cb.call(_reraise, exc)
        except pybreaker.CircuitBreakerError:
            pass  # opened meanwhile by another call: nothing to record
        except Exception as raised:
            if raised is not exc:
                raise


class _Listener(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", None)
        if old is None or old == new_state.name:
            return
        level = "warning" if new_state.name == "open" else "info"
        getattr(log, level)(
            "breaker.state_changed", dependency=cb.name, old=old, new=new_state.name
        )
        metrics.BREAKER_STATE.labels(dependency=cb.name).set(STATE_CODES.get(new_state.name, 0))


class BreakerBoard:
    """
    Every breaker of the process, created on first use.

    Args:
        fail_max: consecutive failures that open a breaker (``BREAKER_FAIL_MAX``).
        reset_seconds: cooldown before a trial call (``BREAKER_RESET_SECONDS``).
        redis_url: share state through this Redis (the queue's), or keep it in memory.
        namespace: Redis key prefix, e.g. ``cursor:ingest-queue:breaker``.
    """

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_seconds: float = 60.0,
        redis_url: str | None = None,
        namespace: str = "cursor:breaker",
    ) -> None:
        self.fail_max = fail_max
        self.reset_seconds = reset_seconds
        self._redis_url = redis_url
        self._namespace = namespace
        self._redis: Any = None
        self._lock = threading.Lock()
        self._breakers: dict[str, Breaker] = {}

    @property
    def shared(self) -> bool:
        """Whether state is shared through Redis."""
        return self._redis_url is not None

    def breaker_for(
        self,
        dependency: str,
        *,
        counts: Callable[[BaseException], bool] | None = None,
        open_error: type[CircuitOpen] = CircuitOpen,
    ) -> Breaker:
        """
        The breaker of *dependency* (created with *counts* and *open_error* on first use).

        Args:
            counts: which exceptions count as failures (default: transient ``CursorError``).
            open_error: the fail-fast exception class.
        """
        with self._lock:
            breaker = self._breakers.get(dependency)
            if breaker is None:
                breaker = Breaker(
                    dependency,
                    pybreaker.CircuitBreaker(
                        fail_max=self.fail_max,
                        reset_timeout=self.reset_seconds,
                        state_storage=self._storage(dependency),
                        listeners=[_Listener()],
                        name=dependency,
                        throw_new_error_on_trip=False,
                    ),
                    counts=counts or _transient,
                    open_error=open_error,
                )
                self._breakers[dependency] = breaker
                metrics.BREAKER_STATE.labels(dependency=dependency).set(
                    STATE_CODES.get(breaker.state, 0)
                )
            return breaker

    def snapshot(self) -> list[dict[str, Any]]:
        """Each breaker: dependency, state, since when it is open, failures counted."""
        with self._lock:
            breakers = list(self._breakers.values())
        rows = []
        for b in breakers:
            state = b.state
            opened = b.opened_at if state != "closed" else None
            rows.append(
                {
                    "dependency": b.dependency,
                    "state": state,
                    "open_since": opened.isoformat() if opened else None,
                    "failures": b.failures,
                }
            )
        return sorted(rows, key=lambda r: str(r["dependency"]))

    def export(self) -> None:
        """Refresh ``cursor_breaker_state`` (state may change in another daemon)."""
        for row in self.snapshot():
            metrics.BREAKER_STATE.labels(dependency=row["dependency"]).set(
                STATE_CODES.get(row["state"], 0)
            )

    def close(self) -> None:
        """Close the Redis connection, if any."""
        if self._redis is not None:
            self._redis.close()

    def _storage(self, dependency: str) -> pybreaker.CircuitBreakerStorage:
        if self._redis_url is None:
            return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self._redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        try:
            return pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, self._redis, namespace=f"{self._namespace}:{dependency}"
            )
        except redis.RedisError as exc:
            log.warning("breaker.memory_fallback", dependency=dependency, error=str(exc))
            return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, CursorError) and exc.transient and not isinstance(exc, CircuitOpen)


def source_host_failure(exc: BaseException) -> bool:
    return isinstance(exc, SourceFailed) and exc.error_type in SOURCE_HOST_ERRORS


def source_dependency(source: SourceConfig) -> str | None:
    """``source:<host>`` for a source with a URL, else ``None``."""
    if not source.url_feed:
        return None
    host = urllib.parse.urlsplit(source.url_feed).hostname
    return f"source:{host}" if host else None


# --- wrappers that keep the port types (wired in the composition root) -------
