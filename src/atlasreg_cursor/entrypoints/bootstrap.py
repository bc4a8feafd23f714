"""The composition root: ``build(settings, **overrides) -> App``.

The only module that names concrete adapters. For each port a small dict
maps a backend name to a factory; factories import their library inside, so
``local`` mode never imports botocore, redis or Celery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from atlasreg_cursor.domain.ingest import Clock, IngestPolicy, Monotonic, OutboxPolicy, utc_now
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS

from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.breakers import BreakerBoard
    from atlasreg_cursor.adapters.core.airflow import AirflowClient
    from atlasreg_cursor.adapters.core.celery import CeleryGateway
    from atlasreg_cursor.ports import ConfigSource, Executor, MessageQueue, Notifier, ObjectStore


@attrs.frozen(kw_only=True)
class App:
    """One wired instance per port, plus the signer and the service policy."""

    settings: Settings
    queue: MessageQueue
    config: ConfigSource
    store: ObjectStore
    notifier: Notifier
    executor: Executor
    signer: WebhookSigner | None
    policy: IngestPolicy
    outbox_policy: OutboxPolicy
    breakers: BreakerBoard | None = None
    clock: Clock = utc_now
    monotonic: Monotonic = time.monotonic

    def close(self) -> None:
        """Release connections and subprocesses."""
        for port in (self.executor, self.queue, self.breakers):
            close = getattr(port, "close", None)
            if close is not None:
                close()


class _Lazy:
    """Builds a port's adapter on first use (``config validate`` needs no queue)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._value: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if self._value is None:
            with self._lock:  # sources run in threads: build (and import) once
                if self._value is None:
                    self._value = self._factory()
        return getattr(self._value, name)

    def close(self) -> None:
        """Close the adapter if it was ever built."""
        close = getattr(self._value, "close", None)
        if close is not None:
            close()


def _missing(setting: str, backend: str) -> SettingsError:
    return SettingsError(f"{setting}: required by the {backend} backend")


# --- queue ---------------------------------------------------------------------


def _sqlite_queue(s: Settings) -> MessageQueue:
    from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue

    s.home.mkdir(parents=True, exist_ok=True)
    return SqliteQueue(
        s.home / "queue.sqlite3",
        queue_name=s.queue_name,
        visibility_timeout=s.visibility_seconds,
    )


def _redis_queue(s: Settings) -> MessageQueue:
    from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue

    return RedisListQueue(
        s.redis_url, queue_name=s.queue_name, visibility_timeout=s.visibility_seconds
    )


def _cloudflare_client(s: Settings, endpoint: str | None) -> Any:
    from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient

    if not s.cf_api_token:
        raise _missing("CF_API_TOKEN", "cloudflare")
    if not s.cf_account_id:
        raise _missing("CF_ACCOUNT_ID", "cloudflare")
    return CloudflareClient(
        api_endpoint=endpoint or s.cf_api_endpoint, token=s.cf_api_token, account_id=s.cf_account_id
    )


def _cloudflare_queue(s: Settings) -> MessageQueue:
    from atlasreg_cursor.adapters.cloudflare.queue import CloudflareQueue

    if not s.cf_queue_id:
        raise _missing("CF_QUEUE_ID", "cloudflare queue")
    dead_letter_store = None if s.cf_dlq_queue_id else _build_store(s)
    return CloudflareQueue(
        _cloudflare_client(s, s.cf_queue_endpoint),
        queue_id=s.cf_queue_id,
        dlq_queue_id=s.cf_dlq_queue_id,
        dead_letter_store=dead_letter_store,
        visibility_timeout=s.visibility_seconds,
    )


QUEUES: dict[str, Callable[[Settings], MessageQueue]] = {
    "sqlite": _sqlite_queue,
    "redis": _redis_queue,
    "cloudflare": _cloudflare_queue,
}


# --- config --------------------------------------------------------------------


def known_handlers(s: Settings) -> frozenset[str]:
    """Built-in handler ids plus those of installed plugins (Core executor)."""
    if s.backend("executor") != "core":
        return BUILTIN_HANDLERS
    from atlasreg_cursor.adapters.core.handlers import known_handler_ids

    return frozenset(known_handler_ids())


def _file_config(s: Settings) -> ConfigSource:
    from atlasreg_cursor.adapters.local.file_config import FileConfigSource

    return FileConfigSource(
        s.watchlist_path, ttl_seconds=s.config_ttl_seconds, known_handlers=known_handlers(s)
    )


def _kv_config(s: Settings) -> ConfigSource:
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


CONFIGS: dict[str, Callable[[Settings], ConfigSource]] = {"file": _file_config, "kv": _kv_config}


# --- storage -------------------------------------------------------------------


