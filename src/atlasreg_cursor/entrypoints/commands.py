"""The CLI's subcommands: small functions ``cmd_<name>(settings, args) -> exit code``.

:mod:`.cli` parses the arguments and dispatches here through its table;
what is printed and the exit codes come from :mod:`.output`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import uuid
from typing import Any

import structlog

from atlasreg_cursor.domain.errors import (
    CursorError,
    InvalidConfig,
    InvalidGold,
    InvalidMessage,
    ObjectNotFound,
)
from atlasreg_cursor.domain.gold import parse_gold
from atlasreg_cursor.domain.hashing import canonical_bytes, sha256_hex
from atlasreg_cursor.domain.ingest import (
    RunFailed,
    RunSummary,
    read_journal,
    run_message,
)
from atlasreg_cursor.domain.messages import parse_date, parse_message
from atlasreg_cursor.domain.redaction import redact_url
from atlasreg_cursor.domain.sources import WatchlistConfig

from .bootstrap import App, build
from .daemon import log_event, run_daemon
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, confirm, fail, print_json, print_rows
from .settings import Settings

log = structlog.get_logger()


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
    """The daemon."""
    app = build(settings)
    try:
        return run_daemon(
            app,
            once=args.once,
            max_messages=args.max_messages,
            until_empty=args.until_empty,
            serve_http=not args.no_http,
        )
    finally:
        app.close()


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
    app = build(settings)
    try:
        queue_id = app.queue.send(canonical_bytes(message))
    finally:
        app.close()
    print_json({"queued": True, "queue_message_id": queue_id, **message})
    return EXIT_OK


def _one_shot(settings: Settings, args: argparse.Namespace, kind: str) -> int:
    message_data = _checked_message(kind, args)
    if message_data is None:
        return EXIT_USAGE
    raw = canonical_bytes(message_data)
    message = parse_message(raw)
    app = build(settings)
    try:
        summary = run_message(
            message,
            identity=message_data["message_id"],
            config=app.config,
            executor=app.executor,
            store=app.storage,
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
    finally:
        app.close()
    print_summary(summary, app)
    return EXIT_OK if summary.status.value != "failed" else EXIT_FAILED


def print_summary(summary: RunSummary, app: App) -> None:
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


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    """``config show``: the settings (secrets redacted) and the watchlist."""
    app = build(settings)
    try:
        config = app.config.load()
    except CursorError as exc:
        print_json({"settings": settings.redacted(), "watchlist_error": str(exc)})
        return fail(f"watchlist: {type(exc).__name__}: {exc}")
    print_json(
        {
            "settings": settings.redacted(),
            "backends": {
                p: settings.backend(p)
                for p in ("queue", "config", "storage", "notifier", "executor")
            },
            "sources": [
                {
                    "id": s.id,
                    "handler_id": s.handler_id,
                    "enabled": s.enabled,
                    "url_feed": redact_url(s.url_feed) if s.url_feed else None,
                    "schedule": s.schedule,
                }
                for s in config.sources
            ],
            "invalid_sources": [
                {"index": b.index, "id": b.source_id, "reason": b.reason} for b in config.invalid
            ],
            "global_settings": {
                "max_concurrent_sources": config.global_settings.max_concurrent_sources,
                "processing_timeout_minutes": config.global_settings.processing_timeout_minutes,
                "alert_on_zero_results": config.global_settings.alert_on_zero_results,
                "alert_recipients": list(config.global_settings.alert_recipients),
            },
        }
    )
    return EXIT_OK


def cmd_config_validate(settings: Settings, args: argparse.Namespace) -> int:
    """``config validate [FILE]``: the settings loaded; now the watchlist (or FILE)."""
    if getattr(args, "file", None):
        return _config_validate_file(settings, args.file)
    app = build(settings)
    try:
        config = app.config.load()
    except CursorError as exc:
        return fail(f"watchlist: {type(exc).__name__}: {exc}")
    return _report_watchlist(config)


def _report_watchlist(config: WatchlistConfig) -> int:
    enabled = sum(1 for s in config.sources if s.enabled)
    print(f"{len(config.sources)} valid sources ({enabled} enabled), {len(config.invalid)} invalid")
    for bad in config.invalid:
        print(f"  invalid sources[{bad.index}] {bad.source_id or '?'}: {bad.reason}")
    return EXIT_FAILED if config.invalid else EXIT_OK


def _config_validate_file(settings: Settings, file: str) -> int:
    """``config validate FILE``: check a watchlist file without installing it."""
    from pathlib import Path

    from atlasreg_cursor.domain.sources import parse_watchlist_bytes

    from .bootstrap import known_handlers

    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        return fail(f"watchlist {file}: cannot be read: {exc.strerror or exc}")
    try:
        config = parse_watchlist_bytes(raw, known_handlers=known_handlers(settings))
    except InvalidConfig as exc:
        return fail(f"watchlist {file}: {type(exc).__name__}: {exc}")
    return _report_watchlist(config)


def cmd_config_push(settings: Settings, args: argparse.Namespace) -> int:
    """Validate a watchlist file, then write it where the config backend reads it."""
    from pathlib import Path

    from atlasreg_cursor.domain.sources import parse_watchlist_bytes

    from .bootstrap import known_handlers

    raw = Path(args.file).read_bytes()
    config = parse_watchlist_bytes(raw, known_handlers=known_handlers(settings))
    for bad in config.invalid:
        print(
            f"  invalid sources[{bad.index}] {bad.source_id or '?'}: {bad.reason}", file=sys.stderr
        )
    if config.invalid and not args.allow_invalid_sources:
        return fail("not installed: fix the invalid sources or pass --allow-invalid-sources")
    app = build(settings)
    target: Any = app.config
    if settings.backend("config") == "kv":
        target.put_value(settings.watchlist_key, raw)
        where = f"KV key {settings.watchlist_key}"
    else:
        path = settings.watchlist_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(path)
        where = str(path)
    print_json({"installed": where, "sources": len(config.sources), "invalid": len(config.invalid)})
    return EXIT_OK


def cmd_runs_show(settings: Settings, args: argparse.Namespace) -> int:
    """``runs show RUN_ID``: one journal, notification bodies decoded."""
    app = build(settings)
    journal = read_journal(app.storage, args.run_id)
    if journal is None:
        return fail(f"no run {args.run_id}")
    from atlasreg_cursor.domain.codec import converter

    data = converter.unstructure(journal)
    for note in ("notification", "failure"):
        if data.get(note):
            data[note]["body"] = json.loads(data[note]["body"])
    print_json(data)
    return EXIT_OK


def cmd_runs_list(settings: Settings, args: argparse.Namespace) -> int:
    """``runs list [--limit N]``: lists journal keys, reads only the N most recent."""
    from .journals import recent_journals

    app = build(settings)
    rows: list[dict[str, Any]] = []

    def unreadable(run_id: str, exc: CursorError, listed: Any) -> None:
        modified = listed.last_modified.isoformat() if listed.last_modified else ""
        rows.append(
            {"run_id": run_id, "status": "unreadable", "error": str(exc), "updated_at": modified}
        )

    rows += [
        {
            "run_id": journal.run_id,
            "date": journal.date.isoformat(),
            "type": journal.message_type.value,
            "status": journal.status.value if journal.status else "in_progress",
            "gold_key": journal.gold.key if journal.gold else None,
            "updated_at": journal.updated_at.isoformat(),
        }
        for journal in recent_journals(app.storage, args.limit, on_unreadable=unreadable)
    ]
    rows.sort(key=lambda r: str(r["updated_at"]), reverse=True)
    print_rows(rows, columns=("run_id", "date", "type", "status", "updated_at"), fmt=args.output)
    return EXIT_OK


def _dead_letters(settings: Settings, app: App) -> Any:
    queue: Any = app.queue
    if not hasattr(queue, "list_dead"):
        fail(f"the {settings.backend('queue')} queue does not keep dead letters locally")
        return None
    return queue


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq list``: dead letters with their reasons."""
    app = build(settings)
    try:
        box = _dead_letters(settings, app)
        if box is None:
            return EXIT_USAGE
        rows = [
            {
                "message_id": d.message_id,
                "reason": d.reason,
                "attempts": d.attempts,
                "dead_at": d.dead_at,
                "body": d.body.decode("utf-8", "replace"),
            }
            for d in box.list_dead(args.limit)
        ]
        print_rows(rows, columns=("message_id", "attempts", "dead_at", "reason"), fmt=args.output)
        return EXIT_OK
    finally:
        app.close()


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq replay MESSAGE_ID``: back onto the queue."""
    app = build(settings)
    try:
        box = _dead_letters(settings, app)
        if box is None:
            return EXIT_USAGE
        ok = box.replay_dead(args.message_id)
        print_json({"replayed": ok, "message_id": args.message_id})
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        app.close()


def cmd_dlq_purge(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq purge``: asks on a terminal; a script must pass ``--yes``."""
    app = build(settings)
    try:
        box = _dead_letters(settings, app)
        if box is None:
            return EXIT_USAGE
        count = len(box.list_dead(100_000))
        answer = confirm(f"delete {count} dead letters for good?", assume_yes=args.yes)
        if answer is None:
            return fail("dlq purge deletes for good: pass --yes (no terminal to ask)", EXIT_USAGE)
        if not answer:
            print("nothing deleted", file=sys.stderr)
            return EXIT_FAILED
        print_json({"purged": box.purge_dead()})
        return EXIT_OK
    finally:
        app.close()


