"""The backend registry: for each port, a table from backend name to a record.

These tables are the one list of backend names and the one place that says
what each backend can do: :mod:`.settings` checks ``*_BACKEND`` and ``MODE``
against them and reads the capabilities that change a default (the
visibility timeout, sweeping, the notifier); :mod:`.bootstrap` builds from
them. A record holds its factory, which takes :class:`~.settings.Settings`
and the App being built (:class:`Wiring`) and imports its adapter (and the
adapter's library) inside, so ``local`` mode never imports botocore, redis
or Celery; what factories share besides the ports (the webhook signer, the
crawl policy, Core's clients) comes from :mod:`.components`. To add a
backend, add its record to its port's table (README, "Adding an adapter").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import attrs

from .components import build_signer, core_clients
from .crawling import crawl_policy, local_executor
from .errors import SettingsError

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.breakers import BreakerBoard
    from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient
    from atlasreg_cursor.ports import ConfigSource, Executor, MessageQueue, Notifier, ObjectStore

    from .settings import Settings

P = TypeVar("P", covariant=True)


class Wiring(Protocol):
    """What a factory may take from the App it builds for (the App itself)."""

    @property
    def storage(self) -> ObjectStore:
        """The App's object storage, behind its breaker."""

    @property
    def breakers(self) -> BreakerBoard:
        """The App's circuit breakers."""

    @property
    def crawl_ahead(self) -> bool:
        """Start a spare crawl process as soon as the executor is built (commands that crawl)."""

    @property
    def keep_crawl_warm(self) -> bool:
        """Keep a spare crawl process warm for the next run after each run (the daemon)."""


def _never(s: Settings) -> bool:
    return False


@attrs.frozen(kw_only=True)
class Backend(Generic[P]):
    """
    One backend of a port: its factory and what the rest of the service must know of it.

    Attributes:
        build: makes the adapter from the settings and the App being built;
            raises ``SettingsError`` naming a missing setting.
        requires: settings (field names) that ``load_settings`` refuses to
            go without when this backend is chosen; other missing settings
            are reported by ``build``, when the port is first used.
        default_when: for a port ``MODE`` does not decide (the notifier):
            the first backend of the table whose ``default_when(settings)``
            holds is the default.
    """

    build: Callable[[Settings, Wiring], P]
    requires: tuple[str, ...] = ()
    default_when: Callable[[Settings], bool] = _never


@attrs.frozen(kw_only=True)
class QueueBackend(Backend["MessageQueue"]):
    """
    A queue backend.

    Attributes:
        extends_leases: the heartbeat can renew a lease (``extend``), so the
            visibility timeout defaults to ``LEASE_SECONDS``; otherwise it
            covers a whole run (1800 s) and stranded runs are swept from
            their journals (``SWEEP_ORPHANS`` on).
        shares_breakers_through_redis: the circuit breakers keep their state
            in ``REDIS_URL`` (the queue's Redis), shared by every daemon.
        delivery_limit: how many deliveries the queue itself allows a
            message before retiring it (``None``: no limit of its own).
    """

    extends_leases: bool = True
    shares_breakers_through_redis: bool = False
    delivery_limit: Callable[[Settings], int] | None = None


@attrs.frozen(kw_only=True)
class ConfigBackend(Backend["ConfigSource"]):
    """
    A watchlist source backend.

    Attributes:
        writable: ``config push`` stores the watchlist through the source
            (its ``put_value``, at ``WATCHLIST_KEY``); otherwise it writes
            the watchlist file (``WATCHLIST_FILE``) the source reads.
    """

    writable: bool = False


@attrs.frozen(kw_only=True)
class StorageBackend(Backend["ObjectStore"]):
    """An object storage backend (always behind the ``storage`` breaker)."""


@attrs.frozen(kw_only=True)
class NotifierBackend(Backend["Notifier"]):
    """
    A notifier backend.

    Attributes:
        behind_breaker: the App wraps it in the ``webhook`` circuit breaker.
    """

    behind_breaker: bool = False


@attrs.frozen(kw_only=True)
class ExecutorBackend(Backend["Executor"]):
    """
    An executor backend (always behind the per-host source breakers).

    Attributes:
        handler_plugins: watchlists may name the handlers of installed
            plugins (entry points), not only the built-in ones.
        probes_core: ``health`` checks Core's Celery workers and Airflow API.
    """

    handler_plugins: bool = False
    probes_core: bool = False


def _missing(setting: str, backend: str) -> SettingsError:
    return SettingsError(f"{setting}: required by the {backend} backend")


# --- queue ---------------------------------------------------------------------


