"""Operating the daemon: health while it works, dependencies down, a taken port, the schedule."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.entrypoints.bootstrap import build
from atlasreg_cursor.entrypoints.commands.jobs import new_message
from atlasreg_cursor.entrypoints.operations import start_operations
from atlasreg_cursor.entrypoints.readiness import LoopMonitor
from atlasreg_cursor.entrypoints.settings import load_settings
from atlasreg_cursor.sample_site import start_sample_site
from tests.support.cli import CLI, cli_env, run_cli, start_cli
from tests.support.services import free_port, wait_until

pytestmark = pytest.mark.slow

CSV = {"delimiter": ";", "fields": {"title": "descricao", "url": "link", "date": "data"}}


def _env(home: Path, sources: list[dict[str, Any]], **extra: str) -> dict[str, str]:
    path = home / "watchlist.json"
    path.write_text(json.dumps({"sources": sources}))
    return cli_env(
        {
            "CURSOR_HOME": str(home),
            "WATCHLIST_FILE": str(path),
            "ALLOW_PRIVATE_SOURCES": "true",
            "POLL_SECONDS": "0.5",
            "PROBE_INTERVAL_SECONDS": "1",
            **extra,
        }
    )


def _stop(daemon: subprocess.Popen[str], *, signalled: bool = False) -> int:
    if not signalled:
        daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        return daemon.wait(timeout=10)


def test_a_taken_metrics_port_is_exit_2_naming_it(tmp_path: Path) -> None:
    """The daemon does not run on unhealthy: it exits 2 and says which setting to change."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env(tmp_path, [], METRICS_PORT=str(port))

        done = run_cli(["run"], env=env, cwd=tmp_path, timeout=60)

    assert 2 == done.returncode
    assert "METRICS_PORT" in done.stdout + done.stderr


