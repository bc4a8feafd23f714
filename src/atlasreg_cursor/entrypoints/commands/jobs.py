"""Job commands: ``run`` (the daemon), ``enqueue``, ``ingest`` and ``reprocess``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from typing import Any

from atlasreg_cursor.domain.errors import InvalidMessage
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.ingest import RunFailed, RunSummary, run_message
from atlasreg_cursor.domain.messages import parse_date, parse_message
from atlasreg_cursor.entrypoints.bootstrap import build
from atlasreg_cursor.entrypoints.daemon import log_event, run_daemon
from atlasreg_cursor.entrypoints.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, print_json
from atlasreg_cursor.entrypoints.settings import Settings


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


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The daemon (a spare crawl process kept warm for the next run)."""
    with build(settings, crawl_ahead=True, keep_crawl_warm=True) as app:
        return run_daemon(
            app,
            once=args.once,
            max_messages=args.max_messages,
            until_empty=args.until_empty,
            serve_http=not args.no_http,
        )


def _checked_message(kind: str, args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        parse_date(args.date)
    except InvalidMessage as exc:
        print(f"atlasreg-cursor: --date: {exc}", file=sys.stderr)
        return None
    return new_message(kind, args.date, args.sources)


def cmd_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    """Send a job message."""
    message = _checked_message(args.type, args)
    if message is None:
        return EXIT_USAGE
    with build(settings) as app:
        queue_id = app.queue.send(canonical_bytes(message))
    print_json({"queued": True, "queue_message_id": queue_id, **message})
    return EXIT_OK


def _one_shot(settings: Settings, args: argparse.Namespace, kind: str) -> int:
    message_data = _checked_message(kind, args)
    if message_data is None:
        return EXIT_USAGE
    raw = canonical_bytes(message_data)
    message = parse_message(raw)
    try:
        with build(settings, crawl_ahead=True) as app:
            executor = app.executor  # first: its crawl process starts while the run gets ready
            summary = run_message(
                message,
                identity=message_data["message_id"],
                config=app.config,
                executor=executor,
                storage=app.storage,
                notifier=app.notifier,
                policy=app.policy,
                clock=app.clock,
                monotonic=app.monotonic,
                on_event=log_event,
                outbox_policy=app.outbox_policy,
            )
    except RunFailed as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_summary(summary)
    return EXIT_OK if summary.status.value != "failed" else EXIT_FAILED


def print_summary(summary: RunSummary) -> None:
    """The readable summary on stderr, then the JSON line on stdout."""
    err = sys.stderr
    print("", file=err)
    print(f"run         {summary.run_id}  ({summary.status.value})", file=err)
    print(f"gold        {summary.gold_key}  ({summary.size} bytes)", file=err)
    print(f"sha256      {summary.sha256}", file=err)
    print(
        f"documents   {summary.documents_count}   events {summary.events_count}   "
        f"errors {summary.errors_count}   notified {'yes' if summary.notified else 'no'}",
        file=err,
    )
    print(summary.to_json_line(), flush=True)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    """A daily ingest in the foreground."""
    return _one_shot(settings, args, "start_daily_ingest")


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    """A reprocess in the foreground."""
    return _one_shot(settings, args, "reprocess")
