"""Source handlers of the Core executor, and the registry that finds them.

A handler runs one source on AtlasReg Core and says what it collected::

    handler(source: SourceConfig, run: RunContext, core: CoreServices) -> SourceResult

Built-in handlers (architecture §6 Executor):

- ``SCRAPY_CVM_API`` / ``SCRAPY_NEWSROOM_PLAYER``: spider ``spider_id`` of the
  Scrapy project at ``SCRAPY_PROJECT_PATH``, run in the run's crawl process
  with ``-a url=<url_feed> -a run_id=<run_id>`` (and ``-a player_id=`` when
  set), under the URL guard, its items filtered by ``keywords``; without
  such a spider (the project is listed with ``scrapy list``, again every 5
  minutes), the generic local spiders serve the source.
- ``DOWNLOAD_CSV``: Celery task ``download_csv(url_feed, run_id)``.
- ``AIRFLOW_DAG``: triggers ``dag_id`` as run ``<run_id>_<dag_id>`` with
  ``conf={"run_id", "source_config"}`` and waits for it (the source's
  timeout); documents come from the ``return_value`` XCom of
  ``xcom_task_id`` when set (Airflow's id pattern, checked before the trigger).
- ``CUSTOM_SCRAPER``: Celery task ``task_name`` (default ``custom_scrape``)
  with ``source_config`` and ``run_id``.

The task a ``CUSTOM_SCRAPER`` source names and the DAG an ``AIRFLOW_DAG``
source triggers must be in the allow-lists (``CORE_TASKS``, ``AIRFLOW_DAGS``,
:mod:`.allowed`) when they are set: else ``not_allowed``, before anything
is sent.

Handlers stop when the run is closed (:meth:`CoreServices.cancel_run`), or
their source alone is cancelled (:meth:`CoreServices.cancel_source`): a
Celery wait returns and its task is revoked, an Airflow wait stops. A
handler of its own waits on ``core.cancel_event(run, source.id)`` likewise.

A Celery handler task returns ``{"document_ids": [...], "items_count": n,
"error": "..."}``; a non-empty ``error`` fails the source, and more than the
source's ``max_items`` ids fail it with ``too_many_items``.

Every built-in handler passes the source's ``url_feed`` through the URL guard
(:func:`~atlasreg_cursor.adapters._netguard.vet_url`) before anything is
handed to Core — Celery, Airflow or a project spider: another scheme, a
backslash, user-info or control characters are refused (``invalid_url``),
and so are non-public addresses unless ``ALLOW_PRIVATE_SOURCES`` is set
(``forbidden_address``). Core resolves the name again when it fetches, so
Core's own fetchers must keep their guard too (SECURITY.md).

Third-party handlers register under the entry-point group
``atlasreg_cursor.handlers`` (name = ``handler_id``, object = the handler,
or a class made with no arguments); built-in ids cannot be replaced.
``CoreExecutor.run_source`` vets the ``url_feed`` before calling any
handler, so a plugin never gets a URL the guard refuses.

Settings read (by the composition root): ``SCRAPY_PROJECT_PATH``,
``ALLOW_PRIVATE_SOURCES``, ``CORE_TASKS``, ``AIRFLOW_DAGS``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog

from atlasreg_cursor.adapters._netguard import Resolver, vet_url
from atlasreg_cursor.domain.documents import Document, SourceResult
from atlasreg_cursor.domain.errors import HandlerNotAvailable, SourceFailed
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS, SourceConfig, matches_keywords

from .allowed import CoreAllowList
from .celery import TaskError, as_source_failed

if TYPE_CHECKING:
    from atlasreg_cursor.ports.executor import Executor

    from .airflow import AirflowClient, DagRun
    from .celery import CeleryGateway
    from .crawl_process import CrawlSessions

log = structlog.get_logger()

ENTRY_POINT_GROUP = "atlasreg_cursor.handlers"
DEFAULT_CUSTOM_TASK = "custom_scrape"
SPIDER_LIST_TIMEOUT = 60.0
SPIDER_LIST_TTL = 300.0
AIRFLOW_WAIT_SLICE = 2.0


class Handler(Protocol):
    """Protocol: run one source on Core and return what it collected."""

    def __call__(self, source: SourceConfig, run: RunContext, core: CoreServices) -> SourceResult:
        """
        Run *source* for *run*.

        Raises:
            SourceFailed: the source failed (``error_type`` says how).
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        ...