def _file_store(s: Settings) -> ObjectStore:
    from atlasreg_cursor.adapters.local.file_store import FileObjectStore

    root = s.home / "store"
    root.mkdir(parents=True, exist_ok=True)
    return FileObjectStore(root)


def _minio_store(s: Settings) -> ObjectStore:
    from atlasreg_cursor.adapters.s3 import S3ObjectStore

    if not s.minio_endpoint:
        raise _missing("MINIO_ENDPOINT", "minio storage")
    if not s.minio_access_key or not s.minio_secret_key:
        raise _missing("MINIO_ACCESS_KEY/MINIO_SECRET_KEY", "minio storage")
    endpoint = s.minio_endpoint
    if "://" not in endpoint:
        endpoint = f"{'https' if s.minio_secure else 'http'}://{endpoint}"
    return S3ObjectStore(
        endpoint_url=endpoint,
        bucket=s.bucket,
        access_key=s.minio_access_key,
        secret_key=s.minio_secret_key,
        dialect="minio",
        create_bucket=s.s3_create_bucket,
    )


def _r2_store(s: Settings) -> ObjectStore:
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


STORES: dict[str, Callable[[Settings], ObjectStore]] = {
    "file": _file_store,
    "minio": _minio_store,
    "r2": _r2_store,
}


def _build_store(s: Settings) -> ObjectStore:
    return STORES[s.backend("storage")](s)


# --- notifier ------------------------------------------------------------------


def build_signer(s: Settings) -> WebhookSigner | None:
    """The webhook signer, or ``None`` when no secret is configured."""
    if not s.hook_hmac_secret:
        return None
    try:
        return WebhookSigner(
            s.hook_hmac_secret,
            additional_secrets=s.hook_secrets[1:],
            standard=s.hook_standard_signature,
            legacy=s.hook_legacy_signature,
        )
    except ValueError as exc:
        raise SettingsError(f"HOOK_HMAC_SECRET: {exc}") from None


def _webhook(s: Settings) -> Notifier:
    from atlasreg_cursor.adapters.webhook import WebhookNotifier

    signer = build_signer(s)
    if signer is None or not s.hook_endpoint:
        raise _missing("HOOK_ENDPOINT/HOOK_HMAC_SECRET", "webhook notifier")
    return WebhookNotifier(
        s.hook_endpoint, signer, timeout=s.hook_timeout_seconds, attempts=s.hook_attempts
    )


def _outbox(s: Settings) -> Notifier:
    from atlasreg_cursor.adapters.local.outbox import OutboxNotifier

    s.home.mkdir(parents=True, exist_ok=True)
    return OutboxNotifier(s.home / "outbox.jsonl", build_signer(s))


NOTIFIERS: dict[str, Callable[[Settings], Notifier]] = {"webhook": _webhook, "outbox": _outbox}


# --- executor ------------------------------------------------------------------


def crawl_policy(s: Settings) -> Any:
    """The crawl policy of the ``CRAWL_*`` settings."""
    from atlasreg_cursor.adapters.core.crawl_process import CrawlPolicy

    policy = CrawlPolicy(
        max_per_host=s.crawl_max_per_host,
        obey_robots=s.crawl_obey_robots,
        download_delay=s.crawl_download_delay,
        autothrottle=s.crawl_autothrottle,
        concurrent_requests=s.crawl_concurrent_requests,
        retry_times=s.crawl_retry_times,
    )
    return attrs.evolve(policy, user_agent=s.crawl_user_agent) if s.crawl_user_agent else policy


def _local_executor(s: Settings) -> Executor:
    from atlasreg_cursor.adapters.local.executor import LocalExecutor

    work = s.home / "work"
    work.mkdir(parents=True, exist_ok=True)
    return LocalExecutor(
        work_dir=work,
        scrapy_project_path=s.scrapy_project_path,
        allow_private_sources=s.allow_private_sources,
        policy=crawl_policy(s),
        env_allow=(s.crawl_env_allow or "").split(","),
        idle_seconds=s.crawl_idle_seconds,
    )


def core_clients(
    s: Settings, breakers: BreakerBoard | None = None
) -> tuple[CeleryGateway, AirflowClient | None]:
    """Core's Celery gateway and Airflow client (``None`` without ``AIRFLOW_API_URL``)."""
    from atlasreg_cursor.adapters.core.airflow import AirflowClient
    from atlasreg_cursor.adapters.core.celery import CeleryGateway

    broker = s.celery_broker_url or s.redis_url
    celery = CeleryGateway(
        broker_url=broker,
        result_backend=s.celery_result_backend or broker,
        queue=s.celery_queue,
        breaker=_core_breaker(breakers, "celery"),
    )
    airflow = None
    if s.airflow_api_url:
        airflow = AirflowClient(
            base_url=s.airflow_api_url,
            username=s.airflow_username or "",
            password=s.airflow_password or "",
            api_version=s.airflow_api_version,
            breaker=_core_breaker(breakers, "airflow"),
        )
    return celery, airflow


