"""The fault suite's report: each test process writes its part, the controller merges them.

Under pytest-xdist every worker runs some scenarios, so every process
(worker, or the only one without xdist) writes its scenarios to its own part
file in a directory named for the run; at the end of the run the
controller merges the parts into one report at ``$FAULT_REPORT`` (default
``var/fault-report.json``). Each scenario carries the same figures (``None``
where one does not apply): faults injected, messages, lost, doubled,
dead-lettered because of an infrastructure fault, notifications delivered,
seconds to recover after ``kill -9``. "Doubled" counts what a consumer of the
results would get twice: a Gold written again (``doubled_golds``: writes
after the first, from the daemons' logs and, where a proxy stands in front
of S3, the server's answers), a notification doubled
(``doubled_notifications``: another body under one ``webhook-id``, or
another ``webhook-id`` for one run), and for the queue alone a message acked
twice or delivered after its ack.

``python -m tests.faults.report [REPORT]`` prints a report as the Markdown
tables of docs/reliability.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

REPO = Path(__file__).resolve().parents[2]

#: The figures every scenario reports, in the report's order.
FIGURES = (
    "faults_injected",
    "messages",
    "lost",
    "doubled",
    "dead_lettered_by_infrastructure_faults",
    "notifications_delivered",
    "recovery_seconds_after_kill_9",
)
#: The parts of ``doubled`` (``None`` where a scenario has no Gold or notification).
DOUBLED_PARTS = ("doubled_golds", "doubled_notifications")
_COUNTS = (*FIGURES[:4], *DOUBLED_PARTS, *FIGURES[4:-1])
_LABELS = {
    "doubled_golds": "doubled: Golds written again",
    "doubled_notifications": "doubled: notifications under two bodies or two ids",
}


#: The run's directory of part files, on the controller (or the only process).
PARTS = pytest.StashKey[Path]()
#: The same directory, handed to each xdist worker in its ``workerinput``.
PARTS_INPUT = "fault_report_parts"


def report_path() -> Path:
    """Where the merged report goes."""
    return Path(os.environ.get("FAULT_REPORT", str(REPO / "var" / "fault-report.json")))


def new_parts_dir() -> Path:
    """A directory for this run's parts (made when the first part is written)."""
    return Path(tempfile.gettempdir()) / f"fault-report-parts-{uuid.uuid4().hex}"


def parts_of(config: pytest.Config) -> tuple[Path, str]:
    """The run's parts directory and this process's name (its xdist worker id, or ``main``)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return Path(workerinput[PARTS_INPUT]), str(workerinput["workerid"])
    return config.stash[PARTS], "main"


@attrs.define
class FaultReport:
    """The figures of the scenarios one test process ran, written as its part of the report."""

    parts: Path
    worker: str
    seed: int
    started: float = attrs.Factory(time.time)
    scenarios: dict[str, dict[str, Any]] = attrs.Factory(dict)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def record(self, name: str, **figures: Any) -> None:
        """Keep *figures* of scenario *name*."""
        with self.lock:
            self.scenarios[name] = dict(figures)

    def write_part(self) -> Path:
        """Write this process's scenarios to its part file; return its path."""
        self.parts.mkdir(parents=True, exist_ok=True)
        path = self.parts / f"{self.worker}.json"
        with self.lock:
            part = {
                "worker": self.worker,
                "seed": self.seed,
                "started": self.started,
                "ended": time.time(),
                "scenarios": self.scenarios,
            }
        path.write_text(json.dumps(part, sort_keys=True))
        return path


def merge(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One report from the parts: every scenario with every figure, and the totals."""
    parts = list(parts)
    scenarios: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, figures in part["scenarios"].items():
            scenarios[name] = {
                **{key: figures.get(key) for key in (*FIGURES, *DOUBLED_PARTS)},
                **figures,
                "worker": part["worker"],
            }
    totals: dict[str, Any] = {
        key: sum(int(s[key]) for s in scenarios.values() if s.get(key) is not None)
        for key in _COUNTS
    }
    recoveries = [
        float(r) for s in scenarios.values() for r in s.get("recovery_seconds_after_kill_9") or []
    ]
    totals["max_recovery_seconds_after_kill_9"] = max(recoveries) if recoveries else None
    started = min((p["started"] for p in parts), default=time.time())
    ended = max((p["ended"] for p in parts), default=started)
    seeds = sorted({p["seed"] for p in parts})
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seeds[0] if len(seeds) == 1 else seeds,
        "workers": sorted(p["worker"] for p in parts),
        "suite_seconds": round(ended - started, 1),
        "totals": totals,
        "scenarios": dict(sorted(scenarios.items())),
    }


def merge_parts(parts_dir: Path, out: Path) -> dict[str, Any] | None:
    """
    Merge the part files in *parts_dir* into the report at *out*.

    Returns:
        The report, ``None`` when no fault scenario ran (no part, nothing written).
    """
    files = sorted(parts_dir.glob("*.json")) if parts_dir.is_dir() else []
    if not files:
        return None
    report = merge(json.loads(f.read_text()) for f in files)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report's totals and its per-scenario figures as Markdown tables."""
    totals = report["totals"]
    lines = [
        f"seed {report['seed']}; {len(report['workers'])} test processes;"
        f" {report['suite_seconds']} s from the first fault scenario to the last",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [
        f"| {_LABELS.get(key, key.replace('_', ' '))} | {_cell(totals.get(key))} |"
        for key in _COUNTS
    ]
    lines.append(
        "| max seconds to recover after kill -9 |"
        f" {_cell(totals.get('max_recovery_seconds_after_kill_9'))} |"
    )
    lines += [
        "",
        "| scenario | faults | messages | lost | doubled | dead (infra) | notified"
        " | recovery s after kill -9 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in report["scenarios"].items():
        cells = " | ".join(_cell(figures.get(key)) for key in FIGURES)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else report_path()
    sys.stdout.write(render_markdown(json.loads(source.read_text())))