@attrs.define(kw_only=True)
class CoreServices:
    """
    What handlers may use: Celery, Airflow, the Scrapy project (run in the
    run's crawl process, ``crawls``), local spiders, and each run's cancel event.

    ``allow_private`` is ``ALLOW_PRIVATE_SOURCES``; ``resolver`` resolves host
    names for the URL guard (the system's by default; tests pass their own);
    ``allowed`` holds ``CORE_TASKS`` and ``AIRFLOW_DAGS``.
    """

    celery: CeleryGateway
    airflow: AirflowClient | None = None
    scrapy_project_path: Path | None = None
    local_fallback: Executor | None = None
    allow_private: bool = False
    resolver: Resolver | None = attrs.field(default=None, repr=False)
    crawls: CrawlSessions | None = None
    allowed: CoreAllowList = attrs.field(factory=CoreAllowList)
    _cancels: dict[tuple[str, str | None], threading.Event] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _spiders: frozenset[str] | None = attrs.field(default=None, init=False, repr=False)
    _listed_at: float = attrs.field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def vet_feed(self, source: SourceConfig) -> str | None:
        """
        Check the source's ``url_feed`` before it is handed to Core.

        Returns:
            The normalised URL, or ``None`` when the source has no ``url_feed``.

        Raises:
            SourceFailed: ``invalid_url``, ``forbidden_address`` or ``network_error``.
        """
        if not source.url_feed:
            return None
        vetted = vet_url(source.url_feed, allow_private=self.allow_private, resolver=self.resolver)
        return vetted.url

    def check_allowed(self, source: SourceConfig) -> None:
        """
        Refuse a built-in source naming a task or DAG off the allow-lists.

        Raises:
            SourceFailed: ``not_allowed``.
        """
        if source.handler_id == "CUSTOM_SCRAPER":
            self.allowed.check_task(source.task_name or DEFAULT_CUSTOM_TASK)
        elif source.handler_id == "AIRFLOW_DAG" and source.dag_id:
            self.allowed.check_dag(source.dag_id)

    def project_spiders(self) -> frozenset[str]:
        """
        Names of the spiders of the Scrapy project (``scrapy list``, cached).

        Returns:
            An empty set when there is no project or it cannot be listed.
        """
        if self.scrapy_project_path is None:
            return frozenset()
        with self._lock:
            now = time.monotonic()
            if self._spiders is None or now - self._listed_at > SPIDER_LIST_TTL:
                env = self.crawls.environment() if self.crawls is not None else None
                self._spiders = _list_spiders(self.scrapy_project_path, env)
                self._listed_at = now
            return self._spiders

    def cancel_event(self, run: RunContext, source_id: str | None = None) -> threading.Event:
        """
        The event set when *run* is closed, or (given *source_id*) when that
        source is cancelled too; handlers stop waiting on it.
        """
        with self._lock:
            return self._cancels.setdefault((run.run_id, source_id), threading.Event())

    def cancel_run(self, run: RunContext) -> None:
        """Set every cancel event of *run*; its next sources get fresh ones."""
        with self._lock:
            keys = [key for key in self._cancels if key[0] == run.run_id]
            events = [self._cancels.pop(key) for key in keys]
        for event in events:
            event.set()

    def cancel_source(self, run: RunContext, source_id: str) -> None:
        """Set the cancel event of *source_id* in *run*; its next start gets a fresh one."""
        with self._lock:
            event = self._cancels.pop((run.run_id, source_id), None)
        if event is not None:
            event.set()


