"""The CLI's subcommands: small functions ``cmd_<name>(settings, args) -> exit code``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import structlog

from atlasreg_cursor.domain.errors import CursorError, InvalidGold, InvalidMessage, ObjectNotFound
from atlasreg_cursor.domain.gold import parse_gold
from atlasreg_cursor.domain.hashing import canonical_bytes, sha256_hex
from atlasreg_cursor.domain.ingest import (
    RunFailed,
    RunSummary,
    UnreadableJournal,
    read_journal,
    run_message,
)
from atlasreg_cursor.domain.messages import parse_date, parse_message

from .bootstrap import App, build
from .cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, new_message, print_json
from .daemon import log_event, run_daemon
from .settings import Settings

log = structlog.get_logger()


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
            store=app.store,
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


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    """``config show`` / ``config validate`` / ``config push FILE``."""
    if args.action == "push":
        return _config_push(settings, args)
    app = build(settings)
    try:
        config = app.config.load()
    except CursorError as exc:
        if args.action == "show":
            print_json({"settings": settings.redacted(), "watchlist_error": str(exc)})
        print(f"watchlist: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.action == "show":
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
                        "url_feed": s.url_feed,
                    }
                    for s in config.sources
                ],
                "invalid_sources": [
                    {"index": b.index, "id": b.source_id, "reason": b.reason}
                    for b in config.invalid
                ],
                "global_settings": {
                    "max_concurrent_sources": config.global_settings.max_concurrent_sources,
                    "processing_timeout_minutes": config.global_settings.processing_timeout_minutes,
                },
            }
        )
        return EXIT_OK
    enabled = sum(1 for s in config.sources if s.enabled)
    print(f"{len(config.sources)} valid sources ({enabled} enabled), {len(config.invalid)} invalid")
    for bad in config.invalid:
        print(f"  invalid sources[{bad.index}] {bad.source_id or '?'}: {bad.reason}")
    return EXIT_FAILED if config.invalid else EXIT_OK


def _config_push(settings: Settings, args: argparse.Namespace) -> int:
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
        print(
            "not installed: fix the invalid sources or pass --allow-invalid-sources",
            file=sys.stderr,
        )
        return EXIT_FAILED
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


def cmd_runs(settings: Settings, args: argparse.Namespace) -> int:
    """``runs list`` / ``runs show RUN_ID``."""
    app = build(settings)
    if args.action == "show":
        journal = read_journal(app.store, args.run_id)
        if journal is None:
            print(f"no run {args.run_id}", file=sys.stderr)
            return EXIT_FAILED
        from atlasreg_cursor.domain.codec import converter

        data = converter.unstructure(journal)
        for note in ("notification", "failure"):
            if data.get(note):
                data[note]["body"] = json.loads(data[note]["body"])
        print_json(data)
        return EXIT_OK
    rows: list[dict[str, Any]] = []
    for obj in app.store.list("runs/"):
        run_id = obj.key.removeprefix("runs/").removesuffix(".json")
        try:
            journal = read_journal(app.store, run_id)
        except UnreadableJournal as exc:
            rows.append(
                {
                    "run_id": run_id,
                    "status": "unreadable",
                    "error": str(exc),
                    "updated_at": str(obj.last_modified or ""),
                }
            )
            continue
        if journal is None:
            continue
        rows.append(
            {
                "run_id": journal.run_id,
                "date": journal.date.isoformat(),
                "type": journal.message_type.value,
                "status": journal.status.value if journal.status else "in_progress",
                "gold_key": journal.gold.key if journal.gold else None,
                "updated_at": journal.updated_at.isoformat(),
            }
        )
    rows.sort(key=lambda r: str(r["updated_at"]), reverse=True)
    print_json(rows[: args.limit])
    return EXIT_OK


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq list|replay|purge`` on queues that keep their dead letters."""
    app = build(settings)
    queue: Any = app.queue
    if not hasattr(queue, "list_dead"):
        print(
            f"the {settings.backend('queue')} queue does not keep dead letters locally",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        if args.action == "list":
            print_json(
                [
                    {
                        "message_id": d.message_id,
                        "reason": d.reason,
                        "attempts": d.attempts,
                        "dead_at": d.dead_at,
                        "body": d.body.decode("utf-8", "replace"),
                    }
                    for d in queue.list_dead(args.limit)
                ]
            )
            return EXIT_OK
        if args.action == "replay":
            ok = queue.replay_dead(args.message_id)
            print_json({"replayed": ok, "message_id": args.message_id})
            return EXIT_OK if ok else EXIT_FAILED
        print_json({"purged": queue.purge_dead()})
        return EXIT_OK
    finally:
        app.close()


def cmd_hooks(settings: Settings, args: argparse.Namespace) -> int:
    """``hooks list`` / ``hooks resend RUN_ID``: the outbox of notifications."""
    from atlasreg_cursor.domain.ingest import JournalStore, Outbox, deliver, outbox_key

    app = build(settings)
    outbox = Outbox(app.store, clock=app.clock, policy=app.outbox_policy)
    try:
        if args.action == "list":
            rows = [
                _hook_row(key, entry)
                for key, entry in outbox.entries()
                if args.all or entry.state != "delivered"
            ]
            print_json(rows[: args.limit])
            return EXIT_OK
        journal = read_journal(app.store, args.run_id)
        keys = [key for key, _ in outbox.entries(args.run_id)]
        for record in (journal.notification, journal.failure) if journal else ():
            if record is not None and outbox_key(args.run_id, record.webhook_id) not in keys:
                keys.append(outbox.add(args.run_id, record))  # queued before the outbox
        if not keys:
            print(f"no notification of run {args.run_id}", file=sys.stderr)
            return EXIT_FAILED
        journals = JournalStore(
            app.store,
            owner=app.policy.consumer_id,
            lease_seconds=app.policy.lease_seconds,
            clock=app.clock,
        )
        results = []
        for key in keys:
            outbox.resend(key)
            entry = deliver(outbox, journals, key, app.notifier, on_event=log_event)
            found = outbox.read(key)
            if found is not None:
                results.append(_hook_row(key, found[0]))
            del entry
        print_json(results)
        return EXIT_OK if all(r["state"] == "delivered" for r in results) else EXIT_FAILED
    finally:
        app.close()


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
        body, obj = app.store.get(args.key)
    except ObjectNotFound:
        print(f"no object at {args.key}", file=sys.stderr)
        return EXIT_FAILED
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
    """Check each backend once."""
    app = build(settings)
    checks: dict[str, Any] = {}

    def check(name: str, fn: Any) -> None:
        try:
            checks[name] = {"ok": True, "detail": fn()}
        except Exception as exc:  # report every failure, whatever its kind
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    check("queue", lambda: _stats(app))
    check("config", lambda: f"{len(app.config.load().sources)} sources")
    check("storage", lambda: f"{sum(1 for _ in app.store.list('gold/'))} gold objects")
    app.close()
    print_json(checks)
    return EXIT_OK if all(c["ok"] for c in checks.values()) else EXIT_FAILED


def _stats(app: App) -> dict[str, Any]:
    stats = app.queue.stats()
    return {
        "ready": stats.ready,
        "in_flight": stats.in_flight,
        "delayed": stats.delayed,
        "dead": stats.dead,
    }
