"""The daemon and one-shot commands in local mode, as real processes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.sample_site import start_sample_site
from tests.support.cli import cli_env, run_cli, start_cli
from tests.support.services import free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """The bundled sample site on a free loopback port."""
    with start_sample_site() as site:
        yield site.base_url


def _env(home: Path, site: str, *, slow: bool = False, **extra: str) -> dict[str, str]:
    paths = ["/dados/ocorrencias.csv", *(["/slow?seconds=3"] if slow else [])]
    watchlist = {
        "sources": [
            {
                "id": f"ons_ocorrencias_{index}",
                "handler_id": "DOWNLOAD_CSV",
                "url_feed": f"{site}{path}",
                "timeout_seconds": 30,
                "csv": {
                    "delimiter": ";",
                    "fields": {"title": "descricao", "url": "link", "date": "data"},
                },
            }
            for index, path in enumerate(paths)
        ]
    }
    path = home / "watchlist.json"
    path.write_text(json.dumps(watchlist))
    return cli_env(
        {
            "CURSOR_HOME": str(home),
            "WATCHLIST_FILE": str(path),
            "ALLOW_PRIVATE_SOURCES": "true",
            "POLL_SECONDS": "0.5",
            **extra,
        }
    )


def _spare_events(output: str) -> list[tuple[str, object]]:
    """The spare crawl process's log events (JSON lines), with their pids."""
    events = []
    for line in output.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if str(record.get("event", "")).startswith("crawl.spare_"):
                events.append((record["event"], record.get("pid")))
    return events


def test_daemon_drains_the_queue_and_dead_letters_poison(tmp_path: Path, site_url: str) -> None:
    """Two jobs become two Gold objects and two outbox notifications; the poison is dead-lettered.
    Each run takes a spare crawl process started ahead (the second one after the first run's
    process was closed); the commands that never crawl start none."""
    env = _env(tmp_path, site_url, LOG_LEVEL="DEBUG")
    quiet = []
    for args in (
        ["start_daily_ingest", "--date", "2026-11-24"],
        ["reprocess", "--date", "2026-11-20"],
    ):
        enqueued = run_cli(["enqueue", *args], env=env, cwd=tmp_path)
        assert 0 == enqueued.returncode
        quiet.append(enqueued.stderr)
    SqliteQueue(tmp_path / "queue.sqlite3").send(b'{"type":"drop_tables","date":"2026-11-24"}')

    done = run_cli(["run", "--until-empty", "--no-http"], env=env, cwd=tmp_path)

    assert 0 == done.returncode, done.stderr[-2000:]
    spares = _spare_events(done.stdout)
    assert ["crawl.spare_started", "crawl.spare_taken"] * 2 == [e for e, _ in spares][:4]
    assert spares[0][1] == spares[1][1] != spares[2][1] == spares[3][1]
    golds = sorted(
        p.relative_to(tmp_path / "store").as_posix()
        for p in (tmp_path / "store" / "gold").rglob("*.json")
    )
    assert [True, True] == [g.startswith("gold/2026-11-2") for g in golds]
    assert 1 == sum(g.endswith("_reprocessed.json") for g in golds)
    outbox = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert ["ingest_complete", "ingest_complete"] == [n["event_type"] for n in outbox]
    listed = run_cli(["dlq", "list"], env=env, cwd=tmp_path)
    quiet.append(listed.stderr)
    dead = json.loads(listed.stdout)
    assert 1 == len(dead)
    assert dead[0]["reason"].startswith("invalid message: unknown type 'drop_tables'")
    for key in golds:
        verified = run_cli(["verify", key], env=env, cwd=tmp_path)
        assert 0 == verified.returncode, verified.stdout
        quiet.append(verified.stderr)
    assert [] == [err for err in quiet if "crawl." in err]
    stats = SqliteQueue(tmp_path / "queue.sqlite3").stats()
    assert (0, 0, 1) == (stats.ready, stats.in_flight, stats.dead)


def test_ingest_one_shot_prints_the_json_line(tmp_path: Path, site_url: str) -> None:
    """`ingest` runs in the foreground and its JSON line matches the Gold on disk; its run's
    crawl process (CSV turns) was started ahead, before the run began, and taken by the run."""
    env = _env(tmp_path, site_url, LOG_LEVEL="DEBUG")

    done = run_cli(["ingest", "--date", "2026-11-24"], env=env, cwd=tmp_path)

    assert 0 == done.returncode, done.stderr[-2000:]
    log = done.stderr
    assert (
        -1
        < log.find("crawl.spare_started")
        < log.find("run.started")
        < log.find("crawl.spare_taken")
    )
    line = json.loads(done.stdout.strip().splitlines()[-1])
    body = (tmp_path / "store" / line["gold_key"]).read_bytes()
    assert (hashlib.sha256(body).hexdigest(), len(body), "success") == (
        line["sha256"],
        line["size"],
        line["status"],
    )
    assert set(line) == {
        "run_id",
        "status",
        "gold_key",
        "sha256",
        "size",
        "documents_count",
        "events_count",
        "errors_count",
        "notified",
    }


