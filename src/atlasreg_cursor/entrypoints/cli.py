"""The ``atlasreg-cursor`` command line. ``main(argv) -> exit code``.

Exit codes: 0 success, 1 the job failed, 2 bad usage or settings,
3 a transient failure (retry later), 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TRANSIENT = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlasreg-cursor",
        description=(
            "Ingest orchestrator: queue → AtlasReg Core → Gold JSON → object storage → webhook."
        ),
    )
    parser.add_argument(
        "--env-file",
        default=".env",
        help="settings file read before the environment (default: .env)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon: consume the queue until stopped")
    run.add_argument("--once", action="store_true", help="handle one message, then exit")
    run.add_argument("--max-messages", type=int, metavar="N", help="exit after N messages")
    run.add_argument("--until-empty", action="store_true", help="exit when the queue is drained")
    run.add_argument(
        "--no-http", action="store_true", help="do not serve /healthz, /readyz, /metrics"
    )

    enqueue = sub.add_parser("enqueue", help="put a job message on the queue")
    enqueue.add_argument("type", choices=["start_daily_ingest", "reprocess"])
    _date_args(enqueue)

    for name, text in (
        ("ingest", "run a daily ingest now, in the foreground"),
        ("reprocess", "reprocess a date now, in the foreground"),
    ):
        one = sub.add_parser(name, help=text)
        _date_args(one)

    demo = sub.add_parser(
        "demo", help="the whole flow on the embedded default against a bundled sample site"
    )
    demo.add_argument("--home", help="CURSOR_HOME for the demo (default: var/demo)")

    config = sub.add_parser("config", help="show, validate or push the watchlist")
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_sub.add_parser("show", help="print the settings (secrets redacted) and the watchlist")
    config_sub.add_parser(
        "validate", help="check the settings and the watchlist; exit 1 on problems"
    )
    push = config_sub.add_parser(
        "push", help="validate a watchlist file and install it (KV key or WATCHLIST_FILE)"
    )
    push.add_argument("file", help="the watchlist JSON to install")
    push.add_argument(
        "--allow-invalid-sources",
        action="store_true",
        help="install even when some sources are invalid (they are skipped at run time)",
    )

    runs = sub.add_parser("runs", help="inspect run journals")
    runs_sub = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    runs_list = runs_sub.add_parser("list", help="list runs")
    runs_list.add_argument("--limit", type=int, default=50)
    runs_show = runs_sub.add_parser("show", help="print one run's journal")
    runs_show.add_argument("run_id")

    dlq = sub.add_parser("dlq", help="dead letters: list, replay, purge")
    dlq_sub = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser("list", help="list dead letters with their reasons")
    dlq_list.add_argument("--limit", type=int, default=100)
    replay = dlq_sub.add_parser("replay", help="put a dead letter back on the queue")
    replay.add_argument("message_id")
    dlq_sub.add_parser("purge", help="delete every dead letter")

    hooks = sub.add_parser("hooks", help="notifications in the outbox: list, resend")
    hooks_sub = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    hooks_list = hooks_sub.add_parser("list", help="list notifications not yet delivered")
    hooks_list.add_argument("--all", action="store_true", help="delivered ones too")
    hooks_list.add_argument("--limit", type=int, default=100)
    resend = hooks_sub.add_parser(
        "resend", help="send a run's notifications again now (same webhook-id)"
    )
    resend.add_argument("run_id")

    verify = sub.add_parser(
        "verify", help="check a stored Gold: SHA-256 of its bytes and schema 2.0"
    )
    verify.add_argument("key")

    sub.add_parser("health", help="check every configured backend; exit 1 if one fails")
    return parser


def _date_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", required=True, help="the date, YYYY-MM-DD")
    parser.add_argument("--sources", help="comma-separated source ids to restrict the run to")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    from pathlib import Path

    from atlasreg_cursor.domain.errors import CursorError

    from .settings import SettingsError, load_settings

    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        settings = load_settings(env_file=Path(args.env_file))
    except SettingsError as exc:
        print(f"atlasreg-cursor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from . import commands
    from .log import configure_logging

    daemon = args.command == "run"
    configure_logging(
        settings.log_format if daemon else "console",
        settings.log_level,
        stream=sys.stdout if daemon else sys.stderr,
    )
    handler = getattr(commands, f"cmd_{args.command}")
    try:
        code: int = handler(settings, args)
    except SettingsError as exc:
        print(f"atlasreg-cursor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except CursorError as exc:
        print(f"atlasreg-cursor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_TRANSIENT if exc.transient else EXIT_FAILED
    return code


def new_message(kind: str, date: str, sources: str | None) -> dict[str, Any]:
    """A job message with a fresh ``message_id`` (what ``enqueue`` sends)."""
    payload: dict[str, Any] = {}
    if sources:
        payload["sources"] = [s.strip() for s in sources.split(",") if s.strip()]
    return {
        "type": kind,
        "date": date,
        "payload": payload,
        "timestamp": dt.datetime.now(dt.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"),
        "message_id": uuid.uuid4().hex,
    }


def print_json(data: Any) -> None:
    """Print *data* as indented JSON on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
