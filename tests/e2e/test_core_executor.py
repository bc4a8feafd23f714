"""CoreExecutor end to end: a real Celery worker, Airflow 3, Scrapy and the sample site."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.core.airflow import AirflowClient
from atlasreg_cursor.adapters.core.celery import CeleryGateway
from atlasreg_cursor.adapters.core.executor import CoreExecutor
from atlasreg_cursor.domain.documents import Document, ProcessingResult, SourceResult
from atlasreg_cursor.domain.errors import (
    ExecutorUnavailable,
    InvalidGold,
    ProcessingFailed,
    SourceFailed,
)
from atlasreg_cursor.domain.gold import serialize_gold
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig, parse_watchlist
from atlasreg_cursor.sample_site import SampleSite, start_sample_site
from tests.fixtures.core_tasks import FAILING_GOLD_RUN_ID, INVALID_GOLD_RUN_ID
from tests.support.airflow_stack import AirflowStack, airflow3  # noqa: F401
from tests.support.celery_worker import CeleryWorker, celery_worker, core_calls  # noqa: F401
from tests.support.services import free_port

pytestmark = [pytest.mark.celery, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRAPY_PROJECT = ROOT / "tests" / "fixtures" / "scrapy_project"
DATE = dt.date(2026, 11, 24)


def _run(run_id: str | None = None) -> RunContext:
    return RunContext(
        run_id=run_id or f"run_{uuid.uuid4().hex[:12]}",
        date=DATE,
        message_type=MessageType.START_DAILY_INGEST,
        identity=uuid.uuid4().hex,
    )


def _sources(*raw: dict) -> tuple[SourceConfig, ...]:
    watchlist = parse_watchlist({"sources": list(raw)})
    assert () == watchlist.invalid
    return watchlist.sources


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    """The sample site on loopback."""
    with start_sample_site() as s:
        yield s


@pytest.fixture
def gateway(celery_worker: CeleryWorker) -> CeleryGateway:
    """A gateway to the real worker's queue (closed by the executor)."""
    return celery_worker.gateway()


@pytest.fixture
def executor(gateway: CeleryGateway) -> Iterator[CoreExecutor]:
    """A Core executor with Celery only (no Airflow, no Scrapy project)."""
    ex = CoreExecutor(celery=gateway, airflow=None, scrapy_project_path=None, local_fallback=None)
    yield ex
    ex.close()


def _local_executor(tmp_path: Path):
    from atlasreg_cursor.adapters.local.executor import LocalExecutor

    return LocalExecutor(
        work_dir=tmp_path, scrapy_project_path=SCRAPY_PROJECT, allow_private_sources=True
    )


