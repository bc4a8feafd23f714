"""The Core executor (``EXECUTOR_BACKEND=core``): AtlasReg Core does the work.

Implements the ``Executor`` port (architecture §5, §6) on top of Core's Celery
tasks, Airflow DAGs and Scrapy project:

- ``run_source``: the task or DAG it names checked against ``CORE_TASKS`` /
  ``AIRFLOW_DAGS``, its ``url_feed`` through the URL guard, then its
  handler from the registry (built-ins and ``atlasreg_cursor.handlers``
  plugins, see :mod:`.handlers`); project
  spiders run in the run's one crawl process, shared with the local
  fallback's generic spiders;
- ``close_run``: stops what still runs for a run — Celery waits return
  (their tasks revoked), Airflow waits stop, the crawl process ends;
- ``process``: Celery ``process_document(doc_id, run_id)`` for every
  document, at most ``processing_concurrency`` in flight, within the
  deadline; failed documents are counted and recorded as Gold errors, and
  only a run where every document failed is ``ProcessingFailed``;
- ``build_gold``: Celery ``generate_gold_json(run_id, date)``; what comes
  back must be Gold 2.0 for this run (else ``InvalidGold``, and nothing is
  published), then the run's own source and processing errors are merged in;
- ``reprocess``: Celery ``reprocess_date(date, run_id)``.

Settings read (by the composition root): ``CELERY_BROKER_URL``,
``CELERY_RESULT_BACKEND``, ``AIRFLOW_API_URL``, ``AIRFLOW_USERNAME``,
``AIRFLOW_PASSWORD``, ``AIRFLOW_API_VERSION``, ``SCRAPY_PROJECT_PATH``,
``PROCESSING_CONCURRENCY``, ``ALLOW_PRIVATE_SOURCES``, ``CORE_TASKS``,
``AIRFLOW_DAGS``, ``CRAWL_*``.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from atlasreg_cursor.adapters._netguard import Resolver
from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
from atlasreg_cursor.domain.errors import InvalidGold, ProcessingFailed, SourceFailed
from atlasreg_cursor.domain.gold import (
    GoldDocument,
    GoldErrorEntry,
    isoformat_z,
    merge_errors,
    parse_gold,
)
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig

from .allowed import CoreAllowList
from .celery import TaskError, as_processing_failed
from .crawl_process import DEFAULT_IDLE_SECONDS, CrawlPolicy, CrawlSessions
from .handlers import CoreServices, Handler, registry

if TYPE_CHECKING:
    from atlasreg_cursor.ports.executor import Executor

    from .airflow import AirflowClient
    from .celery import CeleryGateway

log = structlog.get_logger()

PROCESS_TASK = "process_document"
GOLD_TASK = "generate_gold_json"
REPROCESS_TASK = "reprocess_date"
DEFAULT_GOLD_TIMEOUT = 600.0
PROCESSING_SOURCE = "processing"


class CoreExecutor:
    """
    Run sources, processing and Gold generation on AtlasReg Core.

    Args:
        celery: the gateway to Core's Celery tasks.
        airflow: the Airflow client, or ``None`` when ``AIRFLOW_API_URL`` is unset
            (``AIRFLOW_DAG`` sources then fail as not available).
        scrapy_project_path: Core's Scrapy project (``SCRAPY_PROJECT_PATH``).
        local_fallback: the local executor serving Scrapy sources that have
            no project spider.
        processing_concurrency: most ``process_document`` tasks in flight.
        handlers: handlers by id (default: :func:`.handlers.registry`).
        gold_timeout: seconds to wait for ``generate_gold_json``.
        clock: the current UTC time (tests pass their own).
        allow_private_sources: hand ``url_feed``s with non-public addresses to
            Core and let project spiders fetch from them
            (``ALLOW_PRIVATE_SOURCES``); refused by default.
        resolver: resolves host names for the URL guard (tests pass their own).
        crawls: the crawl processes of the runs (default: the local
            fallback's, so a run has one crawl process).
        policy: the crawl policy (``CRAWL_*``) of the crawl processes made
            here (when neither *crawls* nor the fallback's are used).
        env_allow: more variables those crawl processes may inherit (``CRAWL_ENV_ALLOW``).
        idle_seconds: an idle crawl process of theirs is stopped after this long.
        core_tasks: the Celery tasks a ``CUSTOM_SCRAPER`` source may name
            (``CORE_TASKS``); ``None`` allows any.
        airflow_dags: the DAG ids (shell-style patterns) an ``AIRFLOW_DAG``
            source may trigger (``AIRFLOW_DAGS``); ``None`` allows any.
    """

    def __init__(
        self,
        *,
        celery: CeleryGateway,
        airflow: AirflowClient | None,
        scrapy_project_path: Path | None,
        local_fallback: Executor | None,
        processing_concurrency: int = 16,
        handlers: Mapping[str, Handler] | None = None,
        gold_timeout: float = DEFAULT_GOLD_TIMEOUT,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        allow_private_sources: bool = False,
        resolver: Resolver | None = None,
        crawls: CrawlSessions | None = None,
        policy: CrawlPolicy | None = None,
        env_allow: Iterable[str] = (),
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        core_tasks: Iterable[str] | None = None,
        airflow_dags: Iterable[str] | None = None,
    ) -> None:
        if processing_concurrency < 1:
            raise ValueError("processing_concurrency must be at least 1")
        shared = getattr(local_fallback, "crawls", None)
        if (
            crawls is None
            and isinstance(shared, CrawlSessions)
            and shared.project_path == scrapy_project_path
        ):
            crawls = shared
        self._own_crawls = crawls is None and scrapy_project_path is not None
        if crawls is None and scrapy_project_path is not None:
            crawls = CrawlSessions(
                work_dir=Path(tempfile.gettempdir()) / "atlasreg-crawls",
                policy=policy,
                project_path=scrapy_project_path,
                allow_private=allow_private_sources,
                env_allow=env_allow,
                idle_seconds=idle_seconds,
            )
        self._core = CoreServices(
            celery=celery,
            airflow=airflow,
            scrapy_project_path=scrapy_project_path,
            local_fallback=local_fallback,
            allow_private=allow_private_sources,
            resolver=resolver,
            crawls=crawls,
            allowed=CoreAllowList(tasks=core_tasks, dags=airflow_dags),
        )
        self._concurrency = processing_concurrency
        self._handlers = dict(registry() if handlers is None else handlers)
        self._gold_timeout = gold_timeout
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"CoreExecutor(celery={self._core.celery!r}, airflow={self._core.airflow!r}, "
            f"handlers={sorted(self._handlers)!r})"
        )

    @property
    def crawls(self) -> CrawlSessions | None:
        """The crawl processes this executor's project spiders run in."""
        return self._core.crawls

    @property
    def handler_ids(self) -> frozenset[str]:
        """The handler ids this executor serves."""
        return frozenset(self._handlers)

    def run_source(self, source: SourceConfig, run: RunContext) -> SourceResult:
        """
        Run *source* through its handler, its allow-lists and ``url_feed`` checked first.

        The URL guard runs before ANY handler, third-party ones included, so
        no handler is ever given a ``url_feed`` the guard refuses.

        Raises:
            SourceFailed: the source failed, no handler has its id, it names
                a task or DAG off the allow-lists (``not_allowed``), or the
                guard refused its ``url_feed`` (``invalid_url``,
                ``forbidden_address``, ``network_error``).
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        handler = self._handlers.get(source.handler_id)
        if handler is None:
            raise SourceFailed(
                f"no handler {source.handler_id!r} is installed; "
                f"known: {', '.join(sorted(self._handlers))}",
                error_type="unknown_handler",
            )
        self._core.check_allowed(source)
        self._core.vet_feed(source)
        log.debug("core.source_started", source_id=source.id, handler_id=source.handler_id)
        result = handler(source, run, self._core)
        if not isinstance(result, SourceResult):
            raise SourceFailed(
                f"handler {source.handler_id} returned {type(result).__name__}, not a SourceResult",
                error_type="handler_error",
            )
        return result

    def process(
        self, documents: Sequence[Document], run: RunContext, *, timeout_seconds: float
    ) -> ProcessingResult:
        """
        Run ``process_document`` for every document within *timeout_seconds*.

        Raises:
            ProcessingFailed: every document failed.
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        if not documents:
            return ProcessingResult()
        kwargs = [{"doc_id": d.document_id, "run_id": run.run_id} for d in documents]
        outcomes = self._core.celery.call_many(
            PROCESS_TASK, kwargs, concurrency=self._concurrency, timeout=timeout_seconds
        )
        now = isoformat_z(self._clock())
        errors = tuple(
            GoldErrorEntry(
                source_id=doc.source_id,
                error_type=outcome.error.error_type,
                error_message=f"document {doc.document_id}: {outcome.error}",
                timestamp=now,
            )
            for doc, outcome in zip(documents, outcomes, strict=True)
            if outcome.error is not None
        )
        failed = len(errors)
        processed = len(documents) - failed
        log.info("core.processed", run_id=run.run_id, processed=processed, failed=failed)
        if processed == 0:
            first = errors[0].error_message if errors else "no result"
            raise ProcessingFailed(
                f"processing failed for all {len(documents)} documents (first: {first})"
            )
        return ProcessingResult(
            processed_count=processed,
            failed_count=failed,
            errors=errors,
            documents_count=len(documents),
        )

    def build_gold(
        self,
        run: RunContext,
        results: Sequence[SourceResult],
        processing: ProcessingResult,
    ) -> GoldDocument:
        """
        Have Core generate the run's Gold, validate it and merge the run's errors.

        Raises:
            InvalidGold: Core's answer is not Gold 2.0 for this run.
            ProcessingFailed: ``generate_gold_json`` failed or timed out.
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        date = run.date.isoformat()
        try:
            raw = self._core.celery.call(
                GOLD_TASK, kwargs={"run_id": run.run_id, "date": date}, timeout=self._gold_timeout
            )
        except TaskError as exc:
            raise as_processing_failed(exc) from None
        gold = _parse_core_gold(raw, run)
        now = isoformat_z(self._clock())
        extra = [
            GoldErrorEntry(
                source_id=r.source_id,
                error_type=r.error_type or "handler_error",
                error_message=r.error_message or "",
                timestamp=now,
            )
            for r in results
            if not r.ok
        ]
        extra.extend(processing.errors)
        merged = merge_errors(gold, extra)
        log.info(
            "core.gold_built",
            run_id=run.run_id,
            events=len(merged.events),
            errors=len(merged.errors),
        )
        return merged

    def reprocess(
        self, run: RunContext, sources: Sequence[SourceConfig], *, timeout_seconds: float
    ) -> ProcessingResult:
        """
        Run Core's ``reprocess_date(date, run_id)`` and wait for it.

        Raises:
            ProcessingFailed: the task failed, timed out or reported an error.
            ExecutorUnavailable: Core cannot be reached (transient).
        """
        kwargs = {"date": run.date.isoformat(), "run_id": run.run_id}
        try:
            result = self._core.celery.call(REPROCESS_TASK, kwargs=kwargs, timeout=timeout_seconds)
        except TaskError as exc:
            raise as_processing_failed(exc) from None
        if isinstance(result, Mapping) and result.get("error"):
            raise ProcessingFailed(f"task {REPROCESS_TASK} reported an error: {result['error']}")
        counts = result if isinstance(result, Mapping) else {}
        processed = _count(counts, "processed_count")
        failed = _count(counts, "failed_count")
        documents = _count(counts, "documents_count") or processed + failed
        log.info("core.reprocessed", run_id=run.run_id, processed=processed, failed=failed)
        return ProcessingResult(
            processed_count=processed, failed_count=failed, documents_count=documents
        )

    def close_run(self, run: RunContext) -> None:
        """
        Stop everything still running for *run*: Celery waits (tasks revoked),
        Airflow waits, its crawl process. Idempotent; never raises.
        """
        try:
            self._core.cancel_run(run)
            if self._core.crawls is not None:
                self._core.crawls.close_run(run.run_id)
            if self._core.local_fallback is not None:
                self._core.local_fallback.close_run(run)
        except Exception as exc:  # closing must never fail the caller
            log.warning("core.close_run_failed", run_id=run.run_id, error=repr(exc))

    def cancel_source(self, run: RunContext, source_id: str) -> None:
        """
        Stop one source of *run*: its Celery or Airflow wait (the task revoked),
        its wait for a crawl, its local download. Idempotent; never raises.
        """
        try:
            self._core.cancel_source(run, source_id)
            if self._core.crawls is not None:
                self._core.crawls.cancel_source(run.run_id, source_id)
            if self._core.local_fallback is not None:
                self._core.local_fallback.cancel_source(run, source_id)
        except Exception as exc:  # cancelling must never fail the caller
            log.warning(
                "core.cancel_source_failed", run_id=run.run_id, source_id=source_id, error=repr(exc)
            )

    def close(self) -> None:
        """Close the Celery app, the Airflow pool, the crawls and the local executor."""
        if self._own_crawls and self._core.crawls is not None:
            self._core.crawls.close()
        self._core.celery.close()
        if self._core.airflow is not None:
            self._core.airflow.close()
        if self._core.local_fallback is not None:
            self._core.local_fallback.close()


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _parse_core_gold(raw: Any, run: RunContext) -> GoldDocument:
    """Validate what ``generate_gold_json`` returned as this run's Gold 2.0."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidGold(f"{GOLD_TASK} returned a string that is not JSON: {exc}") from None
    try:
        gold = parse_gold(raw)
    except InvalidGold as exc:
        log.warning("core.gold_invalid", run_id=run.run_id, reason=str(exc))
        raise InvalidGold(f"{GOLD_TASK} for run {run.run_id} returned {exc}") from None
    if gold.metadata.run_id != run.run_id:
        raise InvalidGold(
            f"{GOLD_TASK} for run {run.run_id} returned the Gold of run {gold.metadata.run_id}"
        )
    if gold.metadata.date != run.date.isoformat():
        raise InvalidGold(
            f"{GOLD_TASK} for run {run.run_id} returned Gold dated {gold.metadata.date}, "
            f"not {run.date.isoformat()}"
        )
    return gold
