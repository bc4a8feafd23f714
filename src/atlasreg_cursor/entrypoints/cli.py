"""The ``atlasreg-cursor`` command line: the arguments and the dispatch table.

``main(argv) -> exit code``. The commands live in the :mod:`.commands`
package, one module per subject; what they print and the exit codes in
:mod:`.output` (see there for the codes). Neither imports this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TRANSIENT,
    EXIT_USAGE,
    FORMATS,
    fail,
    quiet_broken_pipe,
)

TYPE_CHECKING = False  # typing is not imported before the arguments are parsed
if TYPE_CHECKING:
    from .settings import Settings

Command = Callable[["Settings", argparse.Namespace], int]


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from atlasreg_cursor import __version__

        print(f"atlasreg-cursor {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Every command, subcommand and option of the CLI."""
    parser = argparse.ArgumentParser(
        prog="atlasreg-cursor",
        description=(
            "Ingest orchestrator: queue → AtlasReg Core → Gold JSON → object storage → webhook."
        ),
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
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
        _date_args(sub.add_parser(name, help=text))

    demo = sub.add_parser(
        "demo", help="the whole flow on the embedded default against a bundled sample site"
    )
    demo.add_argument("--home", help="CURSOR_HOME for the demo (default: var/demo)")

    _config_parser(sub)

    runs = _actions(sub, "runs", "inspect run journals")
    runs_list = runs.add_parser("list", help="list the most recent runs")
    runs_list.add_argument("--limit", type=int, default=50, metavar="N")
    _output_arg(runs_list)
    runs_show = runs.add_parser("show", help="print one run's journal")
    runs_show.add_argument("run_id")

    dlq = _actions(sub, "dlq", "dead letters: list, replay, purge")
    dlq_list = dlq.add_parser("list", help="list dead letters with their reasons")
    dlq_list.add_argument("--limit", type=int, default=100, metavar="N")
    _output_arg(dlq_list)
    dlq.add_parser("replay", help="put a dead letter back on the queue").add_argument(
        "queue_message_id", metavar="QUEUE_MESSAGE_ID"
    )
    purge = dlq.add_parser("purge", help="delete every dead letter (asks first)")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask")

    hooks = _actions(sub, "hooks", "notifications in the outbox: list, resend")
    hooks_list = hooks.add_parser("list", help="list notifications not yet delivered")
    hooks_list.add_argument("--all", action="store_true", help="delivered ones too")
    hooks_list.add_argument("--limit", type=int, default=100, metavar="N")
    _output_arg(hooks_list)
    hooks.add_parser(
        "resend", help="send a run's notifications again now (same webhook-id)"
    ).add_argument("run_id")

    schedule = _actions(sub, "schedule", "the built-in schedule (SCHEDULE, SCHEDULE_TZ)")
    show = schedule.add_parser("show", help="print the next slots, globally and per source")
    show.add_argument("--count", type=int, default=5, metavar="N", help="slots to print")
    _output_arg(show)

    verify = sub.add_parser(
        "verify", help="check a stored Gold: SHA-256 of its bytes and schema 2.0"
    )
    verify.add_argument("key")

    health = sub.add_parser("health", help="check every configured backend; exit 1 if one fails")
    _output_arg(health)
    return parser


def _config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = _actions(sub, "config", "show, validate or push the watchlist")
    config.add_parser("show", help="print the settings (secrets redacted) and the watchlist")
    validate = config.add_parser(
        "validate",
        help="check the settings and the watchlist (or FILE instead); exit 1 on problems",
    )
    validate.add_argument(
        "file", nargs="?", help="a watchlist JSON file to check instead of the configured one"
    )
    push = config.add_parser(
        "push", help="validate a watchlist file and install it (KV key or WATCHLIST_FILE)"
    )
    push.add_argument("file", help="the watchlist JSON to install")
    push.add_argument(
        "--allow-invalid-sources",
        action="store_true",
        help="install even when some sources are invalid (they are skipped at run time)",
    )


def _actions(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = sub.add_parser(name, help=text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _date_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", required=True, help="the date, YYYY-MM-DD")
    parser.add_argument("--sources", help="comma-separated source ids to restrict the run to")


def _output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="json",
        help="json (default, for scripts) or table (for people)",
    )


def dispatch_table() -> dict[str, Command]:
    """``command`` or ``command action`` → the function that runs it."""
    from .commands import dead_letters, health, hooks, jobs, runs, watchlist

    return {
        "run": jobs.cmd_run,
        "enqueue": jobs.cmd_enqueue,
        "ingest": jobs.cmd_ingest,
        "reprocess": jobs.cmd_reprocess,
        "config show": watchlist.cmd_config_show,
        "config validate": watchlist.cmd_config_validate,
        "config push": watchlist.cmd_config_push,
        "schedule show": watchlist.cmd_schedule_show,
        "runs list": runs.cmd_runs_list,
        "runs show": runs.cmd_runs_show,
        "verify": runs.cmd_verify,
        "dlq list": dead_letters.cmd_dlq_list,
        "dlq replay": dead_letters.cmd_dlq_replay,
        "dlq purge": dead_letters.cmd_dlq_purge,
        "hooks list": hooks.cmd_hooks_list,
        "hooks resend": hooks.cmd_hooks_resend,
        "health": health.cmd_health,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    with quiet_broken_pipe() as closed:
        code = _main(argv)
    return closed[0] if closed else code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)  # before any heavy import: --help stays light
    # structlog imports its Twisted integration whenever Twisted is installed
    # (it is, for the crawl processes); this process never uses it.
    sys.modules.setdefault("structlog.twisted", None)  # type: ignore[arg-type]

    from pathlib import Path

    from atlasreg_cursor.domain.errors import CursorError

    from .settings import SettingsError, load_settings

    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
        settings = load_settings(env_file=Path(args.env_file))
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)
    from .log import configure_logging

    daemon = args.command == "run"
    configure_logging(
        settings.log_format if daemon else "console",
        settings.log_level,
        stream=sys.stdout if daemon else sys.stderr,
    )
    key = f"{args.command} {args.action}" if getattr(args, "action", None) else args.command
    command = dispatch_table()[key]
    try:
        return command(settings, args)
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CursorError as exc:
        return fail(
            f"{type(exc).__name__}: {exc}", EXIT_TRANSIENT if exc.transient else EXIT_FAILED
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
