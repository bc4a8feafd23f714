"""The Airflow client's wait keeps its deadline even when the API answers slowly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atlasreg_cursor.adapters.core.airflow import AirflowClient
from atlasreg_cursor.domain.errors import SourceFailed


class _SlowAirflow(BaseHTTPRequestHandler):
    """Airflow 2's API: the version at once, every run read after ``stall`` seconds."""

    stall = 0.0
    reads = 0

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path.endswith("/version"):
            self._answer({"version": "2.10.5"})
            return
        type(self).reads += 1
        time.sleep(self.stall)
        self._answer({"dag_run_id": "r1", "dag_id": "slow", "state": "running"})

    def _answer(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def slow_airflow() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowAirflow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SlowAirflow.stall, _SlowAirflow.reads = 0.0, 0
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_poll_does_not_carry_the_wait_past_its_deadline(slow_airflow: str) -> None:
    """A run read that takes 20 s is cut: the wait ends as ``timeout`` soon after 1 s."""
    client = AirflowClient(base_url=slow_airflow, username="u", password="p", api_version="v1")
    client.get_run("slow", "r1")  # connected and answering
    _SlowAirflow.stall = 20.0
    started = time.monotonic()
    try:
        with pytest.raises(SourceFailed) as info:
            client.wait("slow", "r1", timeout=1.0, poll_initial=0.2, poll_max=0.5)
    finally:
        client.close()

    assert "timeout" == info.value.error_type
    assert time.monotonic() - started < 10
    assert 2 == _SlowAirflow.reads


def test_a_poll_without_deadline_waits_for_the_answer(slow_airflow: str) -> None:
    """Outside a wait a slow answer is awaited (the client's own timeout applies)."""
    client = AirflowClient(base_url=slow_airflow, username="u", password="p", api_version="v1")
    _SlowAirflow.stall = 1.5
    started = time.monotonic()
    try:
        run = client.get_run("slow", "r1")
    finally:
        client.close()

    assert "running" == run.state
    assert time.monotonic() - started >= 1.5