def _outbox(app: App) -> Any:
    from atlasreg_cursor.domain.ingest import Outbox

    return Outbox(app.storage, clock=app.clock, policy=app.outbox_policy)


def cmd_hooks_list(settings: Settings, args: argparse.Namespace) -> int:
    """``hooks list [--all]``: the notifications in the outbox not yet delivered."""
    app = build(settings)
    try:
        rows = [
            _hook_row(key, entry)
            for key, entry in _outbox(app).entries()
            if args.all or entry.state != "delivered"
        ]
        print_rows(
            rows[: args.limit],
            columns=("run_id", "event_type", "state", "attempts", "next_attempt_at", "last_error"),
            fmt=args.output,
        )
        return EXIT_OK
    finally:
        app.close()


def cmd_hooks_resend(settings: Settings, args: argparse.Namespace) -> int:
    """``hooks resend RUN_ID``: deliver the run's notifications again now (same ``webhook-id``)."""
    from atlasreg_cursor.domain.ingest import JournalStore, deliver, outbox_key

    app = build(settings)
    outbox = _outbox(app)
    try:
        journal = read_journal(app.storage, args.run_id)
        keys = [key for key, _ in outbox.entries(args.run_id)]
        for record in (journal.notification, journal.failure) if journal else ():
            if record is not None and outbox_key(args.run_id, record.webhook_id) not in keys:
                keys.append(outbox.add(args.run_id, record))  # queued before the outbox
        if not keys:
            return fail(f"no notification of run {args.run_id}")
        journals = JournalStore(
            app.storage,
            owner=app.policy.consumer_id,
            lease_seconds=app.policy.lease_seconds,
            clock=app.clock,
        )
        results = []
        for key in keys:
            outbox.resend(key)
            deliver(outbox, journals, key, app.notifier, on_event=log_event)
            found = outbox.read(key)
            if found is not None:
                results.append(_hook_row(key, found[0]))
        print_json(results)
        return EXIT_OK if all(r["state"] == "delivered" for r in results) else EXIT_FAILED
    finally:
        app.close()


