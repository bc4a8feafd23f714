"""The fault suite's report: parts written by each test process, merged into one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults.report import FIGURES, FaultReport, merge_parts, render_markdown


def test_parts_of_every_worker_are_merged_with_every_figure(tmp_path: Path) -> None:
    """Two workers' scenarios all reach the report; totals add up; absent figures are None."""
    parts = tmp_path / "parts"
    first = FaultReport(parts=parts, worker="gw0", seed=7)
    first.record(
        "kill_9_sqlite",
        faults_injected=1,
        messages=4,
        lost=0,
        doubled=0,
        doubled_golds=0,
        doubled_notifications=0,
        notifications_delivered=4,
        dead_lettered_by_infrastructure_faults=0,
        recovery_seconds_after_kill_9=[34.5],
    )
    second = FaultReport(parts=parts, worker="gw1", seed=7)
    second.record(
        "redis_restart",
        faults_injected=2,
        messages=6,
        lost=1,
        doubled=1,
        doubled_golds=1,
        doubled_notifications=0,
    )
    second.record("file_store_writer_killed", faults_injected=12, wedged=0)
    first.write_part()
    second.write_part()

    report = merge_parts(parts, tmp_path / "report.json")

    assert report is not None
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert ["file_store_writer_killed", "kill_9_sqlite", "redis_restart"] == list(
        report["scenarios"]
    )
    assert all(set(FIGURES) <= set(s) for s in report["scenarios"].values())
    assert report["scenarios"]["file_store_writer_killed"]["messages"] is None
    assert report["scenarios"]["file_store_writer_killed"]["doubled_golds"] is None
    assert "gw1" == report["scenarios"]["redis_restart"]["worker"]
    assert (15, 10, 1) == (
        report["totals"]["faults_injected"],
        report["totals"]["messages"],
        report["totals"]["lost"],
    )
    assert (1, 1, 0) == (
        report["totals"]["doubled"],
        report["totals"]["doubled_golds"],
        report["totals"]["doubled_notifications"],
    )
    assert 34.5 == report["totals"]["max_recovery_seconds_after_kill_9"]
    assert (7, ["gw0", "gw1"]) == (report["seed"], report["workers"])
    rendered = render_markdown(report)
    assert "| kill_9_sqlite | 1 | 4 | 0 | 0 | 0 | 4 | 34.5 |" in rendered
    assert "| doubled: Golds written again | 1 |" in rendered


def test_no_part_no_report(tmp_path: Path) -> None:
    """A run with no fault scenario writes no report (and keeps an older one)."""
    out = tmp_path / "report.json"
    out.write_text("{}")

    assert merge_parts(tmp_path / "none", out) is None
    assert "{}" == out.read_text()
