"""Start-up checks of the daemon: what would break the guarantees, said clearly.

- A Redis without persistence, or with an evicting ``maxmemory-policy``,
  loses queued messages on a restart or under memory pressure: a warning
  with the fix.
- An S3 backend that ignores ``If-None-Match`` on PUT would overwrite a
  published Gold: the daemon refuses to start (exactly-once depends on it).
- A Cloudflare queue whose ``max_retries`` is below ``MAX_ATTEMPTS`` plus
  :data:`CF_DELIVERY_MARGIN` may retire a message (to its DLQ, or delete it)
  while the service still retries its run: a warning with the wrangler
  setting to change. The consumer's real ``max_retries`` cannot be read over
  the API the service uses, so ``CF_QUEUE_MAX_RETRIES`` says what it is.
- Watchlist keys the Cursor does not read (a misspelt field does nothing),
  and sources with a ``schedule`` while ``SCHEDULE`` is unset (it then means
  nothing): a warning each (:func:`watchlist_warnings`, also printed by
  ``config validate`` and ``config push``).
- With the Core executor, ``CORE_TASKS`` unset (and ``AIRFLOW_DAGS`` unset
  while ``AIRFLOW_API_URL`` is set): the watchlist may name any Celery task
  or DAG; a warning each that says to set it (SECURITY.md §1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from atlasreg_cursor.domain.errors import CursorError, StorageError
from atlasreg_cursor.ports.storage import ConditionalWriteProbe

from .backends import executor_backend, queue_backend
from .bootstrap import App

if TYPE_CHECKING:
    from atlasreg_cursor.domain.sources import WatchlistConfig

    from .settings import Settings

log = structlog.get_logger()

#: Deliveries of a message that do not start its run, which Cloudflare counts
#: toward ``max_retries`` all the same: a copy deferred while another consumer
#: works the run, a delivery whose lease ran out (its consumer died before the
#: run's journal was written, or the pull's reply was lost).
CF_DELIVERY_MARGIN = 5


class StartupRefused(CursorError):
    """Raised when a backend cannot keep the service's guarantees: the daemon does not start."""


def startup_checks(app: App) -> list[str]:
    """
    Check the backends; log a warning per problem.

    Returns:
        The warnings logged.

    Raises:
        StartupRefused: the object store ignores conditional writes.
    """
    warnings = [
        *_queue_warnings(app),
        *_cloudflare_warnings(app),
        *_config_warnings(app),
        *allow_list_warnings(app.settings),
    ]
    for warning in warnings:
        log.warning("startup.warning", problem=warning)
    _check_store(app)
    return warnings


def _method(port: Any, name: str) -> Callable[[], Any] | None:
    try:
        method = getattr(port, name)
    except AttributeError:
        return None
    return method if callable(method) else None


def _queue_warnings(app: App) -> list[str]:
    check = _method(app.queue, "server_warnings")
    if check is None:
        return []
    try:
        found: list[str] = check()
    except CursorError as exc:
        log.warning("startup.check_failed", check="queue server", error=str(exc))
        return []
    return found


def _cloudflare_warnings(app: App) -> list[str]:
    settings = app.settings
    delivery_limit = queue_backend(settings).delivery_limit  # the queue retires messages itself
    limit = None if delivery_limit is None else delivery_limit(settings)
    wanted = settings.max_attempts + CF_DELIVERY_MARGIN
    if limit is None or limit >= wanted:
        return []
    return [
        f"the Cloudflare queue retires a message after max_retries={limit}"
        f" deliveries (CF_QUEUE_MAX_RETRIES); a run may need MAX_ATTEMPTS={settings.max_attempts}"
        f" of them, plus up to {CF_DELIVERY_MARGIN} that start nothing (copies deferred while"
        " the run lives, leases that ran out): below that, Cloudflare may dead-letter a message"
        " whose run still retries (the journal sweep carries the run on). Set the consumer's"
        f" max_retries to at least {wanted} (wrangler.toml [[queues.consumers]] max_retries,"
        " or the dashboard) and CF_QUEUE_MAX_RETRIES to match"
    ]


def allow_list_warnings(settings: Settings) -> list[str]:
    """With the Core executor: ``CORE_TASKS`` / ``AIRFLOW_DAGS`` unset lets the watchlist pick."""
    if not executor_backend(settings).probes_core:  # the executor does not drive Core
        return []
    warnings = []
    if settings.core_task_names is None:
        warnings.append(
            "CORE_TASKS is not set: a CUSTOM_SCRAPER source in the watchlist may call any Celery"
            " task registered on Core's workers (with its source_config and run_id); set"
            " CORE_TASKS to the task names it may call, comma-separated"
            " (e.g. CORE_TASKS=custom_scrape)"
        )
    if settings.airflow_api_url and settings.airflow_dag_patterns is None:
        warnings.append(
            "AIRFLOW_DAGS is not set: an AIRFLOW_DAG source in the watchlist may trigger any DAG"
            " the Airflow user may trigger; set AIRFLOW_DAGS to the DAG ids it may trigger,"
            " comma-separated, shell-style patterns allowed (e.g. AIRFLOW_DAGS=sigel_*)"
        )
    return warnings


def watchlist_warnings(settings: Settings, watchlist: WatchlistConfig) -> list[str]:
    """What in *watchlist* does nothing: keys not read, source schedules without ``SCHEDULE``."""
    warnings = [f"watchlist {ignored}" for ignored in watchlist.ignored_keys]
    scheduled = [s.id for s in watchlist.sources if s.schedule]
    if scheduled and not settings.schedule:
        warnings.append(
            f"sources {', '.join(scheduled)} have a schedule, but SCHEDULE is not set:"
            " nothing is enqueued on a schedule, so their schedule means nothing"
            ' (set SCHEDULE, e.g. "0 6 * * *")'
        )
    return warnings


def _config_warnings(app: App) -> list[str]:
    try:
        watchlist = app.config.load()
    except CursorError as exc:
        log.warning("startup.check_failed", check="watchlist", error=str(exc))
        return []
    return watchlist_warnings(app.settings, watchlist)


def _check_store(app: App) -> None:
    storage = app.storage
    if not isinstance(storage, ConditionalWriteProbe):
        return
    try:
        storage.check_conditional_writes()
    except StorageError as exc:
        if exc.transient:
            log.warning("startup.check_failed", check="conditional writes", error=str(exc))
            return
        raise StartupRefused(str(exc)) from exc