def _core_breaker(breakers: BreakerBoard | None, dependency: str) -> Any:
    if breakers is None:
        return None
    from atlasreg_cursor.adapters.breakers import ExecutorCircuitOpen

    return breakers.breaker_for(dependency, open_error=ExecutorCircuitOpen)


def _core_executor(s: Settings, breakers: BreakerBoard | None = None) -> Executor:
    from atlasreg_cursor.adapters.core.executor import CoreExecutor

    celery, airflow = core_clients(s, breakers)
    return CoreExecutor(
        celery=celery,
        airflow=airflow,
        scrapy_project_path=s.scrapy_project_path,
        local_fallback=_local_executor(s),
        processing_concurrency=s.processing_concurrency,
        allow_private_sources=s.allow_private_sources,
    )


EXECUTORS: dict[str, Callable[[Settings], Executor]] = {
    "local": _local_executor,
    "core": _core_executor,
}


# --- the root ------------------------------------------------------------------


def _factory(table: dict[str, Callable[[Settings], Any]], port: str, s: Settings) -> Any:
    backend = s.backend(port)
    factory = table.get(backend)
    if factory is None:
        raise SettingsError(f"{port.upper()}_BACKEND: unknown backend {backend!r}")

    def make() -> Any:
        try:
            return factory(s)
        except ImportError as exc:  # pragma: no cover - every dependency is installed
            raise SettingsError(
                f"{port.upper()}_BACKEND={backend} needs a library that is missing: {exc.name}"
            ) from None

    return _Lazy(make)


def build(settings: Settings, **overrides: Any) -> App:
    """
    Wire every port for *settings*; keyword *overrides* replace single adapters.

    Adapters are created on first use, so a command only connects to what it
    needs.

    Raises:
        SettingsError: a backend is unknown or misses a setting (on first use).
    """
    ports: dict[str, dict[str, Callable[[Settings], Any]]] = {
        "queue": QUEUES,
        "config": CONFIGS,
        "store": STORES,
        "notifier": NOTIFIERS,
        "executor": EXECUTORS,
    }
    names = {"store": "storage"}
    breakers = overrides.get("breakers") or build_breakers(settings)
    ports["executor"] = {
        **EXECUTORS,
        "core": lambda s: _core_executor(s, breakers),  # Celery calls through its breaker
    }
    wired = {
        port: overrides[port]
        if port in overrides
        else _factory(table, names.get(port, port), settings)
        for port, table in ports.items()
    }
    _guard(settings, wired, overrides, breakers)
    policy = IngestPolicy(
        consumer_id=settings.worker_id,  # once: it is random per process
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        lease_seconds=settings.lease_seconds,
        queue_max_deliveries=(
            settings.cf_queue_max_retries if settings.backend("queue") == "cloudflare" else None
        ),
    )
    outbox_policy = OutboxPolicy(
        max_age_seconds=settings.notify_max_age_hours * 3600.0,
        retry_base_seconds=settings.notify_retry_base_seconds,
        retry_max_seconds=settings.notify_retry_max_seconds,
    )
    return App(
        settings=settings,
        signer=overrides.get("signer", build_signer(settings)),
        policy=overrides.get("policy", policy),
        breakers=breakers,
        outbox_policy=overrides.get("outbox_policy", outbox_policy),
        **{k: overrides[k] for k in ("clock", "monotonic") if k in overrides},
        **wired,
    )


def build_breakers(s: Settings) -> BreakerBoard:
    """One breaker board per process; shared through Redis when the queue is on Redis."""
    from atlasreg_cursor.adapters.breakers import BreakerBoard

    shared = s.backend("queue") == "redis"
    return BreakerBoard(
        fail_max=s.breaker_fail_max,
        reset_seconds=s.breaker_reset_seconds,
        redis_url=s.redis_url if shared else None,
        namespace=f"cursor:{s.queue_name}:breaker",
    )


def _guard(
    s: Settings, wired: dict[str, Any], overrides: dict[str, Any], breakers: BreakerBoard
) -> None:
    """Put the store, the webhook notifier and source hosts behind their breakers."""
    from atlasreg_cursor.adapters.breakers import BreakerExecutor, BreakerNotifier, BreakerStore

    if "store" not in overrides:
        wired["store"] = BreakerStore(wired["store"], breakers)
    if "notifier" not in overrides and s.backend("notifier") == "webhook":
        wired["notifier"] = BreakerNotifier(wired["notifier"], breakers)
    if "executor" not in overrides:
        wired["executor"] = BreakerExecutor(wired["executor"], breakers)


def home_path(settings: Settings, *parts: str) -> Path:
    """A path under ``CURSOR_HOME``."""
    return settings.home.joinpath(*parts)
