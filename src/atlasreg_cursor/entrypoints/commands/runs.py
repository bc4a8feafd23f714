"""Stored-run commands: ``runs list|show`` (the journals) and ``verify`` (a Gold)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from atlasreg_cursor.domain.errors import CursorError, InvalidGold, ObjectNotFound
from atlasreg_cursor.domain.gold import parse_gold
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.domain.ingest import read_journal
from atlasreg_cursor.entrypoints.bootstrap import build
from atlasreg_cursor.entrypoints.output import EXIT_FAILED, EXIT_OK, fail, print_json, print_rows
from atlasreg_cursor.entrypoints.settings import Settings
from atlasreg_cursor.ports import StoredObject


def cmd_runs_show(settings: Settings, args: argparse.Namespace) -> int:
    """``runs show RUN_ID``: one journal, notification bodies decoded."""
    with build(settings) as app:
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
    from atlasreg_cursor.entrypoints.journals import recent_journals

    rows: list[dict[str, Any]] = []

    def unreadable(run_id: str, exc: CursorError, listed: StoredObject) -> None:
        modified = listed.last_modified.isoformat() if listed.last_modified else ""
        rows.append(
            {"run_id": run_id, "status": "unreadable", "error": str(exc), "updated_at": modified}
        )

    with build(settings) as app:
        journals = list(recent_journals(app.storage, args.limit, on_unreadable=unreadable))
    rows += [
        {
            "run_id": journal.run_id,
            "date": journal.date.isoformat(),
            "type": journal.message_type.value,
            "status": journal.status.value if journal.status else "in_progress",
            "gold_key": journal.gold.key if journal.gold else None,
            "updated_at": journal.updated_at.isoformat(),
        }
        for journal in journals
    ]
    rows.sort(key=lambda r: str(r["updated_at"]), reverse=True)
    print_rows(rows, columns=("run_id", "date", "type", "status", "updated_at"), fmt=args.output)
    return EXIT_OK


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Check a stored Gold's SHA-256 against its metadata, and its schema."""
    try:
        with build(settings) as app:
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
