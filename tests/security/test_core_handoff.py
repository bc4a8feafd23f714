"""The Core executor vets a ``url_feed`` before Celery or Airflow ever sees it.

A real Celery worker runs Core's test tasks (its ``download_csv`` would fetch
a loopback URL); with ``ALLOW_PRIVATE_SOURCES`` unset a private ``url_feed``
must be refused before any task is sent, and the internal server must get
no request.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from atlasreg_cursor.adapters.core.airflow import AirflowClient
from atlasreg_cursor.adapters.core.executor import CoreExecutor
from atlasreg_cursor.domain.documents import ProcessingResult, SourceResult
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.gold import serialize_gold
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig
from tests.fixtures.core_tasks import LEAKY_GOLD_RUN_ID, LEAKY_SENTINELS
from tests.security.netlab import RecordingServer, csv_route
from tests.support.celery_worker import CeleryWorker, celery_worker, core_calls  # noqa: F401

pytestmark = [pytest.mark.security, pytest.mark.celery, pytest.mark.redis]


def _run(run_id: str | None = None) -> RunContext:
    return RunContext(
        run_id=run_id or f"run_{uuid.uuid4().hex[:12]}",
        date=dt.date(2026, 11, 24),
        message_type=MessageType.START_DAILY_INGEST,
        identity=uuid.uuid4().hex,
    )


@pytest.fixture
def executor(celery_worker: CeleryWorker) -> Iterator[CoreExecutor]:
    """A Core executor with the default policy: private addresses refused."""
    ex = CoreExecutor(
        celery=celery_worker.gateway(), airflow=None, scrapy_project_path=None, local_fallback=None
    )
    yield ex
    ex.close()


@pytest.mark.parametrize(
    ("handler_id", "task", "extra"),
    [
        ("DOWNLOAD_CSV", "download_csv", {}),
        ("CUSTOM_SCRAPER", "custom_scrape", {"task_name": "custom_scrape"}),
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/x.csv",
        "http://localhost:{port}/x.csv",
        "http://127.0.0.1:{port}\\@8.8.8.8/x.csv",
        "http://user:PASSWORD@8.8.8.8/x.csv",
    ],
)
def test_private_url_feed_is_not_handed_to_celery(
    executor: CoreExecutor,
    core_calls,
    internal: RecordingServer,
    handler_id: str,
    task: str,
    extra: dict[str, str],
    template: str,
) -> None:
    """Refused before any task is sent: no Core call, no request to the internal server."""
    source = SourceConfig(
        id="hostile",
        handler_id=handler_id,
        url_feed=template.format(port=internal.port),
        timeout_seconds=20,
        **extra,
    )

    with pytest.raises(SourceFailed) as info:
        executor.run_source(source, _run())

    assert info.value.error_type in {"forbidden_address", "invalid_url"}
    assert "PASSWORD" not in str(info.value)
    assert [] == core_calls(task)


def test_allowed_private_feed_reaches_celery(celery_worker: CeleryWorker, core_calls) -> None:
    """Control: with ALLOW_PRIVATE_SOURCES the same handoff happens (the check is what stops it)."""
    site = RecordingServer({"/ok.csv": csv_route(b"title;url\nDespacho;/d\n")})
    executor = CoreExecutor(
        celery=celery_worker.gateway(),
        airflow=None,
        scrapy_project_path=None,
        local_fallback=None,
        allow_private_sources=True,
    )
    try:
        result = executor.run_source(
            SourceConfig(
                id="allowed",
                handler_id="DOWNLOAD_CSV",
                url_feed=f"{site.url}/ok.csv",
                timeout_seconds=30,
            ),
            _run(),
        )
    finally:
        executor.close()
        site.stop()

    assert 1 == result.items_count
    assert [f"{site.url}/ok.csv"] == [
        c["arguments"]["url_feed"] for c in core_calls("download_csv")
    ]


@pytest.mark.parametrize(
    ("dag_id", "url_feed", "error_type"),
    [
        ("../../variables", None, "invalid_source"),
        ("sigel daily", None, "invalid_source"),
        ("sigel_daily\n", None, "invalid_source"),
        ("sigel_daily", "http://127.0.0.1:{port}/", "forbidden_address"),
    ],
)
def test_airflow_gets_no_request_for_a_bad_source(
    celery_worker: CeleryWorker,
    internal: RecordingServer,
    dag_id: str,
    url_feed: str | None,
    error_type: str,
) -> None:
    """A dag_id off Airflow's pattern or a private url_feed stops before Airflow is called."""
    airflow_api = RecordingServer()
    airflow = AirflowClient(base_url=airflow_api.url, username="u", password="p", api_version="v2")
    executor = CoreExecutor(
        celery=celery_worker.gateway(),
        airflow=airflow,
        scrapy_project_path=None,
        local_fallback=None,
    )
    source = SourceConfig(
        id="dag",
        handler_id="AIRFLOW_DAG",
        dag_id=dag_id,
        url_feed=url_feed.format(port=internal.port) if url_feed else None,
        timeout_seconds=10,
    )
    try:
        with pytest.raises(SourceFailed) as info:
            executor.run_source(source, _run())
    finally:
        executor.close()
        airflow_api.stop()

    assert error_type == info.value.error_type
    assert [] == airflow_api.requests