def _list_spiders(project: Path, env: Mapping[str, str] | None) -> frozenset[str]:
    """``scrapy list`` in *project*, with the crawl processes' allow-listed environment."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "scrapy", "list"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=SPIDER_LIST_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("scrapy.list_failed", project=str(project), error=type(exc).__name__)
        return frozenset()
    if done.returncode != 0:
        log.warning("scrapy.list_failed", project=str(project), returncode=done.returncode)
        return frozenset()
    return frozenset(line.strip() for line in done.stdout.splitlines() if line.strip())


# --- results of Core tasks -------------------------------------------------------


def documents_from_result(
    result: Any, source: SourceConfig, *, origin: str
) -> tuple[tuple[Document, ...], int]:
    """
    Read ``document_ids`` / ``items_count`` / ``error`` from what Core returned.

    A bare list is taken as the document ids.

    Returns:
        The documents and the items count.

    Raises:
        SourceFailed: ``core_error`` when it reports an error, ``invalid_result``
            when it has the wrong shape.
    """
    if isinstance(result, list):
        result = {"document_ids": result}
    if not isinstance(result, Mapping):
        raise SourceFailed(
            f"{origin} returned {type(result).__name__}, expected an object with document_ids",
            error_type="invalid_result",
        )
    error = result.get("error")
    if error:
        raise SourceFailed(f"{origin} reported an error: {error}", error_type="core_error")
    ids = result.get("document_ids", [])
    if isinstance(ids, list) and len(ids) > source.max_items:
        raise SourceFailed(
            f"{origin} returned {len(ids)} documents, more than the source's "
            f"max_items ({source.max_items})",
            error_type="too_many_items",
        )
    if not isinstance(ids, list) or not all(
        isinstance(i, str | int) and not isinstance(i, bool) for i in ids
    ):
        raise SourceFailed(
            f"{origin} returned document_ids that are not a list of ids",
            error_type="invalid_result",
        )
    count = result.get("items_count", len(ids))
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        count = len(ids)
    documents = tuple(
        Document(document_id=str(i), source_id=source.id, player_id=source.player_id) for i in ids
    )
    return documents, count


def _celery_source(
    core: CoreServices,
    source: SourceConfig,
    run: RunContext,
    name: str,
    kwargs: Mapping[str, Any],
) -> SourceResult:
    try:
        result = core.celery.call(
            name,
            kwargs=kwargs,
            timeout=source.timeout_seconds,
            cancel=core.cancel_event(run, source.id),
        )
    except TaskError as exc:
        raise as_source_failed(exc) from None
    documents, count = documents_from_result(result, source, origin=f"task {name}")
    log.debug("core.source_done", source_id=source.id, task_name=name, documents=len(documents))
    return SourceResult(source_id=source.id, documents=documents, items_count=count)


# --- built-in handlers -----------------------------------------------------------


def scrapy_handler(source: SourceConfig, run: RunContext, core: CoreServices) -> SourceResult:
    """Run the project's spider ``spider_id``, or the generic local spiders."""
    core.vet_feed(source)
    project = core.scrapy_project_path
    crawls = core.crawls
    if (
        project is not None
        and crawls is not None
        and source.spider_id
        and source.spider_id in core.project_spiders()
    ):
        from .scrapy import download_timeout_for, items_to_documents, judge, project_spec

        spider_args = {"url": source.url_feed or "", "run_id": run.run_id}
        if source.player_id:
            spider_args["player_id"] = source.player_id
        spec = project_spec(
            source.spider_id,
            spider_args,
            download_timeout=download_timeout_for(source.timeout_seconds),
            options=source.crawl,
            max_items=source.max_items,
        )
        outcome = crawls.crawl(run.run_id, source.id, spec, timeout=source.timeout_seconds)
        items = judge(outcome, source.id)
        documents = tuple(
            d
            for d in items_to_documents(items, source)
            if matches_keywords(source.keywords, d.title, d.summary)
        )
        log.debug(
            "core.spider_done",
            source_id=source.id,
            spider=source.spider_id,
            items=len(items),
            kept=len(documents),
        )
        return SourceResult(source_id=source.id, documents=documents, items_count=len(items))
    if core.local_fallback is None:
        raise HandlerNotAvailable(
            f"no spider {source.spider_id!r} in the Scrapy project and no local spiders "
            f"configured for {source.handler_id}"
        )
    return core.local_fallback.run_source(source, run)


def download_csv_handler(source: SourceConfig, run: RunContext, core: CoreServices) -> SourceResult:
    """Celery ``download_csv(url_feed, run_id)``, the URL vetted first."""
    url = core.vet_feed(source)
    if url is None:
        raise SourceFailed("DOWNLOAD_CSV needs a url_feed", error_type="invalid_config")
    return _celery_source(
        core, source, run, "download_csv", {"url_feed": url, "run_id": run.run_id}
    )


def custom_scraper_handler(
    source: SourceConfig, run: RunContext, core: CoreServices
) -> SourceResult:
    """Celery ``task_name`` (default ``custom_scrape``; in ``CORE_TASKS``) and the source."""
    name = core.allowed.check_task(source.task_name or DEFAULT_CUSTOM_TASK)
    core.vet_feed(source)
    return _celery_source(
        core, source, run, name, {"source_config": dict(source.raw), "run_id": run.run_id}
    )