@pytest.mark.airflow
@pytest.mark.scrapy
def test_all_five_handlers_then_processing_and_gold(gateway, airflow3, site, core_calls, tmp_path):
    """Every built-in handler runs on Core; a failing source does not sink the others."""
    airflow = AirflowClient(
        base_url=airflow3.base_url, username=airflow3.username, password=airflow3.password
    )
    executor = CoreExecutor(
        celery=gateway,
        airflow=airflow,
        scrapy_project_path=SCRAPY_PROJECT,
        local_fallback=_local_executor(tmp_path),
        processing_concurrency=4,
        allow_private_sources=True,
    )
    base = site.base_url
    sources = _sources(
        {
            "id": "newsroom",
            "handler_id": "SCRAPY_NEWSROOM_PLAYER",
            "spider_id": "sample_news",
            "url_feed": f"{base}/noticias/",
            "player_id": "aneel",
            "timeout_seconds": 120,
        },
        {
            "id": "cvm_avisos",
            "handler_id": "SCRAPY_CVM_API",
            "url_feed": f"{base}/api/avisos",
            "timeout_seconds": 120,
            "api": {
                "items_path": "data.items",
                "fields": {
                    "id": "id",
                    "title": "titulo",
                    "url": "link",
                    "date": "data",
                    "summary": "resumo",
                },
            },
        },
        {
            "id": "ons_csv",
            "handler_id": "DOWNLOAD_CSV",
            "url_feed": f"{base}/dados/ocorrencias.csv",
            "timeout_seconds": 60,
        },
        {
            "id": "sigel",
            "handler_id": "AIRFLOW_DAG",
            "dag_id": "atlasreg_success",
            "xcom_task_id": "collect",
            "documents": 2,
            "timeout_seconds": 120,
        },
        {"id": "b3_fatos", "handler_id": "CUSTOM_SCRAPER", "documents": 3, "timeout_seconds": 60},
        {"id": "b3_broken", "handler_id": "CUSTOM_SCRAPER", "mode": "fail", "timeout_seconds": 60},
    )
    run = _run()
    try:
        results: dict[str, SourceResult] = {}
        for source in sources:
            try:
                results[source.id] = executor.run_source(source, run)
            except SourceFailed as exc:
                results[source.id] = SourceResult(
                    source_id=source.id, error_type=exc.error_type, error_message=str(exc)
                )
        documents = [d for r in results.values() if r.ok for d in r.documents]
        processing = executor.process(documents, run, timeout_seconds=60)
        gold = executor.build_gold(run, list(results.values()), processing)
    finally:
        executor.close()

    assert {"newsroom", "cvm_avisos", "ons_csv", "sigel", "b3_fatos"} == {
        sid for sid, r in results.items() if r.ok
    }
    newsroom = results["newsroom"].documents
    assert 11 == len(newsroom)  # the project spider, every page
    assert all(d.document_id.startswith("sample-") for d in newsroom)
    assert {"aneel"} == {d.player_id for d in newsroom}
    assert 5 == len(results["cvm_avisos"].documents)  # the generic local API spider
    assert 4 == len(results["ons_csv"].documents)
    assert [f"{run.run_id}-sigel-0", f"{run.run_id}-sigel-1"] == [
        d.document_id for d in results["sigel"].documents
    ]
    assert 3 == len(results["b3_fatos"].documents)
    assert "task_failed" == results["b3_broken"].error_type
    assert "scraper for b3_broken exploded" in (results["b3_broken"].error_message or "")

    assert [
        {
            "task": "download_csv",
            "arguments": {"url_feed": f"{base}/dados/ocorrencias.csv", "run_id": run.run_id},
        }
    ] == core_calls("download_csv")
    custom = core_calls("custom_scrape")
    assert ["b3_broken", "b3_fatos"] == sorted(
        c["arguments"]["source_config"]["id"] for c in custom
    )
    assert {run.run_id} == {c["arguments"]["run_id"] for c in custom}
    processed = sorted(c["arguments"]["doc_id"] for c in core_calls("process_document"))
    assert sorted(d.document_id for d in documents) == processed
    assert [
        {"task": "generate_gold_json", "arguments": {"run_id": run.run_id, "date": "2026-11-24"}}
    ] == core_calls("generate_gold_json")

    assert (
        ProcessingResult(processed_count=len(documents), documents_count=len(documents))
        == processing
    )
    assert run.run_id == gold.metadata.run_id
    assert len(set(processed)) == gold.metadata.events_count
    assert [("b3_broken", "task_failed")] == [(e.source_id, e.error_type) for e in gold.errors]
    assert 64 == len(serialize_gold(gold).sha256)


def test_processing_failures_are_counted_not_fatal(executor, core_calls):
    """Failed documents become Gold errors; the run goes on."""
    run = _run()
    docs = [Document(document_id=f"doc-{n}", source_id="s1") for n in range(5)]
    docs.append(Document(document_id="doc-fail-9", source_id="s2"))

    processing = executor.process(docs, run, timeout_seconds=30)
    gold = executor.build_gold(
        run, [SourceResult(source_id="s3", error_type="timeout", error_message="slow")], processing
    )

    assert (5, 1, 6) == (
        processing.processed_count,
        processing.failed_count,
        processing.documents_count,
    )
    assert [("s2", "task_failed")] == [(e.source_id, e.error_type) for e in processing.errors]
    assert "cannot process document doc-fail-9" in processing.errors[0].error_message
    assert 5 == gold.metadata.events_count
    assert [("s2", "task_failed"), ("s3", "timeout")] == [
        (e.source_id, e.error_type) for e in gold.errors
    ]
    assert 6 == len(core_calls("process_document"))


