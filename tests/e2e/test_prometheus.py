"""The dashboard and the alerts, proven on a real Prometheus scraping a real daemon.

One daemon process (local mode: SQLite queue, sample site) handles three
daily ingests (one source good, one with zero results, one failing every
time) and a poison message while Prometheus scrapes it every second. Then
every dashboard query and every alert expression is evaluated through
Prometheus's HTTP API, and promtool checks and unit-tests the rules.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.entrypoints.commands.jobs import new_message
from atlasreg_cursor.sample_site import start_sample_site
from tests.support.cli import cli_env, start_cli
from tests.support.prometheus import Prometheus, require_prometheus, start_prometheus
from tests.support.services import free_port, wait_until

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "atlasreg-cursor.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SIGNAL_RE = re.compile(r"^(?P<signal>.+?)\s*(?:>=|<=|==|!=|>|<)\s*[0-9.]+(?:\s*\*\s*[0-9.]+)*$")
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
RUNS = 3
_SAMPLES_OF_NEWEST_SERIES = "min(count_over_time(cursor_source_runs_total[1m]))"


def _watchlist(site: str) -> dict[str, Any]:
    csv = {"delimiter": ";", "fields": {"title": "descricao", "url": "link", "date": "data"}}
    return {
        "sources": [
            {
                "id": "ons_ok",
                "handler_id": "DOWNLOAD_CSV",
                "url_feed": f"{site}/dados/ocorrencias.csv",
                "csv": csv,
            },
            {
                "id": "ons_zero",
                "handler_id": "DOWNLOAD_CSV",
                "url_feed": f"{site}/dados/ocorrencias.csv",
                "keywords": ["palavra-que-nao-aparece"],
                "csv": csv,
            },
            {
                "id": "ons_broken",
                "handler_id": "DOWNLOAD_CSV",
                "url_feed": f"{site}/dados/nao-existe.csv",
                "csv": csv,
            },
        ],
        "global_settings": {"alert_on_zero_results": True, "alert_recipients": ["ops@example.com"]},
    }


class Scenario:
    """The daemon, Prometheus, and where things are."""

    def __init__(
        self,
        home: Path,
        prometheus: Prometheus,
        metrics_url: str,
        watchlist: Path,
        metrics_before_runs: str,
    ) -> None:
        self.home = home
        self.prometheus = prometheus
        self.metrics_url = metrics_url
        self.watchlist = watchlist
        self.metrics_before_runs = metrics_before_runs


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Start the daemon and Prometheus, then run the jobs while it scrapes."""
    require_prometheus()
    home = tmp_path_factory.mktemp("prom-cursor")
    http = urllib3.PoolManager(timeout=urllib3.Timeout(total=5))
    with start_sample_site() as site:
        watchlist = home / "watchlist.json"
        watchlist.write_text(json.dumps(_watchlist(site.base_url)))
        port = free_port()
        env = cli_env(
            {
                "CURSOR_HOME": str(home),
                "WATCHLIST_FILE": str(watchlist),
                "ALLOW_PRIVATE_SOURCES": "true",
                "POLL_SECONDS": "0.5",
                "PROBE_INTERVAL_SECONDS": "1",
                "CONFIG_TTL_SECONDS": "0",
                "METRICS_PORT": str(port),
            }
        )
        daemon = start_cli(["run"], env=env, cwd=home)
        metrics_url = f"http://127.0.0.1:{port}"
        try:
            assert wait_until(
                lambda: http.request("GET", metrics_url + "/readyz").status == 200, timeout=30
            ), "the daemon never became ready"
            before = http.request("GET", metrics_url + "/metrics").data.decode()
            with start_prometheus(
                home / "prometheus", [f"127.0.0.1:{port}"], rule_files=[ALERTS]
            ) as prometheus:
                assert wait_until(
                    lambda: [v for _, v in prometheus.values('up{job="atlasreg-cursor"}')] == [1.0],
                    timeout=30,
                    interval=0.5,
                ), "Prometheus never scraped the daemon"
                _run_jobs(home, prometheus, http, metrics_url)
                yield Scenario(home, prometheus, metrics_url, watchlist, before)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)