def _sqlite_queue(s: Settings, app: Wiring) -> MessageQueue:
    from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue

    s.home.mkdir(parents=True, exist_ok=True)
    return SqliteQueue(
        s.home / "queue.sqlite3",
        queue_name=s.queue_name,
        visibility_timeout=s.visibility_seconds,
    )


def _redis_queue(s: Settings, app: Wiring) -> MessageQueue:
    from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue

    return RedisListQueue(
        s.redis_url, queue_name=s.queue_name, visibility_timeout=s.visibility_seconds
    )


def _cloudflare_client(s: Settings, endpoint: str | None) -> CloudflareClient:
    from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient

    if not s.cf_api_token:
        raise _missing("CF_API_TOKEN", "cloudflare")
    if not s.cf_account_id:
        raise _missing("CF_ACCOUNT_ID", "cloudflare")
    return CloudflareClient(
        api_endpoint=endpoint or s.cf_api_endpoint, token=s.cf_api_token, account_id=s.cf_account_id
    )


def _cloudflare_queue(s: Settings, app: Wiring) -> MessageQueue:
    from atlasreg_cursor.adapters.cloudflare.queue import CloudflareQueue

    if not s.cf_queue_id:
        raise _missing("CF_QUEUE_ID", "cloudflare queue")
    return CloudflareQueue(
        _cloudflare_client(s, s.cf_queue_endpoint),
        queue_id=s.cf_queue_id,
        dlq_queue_id=s.cf_dlq_queue_id,
        # the dead letters' records (and, without a DLQ queue, the letters),
        # in the App's storage (closed by the App)
        dead_letter_store=app.storage,
        visibility_timeout=s.visibility_seconds,
    )


QUEUES: dict[str, QueueBackend] = {
    "sqlite": QueueBackend(build=_sqlite_queue),
    "redis": QueueBackend(build=_redis_queue, shares_breakers_through_redis=True),
    "cloudflare": QueueBackend(
        build=_cloudflare_queue,
        extends_leases=False,
        delivery_limit=lambda s: s.cf_queue_max_retries,
    ),
}


# --- config --------------------------------------------------------------------


def known_handlers(s: Settings) -> frozenset[str]:
    """Built-in handler ids plus those of installed plugins (Core executor)."""
    if not executor_backend(s).handler_plugins:
        from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS

        return BUILTIN_HANDLERS
    from atlasreg_cursor.adapters.core.handlers import known_handler_ids

    return frozenset(known_handler_ids())


def _file_config(s: Settings, app: Wiring) -> ConfigSource:
    from atlasreg_cursor.adapters.local.file_config import FileConfigSource

    return FileConfigSource(
        s.watchlist_path, ttl_seconds=s.config_ttl_seconds, known_handlers=known_handlers(s)
    )


def _kv_config(s: Settings, app: Wiring) -> ConfigSource:
    from atlasreg_cursor.adapters.cloudflare.kv import KVConfigSource

    if not s.cf_kv_namespace_id:
        raise _missing("CF_KV_NAMESPACE_ID", "kv config")
    return KVConfigSource(
        _cloudflare_client(s, s.cf_kv_api_endpoint),
        namespace_id=s.cf_kv_namespace_id,
        key=s.watchlist_key,
        ttl_seconds=s.config_ttl_seconds,
        known_handlers=known_handlers(s),
    )


CONFIGS: dict[str, ConfigBackend] = {
    "file": ConfigBackend(build=_file_config),
    "kv": ConfigBackend(build=_kv_config, writable=True),
}


# --- storage -------------------------------------------------------------------


def _file_storage(s: Settings, app: Wiring) -> ObjectStore:
    from atlasreg_cursor.adapters.local.file_store import FileObjectStore

    root = s.home / "store"
    root.mkdir(parents=True, exist_ok=True)
    return FileObjectStore(root)


def _minio_storage(s: Settings, app: Wiring) -> ObjectStore:
    from atlasreg_cursor.adapters.s3 import S3ObjectStore

    if not s.minio_endpoint:
        raise _missing("MINIO_ENDPOINT", "minio storage")
    if not s.minio_access_key or not s.minio_secret_key:
        raise _missing("MINIO_ACCESS_KEY/MINIO_SECRET_KEY", "minio storage")
    return S3ObjectStore(
        endpoint_url=s.minio_endpoint,
        secure=s.minio_secure,
        bucket=s.bucket,
        access_key=s.minio_access_key,
        secret_key=s.minio_secret_key,
        dialect="minio",
        create_bucket=s.s3_create_bucket,
    )