def test_gold_errors_from_core_are_redacted_and_bounded(executor: CoreExecutor) -> None:
    """
    Core's own Gold errors are merged in redacted and bounded (as the Cursor's
    are): the published bytes carry none of the sentinels nor a 100 KB message.
    """
    own = SourceResult(
        source_id="own",
        error_type="core_error",
        error_message="task said: http://u:OWNPW-SENTINEL-4@h/?sig=OWNSIG-SENTINEL-5",
    )

    gold = executor.build_gold(_run(LEAKY_GOLD_RUN_ID), [own], ProcessingResult())
    body = serialize_gold(gold).body.decode()

    assert {"core-feed", "core-huge", "own"} == {e.source_id for e in gold.errors}
    assert not [s for s in (*LEAKY_SENTINELS, "OWNPW-SENTINEL-4", "OWNSIG-SENTINEL-5") if s in body]
    assert all(len(e.error_message) <= 2000 for e in gold.errors)
    assert "http://core:***@10.0.0.5/x.csv?api_key=***" in body


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_segments_never_leave_the_dags_path(celery_worker: CeleryWorker, dots: str) -> None:
    """
    ``.`` and ``..`` as a dag_id or task id are refused before any request; as
    any other path segment they are percent-encoded: the Airflow stand-in sees
    no request outside ``/api/v1/dags/sigel_daily/``.
    """
    airflow_api = RecordingServer()  # 404 for everything
    airflow = AirflowClient(base_url=airflow_api.url, username="u", password="p", api_version="v1")
    executor = CoreExecutor(
        celery=celery_worker.gateway(),
        airflow=airflow,
        scrapy_project_path=None,
        local_fallback=None,
    )
    by_dag_id = SourceConfig(id="dag", handler_id="AIRFLOW_DAG", dag_id=dots, timeout_seconds=10)
    by_task_id = SourceConfig(
        id="xcom",
        handler_id="AIRFLOW_DAG",
        dag_id="sigel_daily",
        xcom_task_id=dots,
        timeout_seconds=10,
    )
    try:
        refused = []
        for source in (by_dag_id, by_task_id):
            with pytest.raises(SourceFailed) as info:
                executor.run_source(source, _run())
            refused.append(info.value.error_type)
        with pytest.raises(SourceFailed) as info:
            airflow.xcom_return_value("sigel_daily", "run_x", dots)
        refused.append(info.value.error_type)
        assert [] == airflow_api.requests
        with pytest.raises(SourceFailed) as info:
            airflow.get_run("sigel_daily", dots)
        tasks = airflow.failed_tasks("sigel_daily", dots)
    finally:
        executor.close()
        airflow_api.stop()

    encoded = "%2E" * len(dots)
    assert ["invalid_source"] * 3 == refused
    assert ("dag_run_not_found", []) == (info.value.error_type, tasks)
    assert [
        f"/api/v1/dags/sigel_daily/dagRuns/{encoded}",
        f"/api/v1/dags/sigel_daily/dagRuns/{encoded}/taskInstances",
    ] == [seen.path for seen in airflow_api.requests]