def test_sigterm_finishes_the_message_in_hand(tmp_path: Path, site_url: str) -> None:
    """SIGTERM during a run lets it finish and ack, then the daemon exits 0."""
    env = _env(tmp_path, site_url, slow=True)
    assert (
        0
        == run_cli(
            ["enqueue", "start_daily_ingest", "--date", "2026-11-24"], env=env, cwd=tmp_path
        ).returncode
    )
    queue = SqliteQueue(tmp_path / "queue.sqlite3")
    daemon = start_cli(["run", "--no-http"], env=env, cwd=tmp_path)
    try:
        assert wait_until(lambda: queue.stats().in_flight == 1, timeout=20)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    out = daemon.stdout.read() if daemon.stdout else ""

    stats = queue.stats()
    assert 0 == code
    assert (0, 0, 0) == (stats.ready, stats.in_flight, stats.delayed)
    assert 1 == len(list((tmp_path / "store" / "gold").rglob("*.json")))
    assert "daemon.stopping" in out


def test_health_ready_and_metrics_endpoints(tmp_path: Path, site_url: str) -> None:
    """The daemon serves /healthz, /readyz and Prometheus /metrics."""
    port = free_port()
    env = _env(tmp_path, site_url, METRICS_PORT=str(port))
    assert (
        0
        == run_cli(
            ["enqueue", "start_daily_ingest", "--date", "2026-11-24"], env=env, cwd=tmp_path
        ).returncode
    )
    daemon = start_cli(["run"], env=env, cwd=tmp_path)
    http = urllib3.PoolManager()
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: http.request("GET", base + "/readyz").status == 200, timeout=20)
        assert wait_until(
            lambda: (
                b'cursor_messages_processed_total{outcome="acked"} 1.0'
                in http.request("GET", base + "/metrics").data
            ),
            timeout=30,
        )
        metrics = http.request("GET", base + "/metrics").data.decode()
        health = http.request("GET", base + "/healthz")
        missing = http.request("GET", base + "/nope")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)

    assert (200, "ok") == (health.status, json.loads(health.data)["status"])
    assert 404 == missing.status
    assert 'cursor_queue_depth{state="ready"}' in metrics
    assert "cursor_sources_executed_total" in metrics


def test_killed_daemon_run_is_resumed_not_repeated(tmp_path: Path, site_url: str) -> None:
    """SIGKILL mid-run: a new daemon resumes the run after its lease and publishes it once."""
    env = _env(tmp_path, site_url, slow=True, VISIBILITY_TIMEOUT_SECONDS="2", LEASE_SECONDS="5")
    assert (
        0
        == run_cli(
            ["enqueue", "start_daily_ingest", "--date", "2026-11-24"], env=env, cwd=tmp_path
        ).returncode
    )
    queue = SqliteQueue(tmp_path / "queue.sqlite3")
    runs = tmp_path / "store" / "runs"

    def one_source_done() -> bool:
        journals = list(runs.glob("*.json")) if runs.exists() else []
        return bool(journals) and len(json.loads(journals[0].read_text())["sources"]) == 1

    first = start_cli(["run", "--no-http"], env=env, cwd=tmp_path)
    try:
        assert wait_until(one_source_done, timeout=20)
    finally:
        first.kill()
        first.wait(timeout=10)
    second = start_cli(["run", "--no-http"], env=env, cwd=tmp_path)
    try:
        assert wait_until(lambda: (tmp_path / "outbox.jsonl").exists(), timeout=60)
        assert wait_until(
            lambda: queue.stats().in_flight == 0 and queue.stats().delayed == 0, timeout=10
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    (journal_path,) = runs.glob("*.json")
    journal = json.loads(journal_path.read_text())
    golds = list((tmp_path / "store" / "gold").rglob("*.json"))
    outbox = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert (1, 1) == (len(golds), len(outbox)), (journal["error"], journal["status"])
    assert journal["attempts"] >= 2
    assert ["ons_ocorrencias_0", "ons_ocorrencias_1"] == sorted(
        o["source_id"] for o in journal["sources"]
    )
    assert journal["finished_at"] is not None