def _sample(body: str, name: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_ready_and_alive_during_a_long_run(tmp_path: Path) -> None:
    """A run in progress keeps /readyz at 200 and /healthz reports it with the loop heartbeat;
    stopped while the run finishes, /readyz is 503 "stopping" and /metrics says so."""
    port = free_port()
    http = urllib3.PoolManager(timeout=urllib3.Timeout(total=5))
    base = f"http://127.0.0.1:{port}"
    with start_sample_site() as site:
        env = _env(
            tmp_path,
            [
                {
                    "id": "slow",
                    "handler_id": "DOWNLOAD_CSV",
                    "url_feed": f"{site.base_url}/slow?seconds=6",
                    "csv": CSV,
                }
            ],
            METRICS_PORT=str(port),
        )
        daemon = start_cli(["run"], env=env, cwd=tmp_path)
        signalled = False
        try:
            assert wait_until(
                lambda: http.request("GET", base + "/readyz").status == 200, timeout=30
            )
            idle = json.loads(http.request("GET", base + "/healthz").data)
            SqliteQueue(tmp_path / "queue.sqlite3").send(
                canonical_bytes(new_message("start_daily_ingest", "2026-11-24", None))
            )
            assert wait_until(
                lambda: (
                    json.loads(http.request("GET", base + "/healthz").data)[
                        "run_in_progress_seconds"
                    ]
                    is not None
                ),
                timeout=20,
            )
            during = [http.request("GET", base + "/readyz") for _ in range(3)]
            busy = json.loads(during[-1].data)
            scraped = http.request("GET", base + "/metrics").data.decode()
            daemon.send_signal(signal.SIGTERM)  # the run in hand (6 s) finishes first
            signalled = True
            assert wait_until(
                lambda: http.request("GET", base + "/readyz").status == 503,
                timeout=5,
                interval=0.05,
            )
            stopping = http.request("GET", base + "/readyz")
            scraped_stopping = http.request("GET", base + "/metrics").data.decode()
        finally:
            code = _stop(daemon, signalled=signalled)

    assert 0 == code
    assert (0.0, 1.0) == (_sample(scraped, "cursor_stopping"), _sample(scraped, "cursor_ready"))
    assert "stopping" == json.loads(stopping.data)["reason"]
    assert (1.0, 0.0) == (
        _sample(scraped_stopping, "cursor_stopping"),
        _sample(scraped_stopping, "cursor_ready"),
    )
    assert idle["loop_heartbeat_age_seconds"] is not None
    assert [200, 200, 200] == [r.status for r in during]
    assert busy["run_in_progress_seconds"] is not None
    assert {"queue", "storage", "config"} == set(busy["dependencies"])
    assert any(b["dependency"] == "storage" for b in busy["breakers"])


def test_two_daemons_run_a_missed_slot_once(tmp_path: Path) -> None:
    """Both daemons find yesterday's slot missed at start: one run, one Gold, one webhook."""
    with start_sample_site() as site:
        env = _env(
            tmp_path,
            [
                {
                    "id": "ons",
                    "handler_id": "DOWNLOAD_CSV",
                    "url_feed": f"{site.base_url}/dados/ocorrencias.csv",
                    "csv": CSV,
                }
            ],
            SCHEDULE="0 6 * * *",
            SCHEDULE_TZ="America/Sao_Paulo",
        )
        marker = tmp_path / "store" / "schedule" / "last-slot.json"
        marker.parent.mkdir(parents=True)
        marker.write_text(json.dumps({"slot": "2000-01-01T09:00:00Z"}))
        daemons = [start_cli(["run", "--no-http"], env=env, cwd=tmp_path) for _ in range(2)]
        outbox = tmp_path / "outbox.jsonl"
        queue = SqliteQueue(tmp_path / "queue.sqlite3")
        try:
            assert wait_until(lambda: outbox.exists(), timeout=60)
            assert wait_until(
                lambda: (s := queue.stats()).ready == 0 and s.in_flight == 0 and s.delayed == 0,
                timeout=60,
            )
        finally:
            codes = [_stop(d) for d in daemons]
            logs = [d.stdout.read() if d.stdout else "" for d in daemons]

    golds = list((tmp_path / "store" / "gold").rglob("*.json"))
    journals = list((tmp_path / "store" / "runs").glob("*.json"))
    notes = outbox.read_text().splitlines()
    assert [0, 0] == codes
    assert (1, 1, 1) == (len(golds), len(journals), len(notes)), logs
    journal = json.loads(journals[0].read_text())
    assert journal["identity"].startswith("schedule:")
    assert json.loads(marker.read_text())["slot"] > "2000-01-01"


def test_schedule_show_prints_the_next_slots(tmp_path: Path) -> None:
    """`schedule show` lists the next slots with their local date and due sources."""
    env = _env(
        tmp_path,
        [
            {"id": "daily", "handler_id": "CUSTOM_SCRAPER"},
            {"id": "weekly", "handler_id": "CUSTOM_SCRAPER", "schedule": "0 6 * * 1"},
        ],
        SCHEDULE="0 6 * * *",
    )

    done = run_cli(["schedule", "show", "--count", "7"], env=env, cwd=tmp_path)
    table = run_cli(["schedule", "show", "-o", "table"], env=env, cwd=tmp_path)

    rows = json.loads(done.stdout)
    assert 0 == done.returncode, done.stderr
    assert 7 == len(rows)
    assert all(r["local_time"].endswith("T06:00:00-03:00") for r in rows)
    assert 1 == sum("weekly" in r["sources"] for r in rows)
    assert all("daily" in r["sources"] for r in rows)
    assert table.stdout.splitlines()[0].split() == ["SLOT", "LOCAL_TIME", "DATE", "SOURCES"]


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`config show | head -1` prints one line and no traceback."""
    env = _env(tmp_path, [{"id": f"s{i}", "handler_id": "CUSTOM_SCRAPER"} for i in range(3000)])
    command = " ".join([*CLI, "--env-file", "/nonexistent", "config", "show"]) + " | head -1"

    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert "{" == done.stdout.strip()
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr
    assert done.returncode in (0, 141)


@contextlib.contextmanager
def _serving(home: Path, **env: str) -> Iterator[Callable[[], tuple[int, dict[str, Any]]]]:
    """The daemon's side-cars (probes, /readyz) on real adapters, in process; GET /readyz."""
    (home / "watchlist.json").write_text('{"sources": []}')
    settings = load_settings(
        {
            "CURSOR_HOME": str(home),
            "WATCHLIST_FILE": str(home / "watchlist.json"),
            "METRICS_PORT": "0",
            "PROBE_INTERVAL_SECONDS": "1",
            **env,
        },
        env_file=None,
    )
    app = build(settings)
    monitor = LoopMonitor()
    monitor.beat()
    ops = start_operations(app, monitor, serve_http=True)
    http = urllib3.PoolManager(timeout=urllib3.Timeout(total=5))

    def readyz() -> tuple[int, dict[str, Any]]:
        response = http.request("GET", f"http://127.0.0.1:{ops.port}/readyz")
        return response.status, json.loads(response.data)

    try:
        yield readyz
    finally:
        ops.stop()
        app.close()


def test_readyz_is_503_naming_the_queue_when_it_is_down(tmp_path: Path) -> None:
    """The Redis queue on a closed port: 503, the reason names the queue, the rest is fine."""
    with _serving(
        tmp_path, QUEUE_BACKEND="redis", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    ) as readyz:
        assert wait_until(
            lambda: {"queue", "storage", "config"} <= set(readyz()[1]["dependencies"]), timeout=20
        )
        status, body = readyz()

    assert 503 == status
    assert body["reason"].startswith("queue unreachable (QueueUnavailable")
    assert {"queue": False, "storage": True, "config": True} == {
        name: d["ok"] for name, d in body["dependencies"].items()
    }


def test_readyz_shows_the_store_down_and_its_breaker_open(tmp_path: Path) -> None:
    """The object store on a closed port: 503 naming it; after two failed probes its breaker is open."""
    with _serving(
        tmp_path,
        STORAGE_BACKEND="minio",
        MINIO_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        MINIO_ACCESS_KEY="cursor",
        MINIO_SECRET_KEY="cursor-secret",
        GOLD_BUCKET="gold",
        BREAKER_FAIL_MAX="2",
    ) as readyz:
        assert wait_until(
            lambda: any(b["state"] == "open" for b in readyz()[1].get("breakers", [])), timeout=15
        )
        status, body = readyz()

    assert 503 == status
    assert body["reason"].startswith("storage unreachable (Storage")
    assert body["dependencies"]["storage"]["ok"] is False
    (breaker,) = [b for b in body["breakers"] if b["dependency"] == "storage"]
    assert ("open", 2) == (breaker["state"], breaker["failures"])
    assert breaker["open_since"] is not None
