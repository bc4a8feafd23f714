"""The ``local`` executor: built-in spiders, CSV download, rule-based Gold.

Handlers, by ``handler_id`` (architecture §2a):

- ``SCRAPY_NEWSROOM_PLAYER`` and ``CUSTOM_SCRAPER``: the generic newsroom
  spider driven by the source's ``selectors`` (optional ``max_pages``, 10);
- ``SCRAPY_CVM_API``: the generic JSON-API spider driven by ``api``;
- ``DOWNLOAD_CSV``: a streamed download parsed with ``csv``;
- ``AIRFLOW_DAG``: no local meaning, fails with ``handler_not_available``.

A ``spider_id`` naming a spider of the project at ``SCRAPY_PROJECT_PATH`` runs
that spider instead (with ``-a url=… run_id=… player_id=… source_id=…``).
Every crawl of a run runs in that run's one crawl process
(:class:`~atlasreg_cursor.adapters.core.crawl_process.CrawlSessions`), which
cuts each source at its ``timeout_seconds``; :meth:`LocalExecutor.close_run`
ends it. A CSV download obeys robots.txt (``robots.py``) and takes its turn
on its host from the run's crawl process, under the same per-host limit and
delay as the crawl requests (``CRAWL_MAX_PER_HOST``); it is closed at the
source's timeout or when its run is closed. URLs pass the URL guard first.
Items are kept when their title or summary contains one of the source's
``keywords`` (tagged with the keywords matched), then enriched in-process
(``enrichment.py``) and assembled into the Gold with ``domain.gold.build_gold``.

Settings read (by the composition root): ``CURSOR_HOME`` (the work directory
lives under it), ``SCRAPY_PROJECT_PATH``, ``ALLOW_PRIVATE_SOURCES``, ``CRAWL_*``.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog

from atlasreg_cursor.adapters._netguard import check_source_url
from atlasreg_cursor.adapters.core.crawl_process import (
    DEFAULT_IDLE_SECONDS,
    CrawlPolicy,
    CrawlSessions,
)
from atlasreg_cursor.adapters.core.scrapy import (
    crawl_options,
    download_timeout_for,
    items_to_documents,
    judge,
    project_spec,
)
from atlasreg_cursor.adapters.http import GuardedClient
from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
from atlasreg_cursor.domain.errors import CursorError, HandlerNotAvailable, SourceFailed
from atlasreg_cursor.domain.gold import (
    GoldDocument,
    GoldErrorEntry,
    GoldEvent,
    build_gold,
    isoformat_z,
)
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import (
    CrawlOptions,
    SourceConfig,
    fold_text,
    matches_keywords,
)

from .csv_download import DEFAULT_MAX_BYTES
from .downloads import RunDownloads
from .enrichment import enrich
from .robots import RobotsRules
from .threads import run_bounded

log = structlog.get_logger()

NEWSROOM_HANDLERS = frozenset({"SCRAPY_NEWSROOM_PLAYER", "CUSTOM_SCRAPER"})
API_HANDLERS = frozenset({"SCRAPY_CVM_API"})
REPROCESS_WORKERS = 4


class LocalExecutor:
    """
    The Executor of ``local`` mode (see the module docstring).

    Args:
        work_dir: scratch space for crawls (one sub-directory per crawl process).
        scrapy_project_path: a Scrapy project whose spiders ``spider_id`` may name.
        allow_private_sources: fetch from loopback/private addresses too.
        max_download_bytes: size cap of a CSV download.
        http: the guarded HTTP client for downloads (one is made from
            *allow_private_sources* otherwise).
        policy: the crawl policy (``CRAWL_*``); CSV downloads follow it too
            (robots.txt, ``max_per_host``, ``download_delay``, ``user_agent``).
        crawls: the crawl processes to use (default: made from the above).
        env_allow: more variables the crawl process may inherit (``CRAWL_ENV_ALLOW``).
        idle_seconds: a run's idle crawl process is stopped after this long.
    """

    def __init__(
        self,
        *,
        work_dir: Path,
        scrapy_project_path: Path | None = None,
        allow_private_sources: bool = False,
        max_download_bytes: int = DEFAULT_MAX_BYTES,
        http: GuardedClient | None = None,
        policy: CrawlPolicy | None = None,
        crawls: CrawlSessions | None = None,
        env_allow: Iterable[str] = (),
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.scrapy_project_path = scrapy_project_path
        self.allow_private_sources = allow_private_sources
        self.max_download_bytes = max_download_bytes
        self._http = http or GuardedClient(allow_private=allow_private_sources)
        self.policy = policy or (crawls.policy if crawls is not None else CrawlPolicy())
        self.crawls = crawls or CrawlSessions(
            work_dir=self.work_dir / "crawls",
            policy=self.policy,
            project_path=scrapy_project_path,
            allow_private=allow_private_sources,
            env_allow=env_allow,
            idle_seconds=idle_seconds,
        )
        self._robots = RobotsRules(self._http)
        self._downloads = RunDownloads()

    # --- sources -------------------------------------------------------------

    def run_source(self, source: SourceConfig, run: RunContext) -> SourceResult:
        """
        Run one source through its local handler, within its timeout.

        Raises:
            HandlerNotAvailable: ``AIRFLOW_DAG`` (no local meaning).
            SourceFailed: the handler failed (``error_type`` says how;
                ``timeout`` past ``timeout_seconds``, ``cancelled`` once
                :meth:`close_run` was called for *run*).
        """
        started = time.monotonic()
        documents, items_count = self._collect(source, run)
        kept = _keep_matching(documents, source.keywords)
        log.debug(
            "source.collected",
            source_id=source.id,
            handler_id=source.handler_id,
            items=items_count,
            kept=len(kept),
        )
        return SourceResult(
            source_id=source.id,
            documents=kept,
            items_count=items_count,
            duration_seconds=round(time.monotonic() - started, 3),
        )

    def _collect(self, source: SourceConfig, run: RunContext) -> tuple[tuple[Document, ...], int]:
        handler = source.handler_id
        if handler == "AIRFLOW_DAG":
            raise HandlerNotAvailable("handler AIRFLOW_DAG is not available in local mode")
        if handler == "DOWNLOAD_CSV":
            return self._download_csv(source, run)
        if handler not in NEWSROOM_HANDLERS | API_HANDLERS:
            raise HandlerNotAvailable(f"handler {handler} is not available in local mode")
        generic = self._generic_spec(source)
        if source.url_feed:
            self._vet(source.url_feed)
        if source.spider_id and self.scrapy_project_path is not None:
            spec = project_spec(
                source.spider_id,
                _spider_args(source, run),
                fallback=generic,
                download_timeout=download_timeout_for(source.timeout_seconds),
                options=source.crawl,
                max_items=source.max_items,
            )
        elif generic is not None:
            spec = generic
        else:
            raise SourceFailed(_missing_config(source), error_type="invalid_config")
        outcome = self.crawls.crawl(run.run_id, source.id, spec, timeout=source.timeout_seconds)
        items = judge(outcome, source.id)
        return items_to_documents(items, source), len(items)

    def _vet(self, url: str) -> None:
        """Vet *url* with the download client's rules (only its syntax when private is allowed)."""
        if self.allow_private_sources:
            check_source_url(url, allow_private=True)
        else:
            self._http.vet(url)

    def _generic_spec(self, source: SourceConfig) -> dict[str, Any] | None:
        """The built-in spider's crawl spec, or ``None`` without its config."""
        if not source.url_feed:
            return None
        spec: dict[str, Any] = {
            "url": source.url_feed,
            "download_timeout": download_timeout_for(source.timeout_seconds),
            "max_pages": source.raw.get("max_pages"),
            "max_items": source.max_items,
            "crawl": crawl_options(source.crawl),
        }
        if source.handler_id in NEWSROOM_HANDLERS and source.selectors:
            if not source.selectors.get("item"):
                raise SourceFailed("selectors need an 'item' selector", error_type="invalid_config")
            return {**spec, "kind": "newsroom", "selectors": dict(source.selectors)}
        if source.handler_id in API_HANDLERS:
            return {**spec, "kind": "api", "api": dict(source.api or {})}
        return None

    def _download_csv(
        self, source: SourceConfig, run: RunContext
    ) -> tuple[tuple[Document, ...], int]:
        """The CSV download (robots.txt first), in its turn on the host."""
        from .csv_download import download_csv
        from .downloads import DownloadStop, precheck_url

        if not source.url_feed:
            raise SourceFailed("DOWNLOAD_CSV needs a url_feed", error_type="invalid_config")
        precheck_url(source.url_feed, allow_private=self.allow_private_sources)
        deadline = time.monotonic() + source.timeout_seconds
        options = source.crawl or CrawlOptions()
        agent = options.user_agent or self.policy.user_agent
        stop = DownloadStop(source.id)
        with (
            self._downloads.track(run.run_id, stop),
            self.crawls.host_turn(
                run.run_id,
                urllib.parse.urlsplit(source.url_feed).hostname or "",
                source_id=source.id,
                deadline=deadline,
                max_per_host=_pick(options.max_per_host, self.policy.max_per_host),
                download_delay=_pick(options.download_delay, self.policy.download_delay),
                cancel=stop.event,
            ),
        ):
            try:
                if _pick(options.obey_robots, self.policy.obey_robots):
                    self._robots.check(
                        run.run_id,
                        source.url_feed,
                        user_agent=agent,
                        deadline=deadline,
                        cancel=stop.event,
                    )
                return download_csv(
                    source,
                    client=self._http,
                    max_bytes=self.max_download_bytes,
                    deadline=deadline,
                    cancel=stop.event,
                    user_agent=agent,
                )
            except SourceFailed as exc:
                if exc.error_type == "cancelled":
                    raise SourceFailed(
                        "the download was cancelled (its run was closed, or it ran too long)",
                        error_type="cancelled",
                    ) from None
                raise

    def close_run(self, run: RunContext) -> None:
        """
        Stop what still runs for *run*: its crawl process, its downloads.

        Its ``run_source`` calls in progress return ``SourceFailed(cancelled)``.
        Idempotent; never raises.
        """
        try:
            aborted = self._downloads.abort(run.run_id)
            self.crawls.close_run(run.run_id)
            self._robots.forget(run.run_id)
        except Exception as exc:  # closing must never fail the caller
            log.warning("executor.close_run_failed", run_id=run.run_id, error=repr(exc))
            return
        if aborted:
            log.debug("executor.downloads_cancelled", run_id=run.run_id, downloads=aborted)

    def cancel_source(self, run: RunContext, source_id: str) -> None:
        """
        Stop one source of *run*: its download is closed (or its wait for a
        turn on its host ends); its crawl ends in the crawl process, whose
        places on the source's hosts are then free for the run's others.

        Its ``run_source`` call returns ``SourceFailed(cancelled)``. Idempotent; never raises.
        """
        try:
            self._downloads.abort(run.run_id, source_id)
            self.crawls.cancel_source(run.run_id, source_id)
        except Exception as exc:  # cancelling must never fail the caller
            log.warning(
                "executor.cancel_source_failed",
                run_id=run.run_id,
                source_id=source_id,
                error=repr(exc),
            )

    # --- processing ----------------------------------------------------------

    def process(
        self, documents: Sequence[Document], run: RunContext, *, timeout_seconds: float
    ) -> ProcessingResult:
        """Enrich every document by the rules; one event per ``event_id``."""
        events: dict[str, GoldEvent] = {}
        errors: list[GoldErrorEntry] = []
        failed = 0
        for document in documents:
            try:
                event = enrich(document, run_id=run.run_id)
            except Exception as exc:  # a rule bug must not lose the other documents
                failed += 1
                errors.append(_gold_error(document.source_id, "processing_error", repr(exc)))
                continue
            events.setdefault(event.event_id, event)
        return ProcessingResult(
            processed_count=len(documents) - failed,
            failed_count=failed,
            events=tuple(events.values()),
            errors=tuple(errors),
            documents_count=len(documents),
        )

    def build_gold(
        self,
        run: RunContext,
        results: Sequence[SourceResult],
        processing: ProcessingResult,
    ) -> GoldDocument:
        """Assemble the Gold in-process: events, plus one error per failed source."""
        errors = list(processing.errors)
        errors += [
            _gold_error(r.source_id, r.error_type or "error", r.error_message or "")
            for r in results
            if not r.ok
        ]
        sources = {r.source_id for r in results} or {
            *(e.source for e in processing.events),
            *(e.source_id for e in processing.errors),
        }
        return build_gold(
            run_id=run.run_id,
            date=run.date,
            generated_at=dt.datetime.now(dt.UTC),
            sources_processed=len(sources),
            documents_count=processing.documents_count,
            events=processing.events,
            errors=_unique_errors(errors),
        )

    def reprocess(
        self, run: RunContext, sources: Sequence[SourceConfig], *, timeout_seconds: float
    ) -> ProcessingResult:
        """
        Run the sources again and enrich what they yield; failures become errors.

        The sources run on daemon threads (``threads.run_bounded``): one
        still running at *timeout_seconds* is recorded ``timeout``, its run
        closed, and it never holds up the process's exit.
        """
        documents: list[Document] = []
        errors: list[GoldErrorEntry] = []
        if sources:
            calls = [functools.partial(self.run_source, source, run) for source in sources]
            try:
                done, late = run_bounded(
                    calls, workers=REPROCESS_WORKERS, timeout=timeout_seconds, name="reprocess"
                )
                for index, finished in sorted(done.items()):
                    source, error = sources[index], finished.error
                    if isinstance(error, SourceFailed):
                        errors.append(_gold_error(source.id, error.error_type, str(error)))
                    elif isinstance(error, CursorError):
                        errors.append(_gold_error(source.id, "handler_error", str(error)))
                    elif error is not None:
                        raise error
                    elif finished.value is not None:
                        documents.extend(finished.value.documents)
                for index in late:
                    errors.append(
                        _gold_error(sources[index].id, "timeout", "reprocessing ran out of time")
                    )
            finally:
                self.close_run(run)
        processed = self.process(documents, run, timeout_seconds=timeout_seconds)
        return attrs.evolve(processed, errors=(*processed.errors, *errors))

    def close(self) -> None:
        """Stop every crawl process and download of this executor."""
        self._downloads.abort()
        self.crawls.close()


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _spider_args(source: SourceConfig, run: RunContext) -> dict[str, str]:
    args = {"run_id": run.run_id, "source_id": source.id}
    if source.url_feed:
        args["url"] = source.url_feed
    if source.player_id:
        args["player_id"] = source.player_id
    return args