@pytest.mark.parametrize(
    "task_name", [None, "custom_scrape", "reprocess_date", "atlasreg_test.add"]
)
def test_a_task_off_core_tasks_is_never_sent(
    celery_worker: CeleryWorker, core_calls, task_name: str | None
) -> None:
    """
    With CORE_TASKS set, a CUSTOM_SCRAPER source naming another task (the
    default ``custom_scrape`` included) fails ``not_allowed``: no task is sent.
    """
    executor = CoreExecutor(
        celery=celery_worker.gateway(),
        airflow=None,
        scrapy_project_path=None,
        local_fallback=None,
        core_tasks=["sigel_scrape"],
    )
    source = SourceConfig(
        id="custom", handler_id="CUSTOM_SCRAPER", task_name=task_name, timeout_seconds=10
    )
    try:
        with pytest.raises(SourceFailed) as info:
            executor.run_source(source, _run())
    finally:
        executor.close()

    assert "not_allowed" == info.value.error_type
    assert "CORE_TASKS" in str(info.value)
    assert [] == core_calls()


def test_a_task_in_core_tasks_is_sent(celery_worker: CeleryWorker, core_calls) -> None:
    """Control: the task the list names is called as before."""
    executor = CoreExecutor(
        celery=celery_worker.gateway(),
        airflow=None,
        scrapy_project_path=None,
        local_fallback=None,
        core_tasks=["sigel_scrape", "custom_scrape"],
    )
    source = SourceConfig(
        id="custom", handler_id="CUSTOM_SCRAPER", task_name="custom_scrape", timeout_seconds=30
    )
    run = _run()
    try:
        result = executor.run_source(source, run)
    finally:
        executor.close()

    assert 2 == len(result.documents)
    assert [("custom_scrape", run.run_id)] == [
        (c["task"], c["arguments"]["run_id"]) for c in core_calls()
    ]


@pytest.mark.parametrize(
    ("dag_id", "error_type"),
    [
        ("admin_cleanup", "not_allowed"),
        ("SIGEL_daily", "not_allowed"),
        ("sigel", "not_allowed"),
        ("sigel_daily", "dag_not_found"),
    ],
)
def test_a_dag_off_airflow_dags_is_never_triggered(
    celery_worker: CeleryWorker, dag_id: str, error_type: str
) -> None:
    """
    With AIRFLOW_DAGS ``sigel_*``, another DAG fails ``not_allowed`` and the
    Airflow stand-in gets no request; a matching one is looked up (the
    stand-in knows no DAG: ``dag_not_found``).
    """
    airflow_api = RecordingServer()
    airflow = AirflowClient(base_url=airflow_api.url, username="u", password="p", api_version="v1")
    executor = CoreExecutor(
        celery=celery_worker.gateway(),
        airflow=airflow,
        scrapy_project_path=None,
        local_fallback=None,
        airflow_dags=["sigel_*", "reports_weekly"],
    )
    source = SourceConfig(id="dag", handler_id="AIRFLOW_DAG", dag_id=dag_id, timeout_seconds=10)
    try:
        with pytest.raises(SourceFailed) as info:
            executor.run_source(source, _run())
    finally:
        executor.close()
        airflow_api.stop()

    assert error_type == info.value.error_type
    if error_type == "not_allowed":
        assert "AIRFLOW_DAGS" in str(info.value)
        assert [] == airflow_api.requests
    else:
        assert ["/api/v1/dags/sigel_daily"] == [seen.path for seen in airflow_api.requests]