def _r2_storage(s: Settings, app: Wiring) -> ObjectStore:
    from atlasreg_cursor.adapters.s3 import S3ObjectStore

    if not s.r2_endpoint:
        raise _missing("R2_ENDPOINT", "r2 storage")
    if not s.r2_access_key or not s.r2_secret_key:
        raise _missing("R2_ACCESS_KEY/R2_SECRET_KEY", "r2 storage")
    return S3ObjectStore(
        endpoint_url=s.r2_endpoint,
        bucket=s.bucket,
        access_key=s.r2_access_key,
        secret_key=s.r2_secret_key,
        region="auto",
        dialect="r2",
        create_bucket=False,
    )


STORAGES: dict[str, StorageBackend] = {
    "file": StorageBackend(build=_file_storage),
    "minio": StorageBackend(build=_minio_storage),
    "r2": StorageBackend(build=_r2_storage),
}


# --- notifier ------------------------------------------------------------------


def _webhook(s: Settings, app: Wiring) -> Notifier:
    from atlasreg_cursor.adapters.webhook import WebhookNotifier

    signer = build_signer(s)
    if signer is None or not s.hook_endpoint:
        raise _missing("HOOK_ENDPOINT/HOOK_HMAC_SECRET", "webhook notifier")
    return WebhookNotifier(
        s.hook_endpoint, signer, timeout=s.hook_timeout_seconds, attempts=s.hook_attempts
    )


def _outbox(s: Settings, app: Wiring) -> Notifier:
    from atlasreg_cursor.adapters.local.outbox import OutboxNotifier

    s.home.mkdir(parents=True, exist_ok=True)
    return OutboxNotifier(s.home / "outbox.jsonl", build_signer(s))


NOTIFIERS: dict[str, NotifierBackend] = {
    "webhook": NotifierBackend(
        build=_webhook,
        behind_breaker=True,
        requires=("hook_endpoint", "hook_hmac_secret"),
        default_when=lambda s: bool(s.hook_endpoint),
    ),
    "outbox": NotifierBackend(build=_outbox, default_when=lambda s: True),
}


# --- executor ------------------------------------------------------------------


def _local_executor(s: Settings, app: Wiring | None = None) -> Executor:
    return local_executor(
        s,
        ahead=app is not None and app.crawl_ahead,
        keep_warm=app is not None and app.keep_crawl_warm,
    )


def _core_executor(s: Settings, app: Wiring) -> Executor:
    from atlasreg_cursor.adapters.core.executor import CoreExecutor

    celery, airflow = core_clients(s, app.breakers)
    return CoreExecutor(
        celery=celery,
        airflow=airflow,
        scrapy_project_path=s.scrapy_project_path,
        local_fallback=_local_executor(s),
        processing_concurrency=s.processing_concurrency,
        allow_private_sources=s.allow_private_sources,
        policy=crawl_policy(s),
        env_allow=(s.crawl_env_allow or "").split(","),
        idle_seconds=s.crawl_idle_seconds,
        core_tasks=s.core_task_names,
        airflow_dags=s.airflow_dag_patterns,
    )


EXECUTORS: dict[str, ExecutorBackend] = {
    "local": ExecutorBackend(build=_local_executor),
    "core": ExecutorBackend(build=_core_executor, handler_plugins=True, probes_core=True),
}


BACKENDS: Mapping[str, Mapping[str, Backend[object]]] = {
    "queue": QUEUES,
    "config": CONFIGS,
    "storage": STORAGES,
    "notifier": NOTIFIERS,
    "executor": EXECUTORS,
}
"""Port → backend name → record: the names ``*_BACKEND`` accepts."""

B = TypeVar("B", bound=Backend[object])


def chosen(table: Mapping[str, B], port: str, s: Settings) -> tuple[str, B]:
    """
    *port*'s backend name in *s* and its record in *table*.

    Raises:
        SettingsError: the name is not in the table.
    """
    name = s.backend(port)
    record = table.get(name)
    if record is None:
        raise SettingsError(f"{port.upper()}_BACKEND: unknown backend {name!r}")
    return name, record


def queue_backend(s: Settings) -> QueueBackend:
    """The record of the queue backend ``QUEUE_BACKEND`` (or ``MODE``) chooses."""
    return chosen(QUEUES, "queue", s)[1]


def config_backend(s: Settings) -> ConfigBackend:
    """The record of the config backend ``CONFIG_BACKEND`` (or ``MODE``) chooses."""
    return chosen(CONFIGS, "config", s)[1]


def notifier_backend(s: Settings) -> NotifierBackend:
    """The record of the notifier ``NOTIFIER_BACKEND`` (or ``HOOK_ENDPOINT``) chooses."""
    return chosen(NOTIFIERS, "notifier", s)[1]


def executor_backend(s: Settings) -> ExecutorBackend:
    """The record of the executor ``EXECUTOR_BACKEND`` (or ``MODE``) chooses."""
    return chosen(EXECUTORS, "executor", s)[1]