def airflow_dag_handler(source: SourceConfig, run: RunContext, core: CoreServices) -> SourceResult:
    """Trigger ``dag_id`` (in ``AIRFLOW_DAGS``; idempotently) and wait; documents from its XCom."""
    if core.airflow is None:
        raise HandlerNotAvailable("AIRFLOW_DAG needs AIRFLOW_API_URL, which is not set")
    if not source.dag_id:
        raise SourceFailed("AIRFLOW_DAG source has no dag_id", error_type="invalid_source")
    from .airflow import check_dag_id, check_task_id

    dag_id = core.allowed.check_dag(check_dag_id(source.dag_id))
    if source.xcom_task_id:
        check_task_id(source.xcom_task_id)
    core.vet_feed(source)
    dag_run_id = f"{run.run_id}_{dag_id}"
    conf = {"run_id": run.run_id, "source_config": dict(source.raw)}
    core.airflow.trigger(dag_id, dag_run_id, conf)
    cancel = core.cancel_event(run, source.id)
    finished = _wait_dag(core.airflow, dag_id, dag_run_id, source, cancel)
    if finished.state != "success":
        failed = core.airflow.failed_tasks(dag_id, dag_run_id)
        which = f" (failed tasks: {', '.join(failed)})" if failed else ""
        raise SourceFailed(
            f"DAG run {dag_run_id} of {dag_id} ended {finished.state}{which}",
            error_type="dag_failed",
        )
    if not source.xcom_task_id:
        return SourceResult(source_id=source.id)
    value = core.airflow.xcom_return_value(dag_id, dag_run_id, source.xcom_task_id)
    origin = f"task {source.xcom_task_id} of DAG {dag_id}"
    documents, count = documents_from_result(value, source, origin=origin)
    return SourceResult(source_id=source.id, documents=documents, items_count=count)


def _wait_dag(
    airflow: AirflowClient,
    dag_id: str,
    dag_run_id: str,
    source: SourceConfig,
    cancel: threading.Event,
) -> DagRun:
    """Wait for the DAG run in short slices, so a closed run stops the wait."""
    deadline = time.monotonic() + source.timeout_seconds
    while True:
        left = deadline - time.monotonic()
        try:
            return airflow.wait(dag_id, dag_run_id, timeout=max(0.0, min(AIRFLOW_WAIT_SLICE, left)))
        except SourceFailed as exc:
            if exc.error_type != "timeout":
                raise
            if cancel.is_set():
                raise SourceFailed(
                    f"stopped waiting for DAG run {dag_run_id} of {dag_id}: its run was closed",
                    error_type="cancelled",
                ) from None
            if time.monotonic() >= deadline:
                raise SourceFailed(
                    f"DAG run {dag_run_id} of {dag_id} did not finish within "
                    f"{source.timeout_seconds:.0f}s",
                    error_type="timeout",
                ) from None


BUILTIN: Mapping[str, Handler] = {
    "SCRAPY_CVM_API": scrapy_handler,
    "SCRAPY_NEWSROOM_PLAYER": scrapy_handler,
    "DOWNLOAD_CSV": download_csv_handler,
    "AIRFLOW_DAG": airflow_dag_handler,
    "CUSTOM_SCRAPER": custom_scraper_handler,
}


# --- the registry ----------------------------------------------------------------


def _entry_points() -> Sequence[importlib.metadata.EntryPoint]:
    return tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def registry(extra_entry_points: bool = True) -> dict[str, Handler]:
    """
    Return the handlers by ``handler_id``: built-ins plus installed plugins.

    A plugin that fails to load, is not callable, or reuses a built-in id is
    skipped with a warning.
    """
    handlers: dict[str, Handler] = dict(BUILTIN)
    if not extra_entry_points:
        return handlers
    for ep in _entry_points():
        if ep.name in BUILTIN:
            log.warning("handlers.builtin_id_taken", handler_id=ep.name, value=ep.value)
            continue
        try:
            loaded = ep.load()
            handler = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:  # a broken plugin must not stop the others
            log.warning(
                "handlers.plugin_failed", handler_id=ep.name, value=ep.value, error=repr(exc)
            )
            continue
        if not callable(handler):
            log.warning("handlers.plugin_not_callable", handler_id=ep.name, value=ep.value)
            continue
        handlers[ep.name] = handler
        log.debug("handlers.plugin_loaded", handler_id=ep.name, value=ep.value)
    return handlers


def known_handler_ids() -> frozenset[str]:
    """Built-in handler ids plus the names of installed plugins (not loaded)."""
    return BUILTIN_HANDLERS | {ep.name for ep in _entry_points()}