def cmd_schedule_show(settings: Settings, args: argparse.Namespace) -> int:
    """``schedule show``: the next global slots and each source's own."""
    from .scheduler import schedule_rows

    app = build(settings)
    try:
        watchlist = app.config.load()
    except CursorError as exc:
        log.warning("schedule.watchlist_unavailable", error=str(exc))
        watchlist = None
    rows = schedule_rows(settings, watchlist, count=args.count)
    if not rows:
        print("SCHEDULE is not set: nothing is enqueued on a schedule", file=sys.stderr)
    print_rows(rows, columns=("slot", "local_time", "date", "sources"), fmt=args.output)
    return EXIT_OK


def _hook_row(key: str, entry: Any) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "event_type": entry.event_type,
        "webhook_id": entry.webhook_id,
        "state": entry.state,
        "attempts": entry.attempts,
        "created_at": entry.created_at,
        "next_attempt_at": entry.next_attempt_at if entry.state == "pending" else None,
        "status_code": entry.status_code,
        "last_error": entry.last_error,
        "key": key,
    }


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Check a stored Gold's SHA-256 against its metadata, and its schema."""
    app = build(settings)
    try:
        body, obj = app.storage.get(args.key)
    except ObjectNotFound:
        return fail(f"no object at {args.key}")
    actual = sha256_hex(body)
    recorded = obj.metadata.get("sha256") or obj.sha256
    result: dict[str, Any] = {
        "key": args.key,
        "size": len(body),
        "sha256": actual,
        "recorded_sha256": recorded,
    }
    ok = recorded == actual
    try:
        gold = parse_gold(json.loads(body))
        result["schema"] = "ok"
        result["events_count"] = gold.metadata.events_count
    except (InvalidGold, ValueError) as exc:
        result["schema"] = f"invalid: {exc}"
        ok = False
    result["ok"] = ok
    print_json(result)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    """Check each backend once (and Celery and Airflow with the Core executor)."""
    from .bootstrap import core_clients

    app = build(settings)
    checks: dict[str, Any] = {}

    def check(name: str, fn: Any) -> None:
        try:
            checks[name] = {"ok": True, "detail": fn()}
        except Exception as exc:  # report every failure, whatever its kind
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    check("queue", lambda: _stats(app))
    check("config", lambda: f"{len(app.config.load().sources)} sources")
    check("storage", lambda: f"{sum(1 for _ in app.storage.list('gold/'))} gold objects")
    if settings.backend("executor") == "core":
        celery, airflow = core_clients(settings)
        try:
            check("celery", lambda: _celery_workers(celery))
            if airflow is not None:
                check("airflow", lambda: f"API {airflow.api_version} answers")
        finally:
            celery.close()
            if airflow is not None:
                airflow.close()
    app.close()
    rows = [{"check": name, **result} for name, result in checks.items()]
    if args.output == "table":
        print_rows(rows, columns=("check", "ok", "detail", "error"), fmt="table")
    else:
        print_json(checks)
    return EXIT_OK if all(c["ok"] for c in checks.values()) else EXIT_FAILED


def _celery_workers(celery: Any) -> str:
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
