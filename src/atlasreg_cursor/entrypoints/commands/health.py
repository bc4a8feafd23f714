"""``health``: check every configured backend once (and Celery and Airflow with Core).

Each check makes a real call: the queue's counts, the watchlist loaded, the
Gold keys listed, a Celery ping answered by a worker, and an authenticated
Airflow call (``GET /dags``), so wrong credentials fail the check.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from atlasreg_cursor.entrypoints.backends import executor_backend
from atlasreg_cursor.entrypoints.bootstrap import App, build, core_clients
from atlasreg_cursor.entrypoints.output import EXIT_FAILED, EXIT_OK, print_json, print_rows
from atlasreg_cursor.entrypoints.settings import Settings

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.core.celery import CeleryGateway


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    """Check each backend once (and Celery and Airflow with the Core executor)."""
    checks: dict[str, Any] = {}

    def check(name: str, fn: Callable[[], object]) -> None:
        try:
            checks[name] = {"ok": True, "detail": fn()}
        except Exception as exc:  # report every failure, whatever its kind
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    with build(settings) as app:
        check("queue", lambda: _stats(app))
        check("config", lambda: f"{len(app.config.load().sources)} sources")
        check("storage", lambda: f"{sum(1 for _ in app.storage.list('gold/'))} gold objects")
    if executor_backend(settings).probes_core:
        celery, airflow = core_clients(settings)
        try:
            check("celery", lambda: _celery_workers(celery))
            if airflow is not None:
                check("airflow", airflow.probe)
        finally:
            celery.close()
            if airflow is not None:
                airflow.close()
    rows = [{"check": name, **result} for name, result in checks.items()]
    if args.output == "table":
        print_rows(rows, columns=("check", "ok", "detail", "error"), fmt="table")
    else:
        print_json(checks)
    return EXIT_OK if all(c["ok"] for c in checks.values()) else EXIT_FAILED


def _celery_workers(celery: CeleryGateway) -> str:
    workers = celery.ping(timeout=2.0)
    if not workers:
        raise RuntimeError("the broker answers but no Core worker replied to a ping")
    return f"{len(workers)} workers: {', '.join(workers)}"


def _stats(app: App) -> dict[str, Any]:
    stats = app.queue.stats()
    return {
        "ready": stats.ready,
        "in_flight": stats.in_flight,
        "delayed": stats.delayed,
        "dead": stats.dead,
    }