def test_processing_fails_when_every_document_fails(executor):
    """Only a run where nothing could be processed is ProcessingFailed."""
    docs = [Document(document_id=f"doc-fail-{n}", source_id="s") for n in range(3)]

    with pytest.raises(ProcessingFailed) as info:
        executor.process(docs, _run(), timeout_seconds=30)

    assert "all 3 documents" in str(info.value)


def test_no_documents_means_nothing_to_process(executor, core_calls):
    """An empty run sends no task."""
    assert ProcessingResult() == executor.process([], _run(), timeout_seconds=5)
    assert [] == core_calls(None)


def test_invalid_gold_from_core_is_refused(executor):
    """A Gold that is not 2.0 raises InvalidGold with the reasons."""
    with pytest.raises(InvalidGold) as info:
        executor.build_gold(_run(INVALID_GOLD_RUN_ID), [], ProcessingResult())

    assert "generate_gold_json" in str(info.value)
    assert "version" in str(info.value) or "events" in str(info.value)


def test_gold_task_failure_is_processing_failed(executor):
    """A crash of generate_gold_json is ProcessingFailed with the remote error."""
    with pytest.raises(ProcessingFailed) as info:
        executor.build_gold(_run(FAILING_GOLD_RUN_ID), [], ProcessingResult())

    assert "RuntimeError: gold generation crashed" in str(info.value)


def test_reprocess_calls_core_and_reads_counts(executor, core_calls):
    """``reprocess_date`` gets the date and run id; its counts come back."""
    run = _run(f"reprocess_{uuid.uuid4().hex[:12]}")

    result = executor.reprocess(run, (), timeout_seconds=30)
    gold = executor.build_gold(run, (), result)

    assert ProcessingResult(processed_count=2, failed_count=1, documents_count=3) == result
    assert [
        {"task": "reprocess_date", "arguments": {"date": "2026-11-24", "run_id": run.run_id}}
    ] == core_calls("reprocess_date")
    assert 2 == gold.metadata.events_count


@pytest.mark.parametrize(
    ("extra", "error_type", "text"),
    [
        ({"mode": "error"}, "core_error", "the site blocked the scraper"),
        ({"mode": "fail"}, "task_failed", "RuntimeError"),
        ({"mode": "slow", "seconds": 5, "timeout_seconds": 1}, "timeout", "revoked"),
        ({"task_name": "not_a_core_task"}, "task_not_registered", "not registered on any worker"),
    ],
)
def test_celery_handler_failures(executor, extra, error_type, text):
    """A Celery handler's error, crash, timeout or unknown task fails the source."""
    source = _sources({"id": "custom", "handler_id": "CUSTOM_SCRAPER", **extra})[0]

    with pytest.raises(SourceFailed) as info:
        executor.run_source(source, _run())

    assert error_type == info.value.error_type
    assert text in str(info.value)


def test_airflow_source_without_airflow_is_not_available(executor):
    """Without AIRFLOW_API_URL an AIRFLOW_DAG source fails clearly."""
    source = _sources({"id": "sigel", "handler_id": "AIRFLOW_DAG", "dag_id": "x"})[0]

    with pytest.raises(SourceFailed) as info:
        executor.run_source(source, _run())

    assert "handler_not_available" == info.value.error_type


@pytest.mark.airflow
@pytest.mark.parametrize(
    ("dag_id", "error_type"),
    [
        ("atlasreg_failing", "dag_failed"),
        ("atlasreg_paused", "dag_paused"),
        ("no_such_dag", "dag_not_found"),
    ],
)
def test_airflow_source_failures(gateway, airflow3, dag_id, error_type):
    """A failed, paused or unknown DAG fails its source with a clear type."""
    airflow = AirflowClient(
        base_url=airflow3.base_url, username=airflow3.username, password=airflow3.password
    )
    executor = CoreExecutor(
        celery=gateway, airflow=airflow, scrapy_project_path=None, local_fallback=None
    )
    source = _sources(
        {"id": "sigel", "handler_id": "AIRFLOW_DAG", "dag_id": dag_id, "timeout_seconds": 120}
    )[0]
    try:
        with pytest.raises(SourceFailed) as info:
            executor.run_source(source, _run())
    finally:
        executor.close()

    assert error_type == info.value.error_type
    if error_type == "dag_failed":
        assert "explode" in str(info.value)