def _run_jobs(
    home: Path, prometheus: Prometheus, http: urllib3.PoolManager, metrics_url: str
) -> None:
    queue = SqliteQueue(home / "queue.sqlite3")
    for day in range(RUNS):
        queue.send(canonical_bytes(new_message("start_daily_ingest", f"2026-11-2{day}", None)))
    queue.send(b'{"type": "drop_tables", "date": "2026-11-24"}')

    def handled() -> bool:
        body = http.request("GET", metrics_url + "/metrics").data.decode()
        return (
            f'cursor_messages_processed_total{{outcome="acked"}} {RUNS}.0' in body
            and 'cursor_messages_processed_total{outcome="dead_lettered"} 1.0' in body
        )

    assert wait_until(handled, timeout=60, interval=0.25), "the daemon did not handle the jobs"
    # The per-source series are born with the runs: rate() and increase() need
    # two samples of each, so wait for a second scrape of them too.
    assert wait_until(
        lambda: (
            [v for _, v in prometheus.values("sum(cursor_runs_total)")] == [float(RUNS)]
            and [v for _, v in prometheus.values('max(cursor_queue_depth{state="dead"})')] == [1.0]
            and [v >= 2 for _, v in prometheus.values(_SAMPLES_OF_NEWEST_SERIES)] == [True]
        ),
        timeout=20,
        interval=0.25,
    ), "Prometheus did not see the runs"


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_dashboard_has_the_panels_operators_need() -> None:
    """At least eight panels, among them the ones the operators asked for."""
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}

    assert len(titles) >= 8
    for wanted in (
        "Runs by outcome",
        "Run duration p50 / p95",
        "Sources ok / failed by source",
        "Documents per run",
        "Queue depth by state",
        "Dead letters",
        "Webhook deliveries and pending",
        "Age of the last success",
        "Config staleness",
    ):
        assert wanted in titles


def test_dashboard_reads_runs_and_dead_letters_as_every_backend_reports_them() -> None:
    """Run duration from finished runs, not deliveries; dead letters counted over the range."""
    dashboard = json.loads(DASHBOARD.read_text())
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}

    assert 2 == len(by_title["Run duration p50 / p95"])
    assert all(
        "cursor_run_duration_seconds_bucket" in e for e in by_title["Run duration p50 / p95"]
    )
    assert "sum(increase(cursor_dead_letters_total[$__range]))" in by_title["Dead letters"]


def test_last_success_is_absent_until_one_is_known(scenario: Scenario) -> None:
    """A fresh daemon exports no last-success time (not 0, an age of 56 years); after runs, it does."""
    name = "cursor_run_last_success_timestamp_seconds"
    after = scenario.prometheus.values(name)

    assert f"\n{name} " not in scenario.metrics_before_runs
    assert "process_start_time_seconds" in scenario.metrics_before_runs
    assert 1 == len(after)
    assert after[0][1] > 1.7e9


