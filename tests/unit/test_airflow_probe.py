"""``health``'s Airflow check makes an authenticated call: a closed port or bad credentials fail it."""

from __future__ import annotations

import argparse
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.core.airflow import AirflowClient
from atlasreg_cursor.domain.errors import ExecutorUnavailable, SourceFailed
from atlasreg_cursor.entrypoints.commands.health import cmd_health
from atlasreg_cursor.entrypoints.settings import load_settings
from tests.support.services import free_port

USER, PASSWORD = "probe-user", "probe-password"
_CLAIMS = base64.urlsafe_b64encode(b'{"exp": 4102444800}').decode().rstrip("=")
TOKEN = f"eyJhbGciOiJub25lIn0.{_CLAIMS}.sig"


class _Airflow(BaseHTTPRequestHandler):
    """The few endpoints of Airflow's API the probe uses, v1 (basic auth) and v2 (JWT)."""

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path in ("/api/v1/version", "/api/v2/version"):
            self._answer(200, {"version": "3.0.0" if "v2" in self.path else "2.10.5"})
        elif self.path == "/api/v2/dags?limit=1":
            self._dags(self.headers.get("Authorization") == f"Bearer {TOKEN}")
        elif self.path == "/api/v1/dags?limit=1":
            basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            self._dags(self.headers.get("Authorization") == f"Basic {basic}")
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/auth/token":
            self._answer(404, {"detail": "Not Found"})
        elif body == {"username": USER, "password": PASSWORD}:
            self._answer(201, {"access_token": TOKEN})
        else:
            self._answer(401, {"detail": "Invalid credentials"})

    def _dags(self, authorised: bool) -> None:
        if authorised:
            self._answer(200, {"dags": [{"dag_id": "cursor_crawl"}], "total_entries": 2})
        else:
            self._answer(401, {"title": "Unauthorized", "detail": "not authenticated"})

    def _answer(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def airflow_url() -> Iterator[str]:
    """A loopback server speaking the probe's part of Airflow's API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Airflow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _probe(url: str, version: str, password: str = PASSWORD) -> str:
    client = AirflowClient(
        base_url=url,
        username=USER,
        password=password,
        api_version=version,  # type: ignore[arg-type]
    )
    try:
        return client.probe()
    finally:
        client.close()


@pytest.mark.parametrize(("version", "spoken"), [("v1", "v1"), ("v2", "v2"), ("auto", "v2")])
def test_the_probe_lists_dags_as_the_user(airflow_url: str, version: str, spoken: str) -> None:
    """Good credentials: the version spoken, the user and the DAGs it sees."""
    assert f"API {spoken} answers user {USER!r} (2 DAGs)" == _probe(airflow_url, version)


@pytest.mark.parametrize("version", ["v1", "v2", "auto"])
def test_wrong_credentials_fail_the_probe(airflow_url: str, version: str) -> None:
    """A wrong password is ``airflow_auth``, whatever the version setting."""
    with pytest.raises(SourceFailed) as info:
        _probe(airflow_url, version, password="wrong")

    assert "airflow_auth" == info.value.error_type
    assert "wrong" not in str(info.value)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_pinned_version_on_a_closed_port_fails_the_probe(version: str) -> None:
    """Pinning the version skips detection; the probe still has to reach Airflow."""
    with pytest.raises(ExecutorUnavailable, match="unreachable"):
        _probe(f"http://127.0.0.1:{free_port()}", version)


@pytest.mark.redis
def test_health_reports_a_closed_airflow_port_with_a_pinned_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``health`` with ``AIRFLOW_API_VERSION=v2`` and nothing listening: the check fails."""
    (tmp_path / "watchlist.json").write_text('{"sources": []}')
    settings = load_settings(
        {
            "CURSOR_HOME": str(tmp_path),
            "WATCHLIST_FILE": str(tmp_path / "watchlist.json"),
            "EXECUTOR_BACKEND": "core",
            "CELERY_QUEUE": f"probe-{tmp_path.name}",
            "AIRFLOW_API_URL": f"http://127.0.0.1:{free_port()}",
            "AIRFLOW_API_VERSION": "v2",
            "AIRFLOW_USERNAME": USER,
            "AIRFLOW_PASSWORD": PASSWORD,
        },
        env_file=None,
    )

    code = cmd_health(settings, argparse.Namespace(output="json"))

    out = "\n" + capsys.readouterr().out  # unconfigured structlog logs there too
    airflow = json.loads(out[out.rindex("\n{\n") :])["airflow"]
    assert 1 == code
    assert not airflow["ok"]
    assert airflow["error"].startswith("ExecutorUnavailable: Airflow at http://127.0.0.1:")