@pytest.mark.airflow
def test_airflow_source_resumed_adopts_the_run(gateway, airflow3):
    """Running the same source of the same run twice triggers the DAG once."""
    airflow = AirflowClient(
        base_url=airflow3.base_url, username=airflow3.username, password=airflow3.password
    )
    executor = CoreExecutor(
        celery=gateway, airflow=airflow, scrapy_project_path=None, local_fallback=None
    )
    source = _sources(
        {
            "id": "sigel",
            "handler_id": "AIRFLOW_DAG",
            "dag_id": "atlasreg_success",
            "xcom_task_id": "collect",
            "documents": 1,
            "timeout_seconds": 120,
        }
    )[0]
    run = _run()
    try:
        first = executor.run_source(source, run)
        second = executor.run_source(source, run)
        response = airflow.api.call("GET", "/dags/atlasreg_success/dagRuns?limit=100")
    finally:
        executor.close()

    assert first.documents == second.documents
    ids = [r["dag_run_id"] for r in response.data["dag_runs"]]
    assert 1 == ids.count(f"{run.run_id}_atlasreg_success")


def test_core_down_is_executor_unavailable():
    """A dead broker is ExecutorUnavailable for sources and processing alike."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    executor = CoreExecutor(
        celery=CeleryGateway(broker_url=url, result_backend=url),
        airflow=None,
        scrapy_project_path=None,
        local_fallback=None,
    )
    source = _sources({"id": "custom", "handler_id": "CUSTOM_SCRAPER"})[0]
    try:
        with pytest.raises(ExecutorUnavailable):
            executor.run_source(source, _run())
        with pytest.raises(ExecutorUnavailable):
            executor.process([Document(document_id="d", source_id="s")], _run(), timeout_seconds=10)
        with pytest.raises(ExecutorUnavailable):
            executor.build_gold(_run(), [], ProcessingResult())
    finally:
        executor.close()


@pytest.mark.airflow
def test_airflow_source_stops_at_its_timeout_and_when_its_run_is_closed(gateway, airflow3):
    """A DAG run outliving the source's timeout is a timeout soon after it; close_run stops the wait."""
    import concurrent.futures as cf
    import time

    airflow = AirflowClient(
        base_url=airflow3.base_url, username=airflow3.username, password=airflow3.password
    )
    executor = CoreExecutor(
        celery=gateway, airflow=airflow, scrapy_project_path=None, local_fallback=None
    )
    slow = {"handler_id": "AIRFLOW_DAG", "dag_id": "atlasreg_slow", "seconds": 120}
    timed, waited = _sources(
        {"id": "lenta", "timeout_seconds": 3, **slow},
        {"id": "cancelada", "timeout_seconds": 120, **slow},
    )
    run, other = _run(), _run()
    try:
        started = time.monotonic()
        with pytest.raises(SourceFailed) as late:
            executor.run_source(timed, run)
        took = time.monotonic() - started
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(executor.run_source, waited, other)
            deadline = time.monotonic() + 60
            dag_run_id = f"{other.run_id}_atlasreg_slow"
            while time.monotonic() < deadline:
                try:
                    airflow.get_run("atlasreg_slow", dag_run_id)
                    break
                except SourceFailed:
                    time.sleep(0.2)
            closed = time.monotonic()
            executor.close_run(other)
            with pytest.raises(SourceFailed) as cancelled:
                future.result(timeout=60)
            stopped_after = time.monotonic() - closed
    finally:
        executor.close()

    assert "timeout" == late.value.error_type
    assert took < 3 + 8
    assert "cancelled" == cancelled.value.error_type
    assert stopped_after < 8
