"""The composition root: ``build(settings, *, queue=..., storage=..., ...) -> App``.

:mod:`.backends` holds the per-port tables of factories; this module turns
:class:`~.settings.Settings` into an :class:`App` whose ports are built from
those tables on first use (``config validate`` connects to no queue), behind
their circuit breakers. Keyword overrides replace single adapters (tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload, runtime_checkable

import attrs

from atlasreg_cursor.domain.ingest import Clock, IngestPolicy, Monotonic, OutboxPolicy, utc_now
from atlasreg_cursor.ports import DeadLetterBox

from .backends import (
    BACKENDS,
    CONFIGS,
    EXECUTORS,
    NOTIFIERS,
    QUEUES,
    STORAGES,
    Backend,
    chosen,
    known_handlers,
    notifier_backend,
    queue_backend,
)
from .components import build_breakers, build_signer, core_clients
from .crawling import crawl_policy
from .errors import SettingsError

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.breakers import BreakerBoard
    from atlasreg_cursor.domain.signing import WebhookSigner
    from atlasreg_cursor.ports import ConfigSource, Executor, MessageQueue, Notifier, ObjectStore

    from .settings import Settings

T = TypeVar("T")


@runtime_checkable
class _Closable(Protocol):
    """An adapter holding a connection or a subprocess."""

    def close(self) -> None: ...


@runtime_checkable
class _DeadLetterQueue(DeadLetterBox, Protocol):
    """A queue that keeps its dead letters itself (what ``App.dead_letters`` checks for)."""


class _Built(Generic[T]):
    """
    A port built on first access, once, under its App's lock.

    Like :func:`functools.cached_property` (which has no lock since Python
    3.12): ``App.queue`` is typed ``MessageQueue`` and leads to the method
    that builds it.
    """

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._name = make.__name__
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, app: None, owner: type) -> _Built[T]: ...

    @overload
    def __get__(self, app: App, owner: type) -> T: ...

    def __get__(self, app: App | None, owner: type) -> T | _Built[T]:
        if app is None:
            return self
        built = app._built
        if self._name not in built:
            with app._lock:  # sources run in threads: build (and import) once
                if self._name not in built:
                    built[self._name] = self._make(app)
        value: T = built[self._name]
        return value


@attrs.frozen(kw_only=True)
class _Given:
    """Adapters handed to :func:`build` instead of being built from the tables."""

    queue: MessageQueue | None = None
    config: ConfigSource | None = None
    storage: ObjectStore | None = None
    notifier: Notifier | None = None
    executor: Executor | None = None
    breakers: BreakerBoard | None = None


@attrs.frozen(kw_only=True)
class App:
    """
    One instance per port, built on first use, plus the signer and the service policies.

    The storage, the webhook notifier and the executor are wrapped in their
    circuit breakers (handed-in adapters are used as they are).
    :meth:`close` closes what was built or handed in; ``with build(settings)
    as app:`` closes it however the block ends. ``crawl_ahead``: the local
    executor starts a spare crawl process as soon as it is built (commands
    that run jobs); ``keep_crawl_warm``: and starts one again after each run
    (the daemon). Either way an unused spare is stopped after
    ``CRAWL_IDLE_SECONDS`` and on :meth:`close`.
    """

    settings: Settings
    signer: WebhookSigner | None
    policy: IngestPolicy
    outbox_policy: OutboxPolicy
    clock: Clock = utc_now
    monotonic: Monotonic = time.monotonic
    crawl_ahead: bool = False
    keep_crawl_warm: bool = False
    _given: _Given = attrs.field(factory=_Given, alias="given")
    _built: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False, eq=False)
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False, repr=False, eq=False)

    @_Built
    def queue(self) -> MessageQueue:
        """The message queue (``QUEUE_BACKEND``)."""
        if self._given.queue is not None:
            return self._given.queue
        return self._make(QUEUES, "queue")

    @_Built
    def config(self) -> ConfigSource:
        """The watchlist source (``CONFIG_BACKEND``)."""
        if self._given.config is not None:
            return self._given.config
        return self._make(CONFIGS, "config")

    @_Built
    def storage(self) -> ObjectStore:
        """The object storage (``STORAGE_BACKEND``), behind the ``storage`` breaker."""
        if self._given.storage is not None:
            return self._given.storage
        from atlasreg_cursor.adapters.breakers import BreakerStore

        return BreakerStore(self._make(STORAGES, "storage"), self.breakers)

    @_Built
    def notifier(self) -> Notifier:
        """The notifier (``NOTIFIER_BACKEND``); the webhook one behind its breaker."""
        if self._given.notifier is not None:
            return self._given.notifier
        notifier = self._make(NOTIFIERS, "notifier")
        if not notifier_backend(self.settings).behind_breaker:
            return notifier
        from atlasreg_cursor.adapters.breakers import BreakerNotifier

        return BreakerNotifier(notifier, self.breakers)

    @_Built
    def executor(self) -> Executor:
        """The executor (``EXECUTOR_BACKEND``), behind the per-host source breakers."""
        if self._given.executor is not None:
            return self._given.executor
        executor = self._make(EXECUTORS, "executor")  # first: its spare crawl process starts
        try:
            from atlasreg_cursor.adapters.breakers import BreakerExecutor

            return BreakerExecutor(executor, self.breakers)
        except BaseException:
            if isinstance(executor, _Closable):  # its spare must not outlive a failed build
                executor.close()
            raise

    @_Built
    def breakers(self) -> BreakerBoard:
        """The process's circuit breakers (shared through Redis with the Redis queue)."""
        if self._given.breakers is not None:
            return self._given.breakers
        shared = queue_backend(self.settings).shares_breakers_through_redis
        return build_breakers(self.settings, shared=shared)

    @property
    def dead_letters(self) -> DeadLetterBox | None:
        """The queue when it keeps its dead letters itself (SQLite, Redis), else ``None``."""
        queue = self.queue
        return queue if isinstance(queue, _DeadLetterQueue) else None

    def _make(self, table: Mapping[str, Backend[T]], port: str) -> T:
        """Build *port*'s adapter with its backend's factory from *table*."""
        backend, record = chosen(table, port, self.settings)
        try:
            return record.build(self.settings, self)
        except ImportError as exc:  # pragma: no cover - every dependency is installed
            raise SettingsError(
                f"{port.upper()}_BACKEND={backend} needs a library that is missing: {exc.name}"
            ) from None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every port that was built or handed in: connections, subprocesses."""
        errors: list[Exception] = []
        for name in ("executor", "queue", "storage", "config", "notifier", "breakers"):
            port = self._built.get(name)
            if isinstance(port, _Closable):
                try:
                    port.close()
                except Exception as exc:  # close the others, then raise the first
                    errors.append(exc)
        if errors:
            raise errors[0]


_UNSET: Any = object()


def build(
    settings: Settings,
    *,
    queue: MessageQueue | None = None,
    config: ConfigSource | None = None,
    storage: ObjectStore | None = None,
    notifier: Notifier | None = None,
    executor: Executor | None = None,
    breakers: BreakerBoard | None = None,
    signer: WebhookSigner | None = _UNSET,
    policy: IngestPolicy | None = None,
    outbox_policy: OutboxPolicy | None = None,
    clock: Clock = utc_now,
    monotonic: Monotonic = time.monotonic,
    crawl_ahead: bool = False,
    keep_crawl_warm: bool = False,
) -> App:
    """
    Wire every port for *settings*; the keyword arguments replace single adapters.

    Adapters are created on first use, so a command only connects to what it
    needs. *crawl_ahead* and *keep_crawl_warm*: see :class:`App` (only
    commands that crawl ask for them).

    Raises:
        SettingsError: a backend misses a setting (on first use).
    """
    return App(
        settings=settings,
        signer=build_signer(settings) if signer is _UNSET else signer,
        policy=_policy(settings) if policy is None else policy,
        outbox_policy=_outbox_policy(settings) if outbox_policy is None else outbox_policy,
        clock=clock,
        monotonic=monotonic,
        crawl_ahead=crawl_ahead,
        keep_crawl_warm=keep_crawl_warm,
        given=_Given(
            queue=queue,
            config=config,
            storage=storage,
            notifier=notifier,
            executor=executor,
            breakers=breakers,
        ),
    )


def _policy(settings: Settings) -> IngestPolicy:
    limit = queue_backend(settings).delivery_limit
    return IngestPolicy(
        consumer_id=settings.new_consumer_id(),  # once per App: each is unique
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        lease_seconds=settings.lease_seconds,
        queue_max_deliveries=(None if limit is None else limit(settings)),
    )


def _outbox_policy(settings: Settings) -> OutboxPolicy:
    return OutboxPolicy(
        max_age_seconds=settings.notify_max_age_hours * 3600.0,
        retry_base_seconds=settings.notify_retry_base_seconds,
        retry_max_seconds=settings.notify_retry_max_seconds,
    )


def home_path(settings: Settings, *parts: str) -> Path:
    """A path under ``CURSOR_HOME``."""
    return settings.home.joinpath(*parts)


__all__ = [
    "BACKENDS",
    "App",
    "build",
    "build_breakers",
    "build_signer",
    "core_clients",
    "crawl_policy",
    "home_path",
    "known_handlers",
]
