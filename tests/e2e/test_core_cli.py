"""`atlasreg-cursor ingest` with EXECUTOR_BACKEND=core over all five handlers, as a process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from atlasreg_cursor.sample_site import start_sample_site
from tests.support.airflow_stack import AirflowStack, airflow3  # noqa: F401
from tests.support.celery_worker import CeleryWorker, celery_worker, core_calls  # noqa: F401
from tests.support.cli import cli_env, run_cli

pytestmark = [pytest.mark.celery, pytest.mark.airflow, pytest.mark.scrapy, pytest.mark.slow]

SCRAPY_PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"


def test_ingest_runs_every_handler_on_core_and_publishes_gold(
    tmp_path: Path, celery_worker: CeleryWorker, airflow3: AirflowStack, core_calls
) -> None:
    """Core receives the calls of all five handlers; the Gold holds its events and the failing source."""
    with start_sample_site() as site:
        base = site.base_url
        watchlist = {
            "sources": [
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
                },
                {
                    "id": "sigel",
                    "handler_id": "AIRFLOW_DAG",
                    "dag_id": "atlasreg_success",
                    "xcom_task_id": "collect",
                    "documents": 2,
                    "timeout_seconds": 120,
                },
                {"id": "b3_fatos", "handler_id": "CUSTOM_SCRAPER", "documents": 3},
                {"id": "b3_broken", "handler_id": "CUSTOM_SCRAPER", "mode": "fail"},
            ]
        }
        path = tmp_path / "watchlist.json"
        path.write_text(json.dumps(watchlist))
        env = cli_env(
            {
                "MODE": "local",
                "EXECUTOR_BACKEND": "core",
                "CURSOR_HOME": str(tmp_path),
                "WATCHLIST_FILE": str(path),
                "CELERY_BROKER_URL": celery_worker.broker_url,
                "CELERY_RESULT_BACKEND": celery_worker.backend_url,
                "CELERY_QUEUE": celery_worker.queue,
                "AIRFLOW_API_URL": airflow3.base_url,
                "AIRFLOW_USERNAME": airflow3.username,
                "AIRFLOW_PASSWORD": airflow3.password,
                "SCRAPY_PROJECT_PATH": str(SCRAPY_PROJECT),
                "ALLOW_PRIVATE_SOURCES": "true",
                "PROCESSING_CONCURRENCY": "4",
            }
        )

        done = run_cli(["ingest", "--date", "2026-11-24"], env=env, cwd=tmp_path, timeout=300)

    assert 0 == done.returncode, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    body = (tmp_path / "store" / line["gold_key"]).read_bytes()
    gold = json.loads(body)
    processed = core_calls("process_document")
    assert hashlib.sha256(body).hexdigest() == line["sha256"]
    assert ("partial", 1) == (line["status"], line["errors_count"]), gold["errors"]
    assert [("b3_broken", "task_failed")] == [
        (e["source_id"], e["error_type"]) for e in gold["errors"]
    ]
    assert 11 + 5 + 4 + 2 + 3 == len(processed) == line["events_count"]
    assert {c["arguments"]["run_id"] for c in processed} == {line["run_id"]}
    assert [{"run_id": line["run_id"], "date": "2026-11-24"}] == [
        c["arguments"] for c in core_calls("generate_gold_json")
    ]
    assert [f"{base}/dados/ocorrencias.csv"] == [
        c["arguments"]["url_feed"] for c in core_calls("download_csv")
    ]
    assert ["b3_broken", "b3_fatos"] == sorted(
        c["arguments"]["source_config"]["id"] for c in core_calls("custom_scrape")
    )
    assert len(processed) == gold["metadata"]["events_count"]
