"""`atlasreg-cursor health` with the Core executor probes Celery and Airflow for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.airflow_stack import AirflowStack, airflow3  # noqa: F401
from tests.support.celery_worker import CeleryWorker, celery_worker  # noqa: F401
from tests.support.cli import cli_env, run_cli
from tests.support.services import free_port

pytestmark = [pytest.mark.celery, pytest.mark.airflow, pytest.mark.slow]


def _env(
    tmp_path: Path, worker: CeleryWorker, airflow_url: str, stack: AirflowStack
) -> dict[str, str]:
    watchlist = tmp_path / "watchlist.json"
    watchlist.write_text('{"sources": []}')
    return cli_env(
        {
            "MODE": "local",
            "EXECUTOR_BACKEND": "core",
            "CURSOR_HOME": str(tmp_path),
            "WATCHLIST_FILE": str(watchlist),
            "CELERY_BROKER_URL": worker.broker_url,
            "CELERY_RESULT_BACKEND": worker.backend_url,
            "CELERY_QUEUE": worker.queue,
            "AIRFLOW_API_URL": airflow_url,
            "AIRFLOW_USERNAME": stack.username,
            "AIRFLOW_PASSWORD": stack.password,
        }
    )


def test_health_reports_celery_workers_and_the_airflow_api(
    tmp_path: Path,
    celery_worker: CeleryWorker,
    airflow3: AirflowStack,
) -> None:
    """Both Core dependencies answer: exit 0, the worker is named, the API version shown."""
    done = run_cli(
        ["health"], env=_env(tmp_path, celery_worker, airflow3.base_url, airflow3), cwd=tmp_path
    )

    checks = json.loads(done.stdout)
    assert 0 == done.returncode, done.stdout + done.stderr[-2000:]
    assert {"queue", "config", "storage", "celery", "airflow"} == set(checks)
    assert celery_worker.hostname in checks["celery"]["detail"]
    assert checks["airflow"]["detail"].startswith(f"API v2 answers user {airflow3.username!r} (")


def test_health_fails_when_airflow_is_unreachable(
    tmp_path: Path,
    celery_worker: CeleryWorker,
    airflow3: AirflowStack,
) -> None:
    """Airflow on a closed port: exit 1 and the airflow check says why; Celery still ok."""
    url = f"http://127.0.0.1:{free_port()}"

    done = run_cli(
        ["health", "-o", "table"], env=_env(tmp_path, celery_worker, url, airflow3), cwd=tmp_path
    )

    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert 1 == done.returncode
    assert rows["celery"].split()[1] == "yes"
    assert rows["airflow"].split()[1] == "no"
    assert "unreachable" in rows["airflow"]