def test_every_dashboard_query_returns_data(scenario: Scenario) -> None:
    """Each panel query evaluates without error and returns at least one series."""
    problems = []
    for title, expr in _dashboard_queries():
        answer = scenario.prometheus.query(expr)
        if answer.get("status") != "success":
            problems.append(f"{title}: {expr}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            problems.append(f"{title}: {expr}: no data")

    assert [] == problems


def test_every_alert_expression_evaluates_on_real_series(scenario: Scenario) -> None:
    """Each alert expression evaluates; the signal it compares returns data."""
    problems = []
    for rule in _alert_rules():
        expr = " ".join(rule["expr"].split())
        match = SIGNAL_RE.match(expr)
        if match is None:
            problems.append(f"{rule['alert']}: not `signal <op> threshold`: {expr}")
            continue
        answer = scenario.prometheus.query(expr)
        if answer.get("status") != "success":
            problems.append(f"{rule['alert']}: {answer.get('error')}")
        if not scenario.prometheus.values(match["signal"]):
            problems.append(f"{rule['alert']}: no data for {match['signal']}")

    assert [] == problems


def test_the_failing_source_and_the_dead_letter_fire_their_alerts(scenario: Scenario) -> None:
    """The source failing in every run and the poison message make their alerts fire."""

    def firing() -> dict[str, list[dict[str, str]]]:
        alerts = scenario.prometheus.api("/api/v1/alerts")["data"]["alerts"]
        out: dict[str, list[dict[str, str]]] = {}
        for alert in alerts:
            if alert["state"] == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return out

    assert wait_until(
        lambda: {"CursorSourceFailing", "CursorDeadLettersGrowing"} <= set(firing()), timeout=20
    ), firing()
    assert ["ons_broken"] == [labels["source_id"] for labels in firing()["CursorSourceFailing"]]
    assert "CursorNoSuccessfulRun" not in firing()


def test_webhook_metadata_carries_zero_result_alerts(scenario: Scenario) -> None:
    """alert_on_zero_results and alert_recipients reach the webhook's metadata."""
    notes = [json.loads(line) for line in (scenario.home / "outbox.jsonl").read_text().splitlines()]
    bodies = [n["body"] for n in notes]

    assert RUNS == len(bodies)
    for body in bodies:
        assert ["ons_zero"] == [a["source_id"] for a in body["metadata"]["alerts"]]
        assert {"zero_results"} == {a["type"] for a in body["metadata"]["alerts"]}
        assert ["ops@example.com"] == body["metadata"]["alert_recipients"]
    zero = scenario.prometheus.values('cursor_source_zero_results_total{source_id="ons_zero"}')
    assert [float(RUNS)] == [v for _, v in zero]


def test_readiness_drops_while_the_watchlist_is_missing_and_recovers(scenario: Scenario) -> None:
    """/readyz is 503 naming the config while the file is gone, 200 again once it is back."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(total=5))

    def readyz() -> tuple[int, dict[str, Any]]:
        response = http.request("GET", scenario.metrics_url + "/readyz")
        return response.status, json.loads(response.data)

    assert 200 == readyz()[0]
    saved = scenario.watchlist.read_bytes()
    scenario.watchlist.unlink()
    try:
        assert wait_until(lambda: readyz()[0] == 503, timeout=15)
        body = readyz()[1]
        assert wait_until(
            lambda: [v for _, v in scenario.prometheus.values("min(cursor_ready)")] == [0.0],
            timeout=15,
        )
    finally:
        scenario.watchlist.write_bytes(saved)
    assert "config unreachable" in body["reason"]
    assert body["dependencies"]["config"]["ok"] is False
    assert wait_until(lambda: readyz()[0] == 200, timeout=15)
    assert "reason" not in readyz()[1]
    assert wait_until(
        lambda: [v for _, v in scenario.prometheus.values("min(cursor_ready)")] == [1.0], timeout=15
    )


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    """promtool accepts the rules and the config, and the rule unit tests pass."""
    _, promtool = require_prometheus()
    prom = DEPLOY / "prometheus"

    checks = [
        subprocess.run(
            [promtool, "check", "rules", "alerts.yml"],
            cwd=prom,
            capture_output=True,
            text=True,
            check=False,
        ),
        subprocess.run(
            [promtool, "check", "config", "prometheus.yml"],
            cwd=prom,
            capture_output=True,
            text=True,
            check=False,
        ),
        subprocess.run(
            [promtool, "test", "rules", "alerts.test.yml"],
            cwd=prom,
            capture_output=True,
            text=True,
            check=False,
        ),
    ]

    assert [0, 0, 0] == [c.returncode for c in checks], [c.stdout + c.stderr for c in checks]
    assert "SUCCESS" in checks[2].stdout + checks[2].stderr