def _missing_config(source: SourceConfig) -> str:
    if not source.url_feed:
        return f"handler {source.handler_id} needs a url_feed in local mode"
    if source.spider_id:
        return (
            f"spider {source.spider_id!r} needs SCRAPY_PROJECT_PATH, "
            "or give the source 'selectors' for the built-in spider"
        )
    return f"handler {source.handler_id} needs 'selectors' in local mode"


def _keep_matching(documents: Sequence[Document], keywords: Sequence[str]) -> tuple[Document, ...]:
    if not keywords:
        return tuple(documents)
    kept = []
    for document in documents:
        if not matches_keywords(keywords, document.title, document.summary):
            continue
        haystack = fold_text(f"{document.title} {document.summary}")
        tags = tuple(k for k in keywords if fold_text(k) in haystack)
        kept.append(attrs.evolve(document, tags=tags))
    return tuple(kept)


def _gold_error(source_id: str, error_type: str, message: str) -> GoldErrorEntry:
    return GoldErrorEntry(
        source_id=source_id,
        error_type=error_type,
        error_message=message,
        timestamp=isoformat_z(dt.datetime.now(dt.UTC)),
    )


def _unique_errors(errors: Sequence[GoldErrorEntry]) -> list[GoldErrorEntry]:
    seen: dict[tuple[str, str, str], GoldErrorEntry] = {}
    for error in errors:
        seen.setdefault((error.source_id, error.error_type, error.error_message), error)
    return list(seen.values())
