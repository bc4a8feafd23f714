"""Outbox commands: ``hooks list|resend`` (notifications not yet delivered, and sending again)."""

from __future__ import annotations

import argparse
from typing import Any

from atlasreg_cursor.domain.ingest import (
    JournalStore,
    Outbox,
    OutboxEntry,
    deliver,
    read_journal,
)
from atlasreg_cursor.entrypoints.bootstrap import App, build
from atlasreg_cursor.entrypoints.daemon import log_event
from atlasreg_cursor.entrypoints.output import EXIT_FAILED, EXIT_OK, fail, print_json, print_rows
from atlasreg_cursor.entrypoints.settings import Settings


def _outbox(app: App) -> Outbox:
    return Outbox(app.storage, clock=app.clock, policy=app.outbox_policy)


def cmd_hooks_list(settings: Settings, args: argparse.Namespace) -> int:
    """``hooks list [--all]``: the notifications in the outbox not yet delivered."""
    with build(settings) as app:
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


def cmd_hooks_resend(settings: Settings, args: argparse.Namespace) -> int:
    """``hooks resend RUN_ID``: deliver the run's notifications again now (same ``webhook-id``)."""
    with build(settings) as app:
        outbox = _outbox(app)
        journal = read_journal(app.storage, args.run_id)
        keys = {entry.webhook_id: key for key, entry in outbox.entries(args.run_id)}
        for record in (journal.notification, journal.failure) if journal else ():
            if record is not None and record.webhook_id not in keys:
                keys[record.webhook_id] = outbox.add(args.run_id, record)  # before the outbox
        if not keys:
            return fail(f"no notification of run {args.run_id}")
        journals = JournalStore(
            app.storage,
            owner=app.policy.consumer_id,
            lease_seconds=app.policy.lease_seconds,
            clock=app.clock,
        )
        results = []
        for webhook_id, key in keys.items():
            again = outbox.resend(key)
            if again is not None:
                deliver(outbox, journals, again[0], app.notifier, on_event=log_event)
            found = outbox.find(args.run_id, webhook_id)
            if found is not None:
                results.append(_hook_row(*found))
        print_json(results)
        return EXIT_OK if all(r["state"] == "delivered" for r in results) else EXIT_FAILED


def _hook_row(key: str, entry: OutboxEntry) -> dict[str, Any]:
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
