"""``atlasreg-cursor demo``: the whole flow on the embedded default.

Serves the bundled sample site on a free loopback port, writes a watchlist
pointing at it, enqueues today's ``start_daily_ingest``, runs the daemon
until the queue is drained, receives the webhook on a loopback receiver that
verifies both signatures, and prints what happened and the JSON line.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from atlasreg_cursor.domain.hashing import canonical_bytes, sha256_hex
from atlasreg_cursor.domain.ingest import read_journal
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import derive_run_id

from .bootstrap import build
from .commands.jobs import new_message
from .daemon import run_daemon
from .log import configure_logging
from .output import EXIT_FAILED, EXIT_OK
from .receiver import WebhookReceiver
from .settings import load_settings


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; 0 when a Gold was published and the webhook verified."""
    from atlasreg_cursor.sample_site import demo_watchlist, start_sample_site

    home = Path(args.home or "var/demo").resolve()
    secret = os.environ.get("HOOK_HMAC_SECRET") or (
        "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    err = sys.stderr
    configure_logging("console", os.environ.get("LOG_LEVEL", "INFO"), stream=err)
    receiver = WebhookReceiver((secret,), record_to=home / "webhooks-received.jsonl")
    site = start_sample_site()
    try:
        watchlist_path = home / "config" / "news_watchlist_config.json"
        watchlist_path.parent.mkdir(parents=True, exist_ok=True)
        watchlist_path.write_text(
            json.dumps(demo_watchlist(site.base_url), indent=2, ensure_ascii=False),
            encoding="utf-8",
        )
        settings = load_settings(
            {
                "MODE": "local",
                "CURSOR_HOME": str(home),
                "WATCHLIST_FILE": str(watchlist_path),
                "HOOK_ENDPOINT": receiver.url,
                "HOOK_HMAC_SECRET": secret,
                "ALLOW_PRIVATE_SOURCES": "true",
                "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
                "POLL_SECONDS": "1",
            },
            env_file=None,
        )
        print(f"sample site   {site.base_url}", file=err)
        print(f"webhook       {receiver.url}", file=err)
        print(f"CURSOR_HOME   {home}", file=err)
        today = dt.date.today().isoformat()
        message = new_message("start_daily_ingest", today, None)
        with build(settings, crawl_ahead=True) as app:
            app.queue.send(canonical_bytes(message))
            print(f"enqueued      start_daily_ingest {today} ({message['message_id']})\n", file=err)
            run_daemon(app, until_empty=True, serve_http=False)
            run_id = derive_run_id(MessageType.START_DAILY_INGEST, message["message_id"])
            journal = read_journal(app.storage, run_id)
        return _report(journal, home, receiver)
    finally:
        site.stop()
        receiver.stop()


def _report(journal: object, home: Path, receiver: WebhookReceiver) -> int:
    from atlasreg_cursor.domain.runs import RunJournal

    err = sys.stderr
    if not isinstance(journal, RunJournal) or journal.gold is None:
        print("\nthe demo run did not publish a Gold document", file=err)
        return EXIT_FAILED
    gold_path = home / "store" / journal.gold.key
    body = gold_path.read_bytes()
    gold = json.loads(body)
    by_type = Counter(e["event_type"] for e in gold["events"])
    print("\n== sources", file=err)
    for outcome in sorted(journal.sources, key=lambda o: o.source_id):
        state = (
            f"{outcome.documents_count} documents"
            if outcome.ok
            else f"{outcome.error_type}: {outcome.error_message}"
        )
        print(f"  {'ok  ' if outcome.ok else 'FAIL'} {outcome.source_id:<22} {state}", file=err)
    print("== events by type", file=err)
    for kind, count in sorted(by_type.items()):
        print(f"  {kind:<10} {count}", file=err)
    verified = [w for w in receiver.received if w.standard_ok and w.legacy_ok]
    print("== result", file=err)
    print(f"  status      {journal.gold.status.value}", file=err)
    print(f"  gold        {gold_path}", file=err)
    match = "match" if sha256_hex(body) == journal.gold.sha256 else "MISMATCH"
    print(f"  sha256      {journal.gold.sha256} (recomputed: {match})", file=err)
    print(
        f"  webhook     {len(receiver.received)} received, {len(verified)} verified "
        "(Standard Webhooks + X-Signature)",
        file=err,
    )
    summary = {
        "run_id": journal.run_id,
        "status": journal.gold.status.value,
        "gold_key": journal.gold.key,
        "sha256": journal.gold.sha256,
        "size": journal.gold.size,
        "documents_count": journal.gold.documents_count,
        "events_count": journal.gold.events_count,
        "errors_count": journal.gold.errors_count,
        "notified": bool(journal.notification and journal.notification.delivered and verified),
    }
    _explain(journal, home, err)
    print(json.dumps(summary, separators=(", ", ": ")), flush=True)
    ok = sha256_hex(body) == journal.gold.sha256 and bool(verified)
    return EXIT_OK if ok else EXIT_FAILED


def _explain(journal: object, home: Path, err: TextIO) -> None:
    """Why one source fails on purpose, and what to try next."""
    from atlasreg_cursor.domain.runs import RunJournal

    assert isinstance(journal, RunJournal)
    failed = [o for o in journal.sources if not o.ok]
    if failed:
        print("== about the failing source", file=err)
    for outcome in failed:
        if outcome.error_type == "handler_not_available":
            why = (
                "fails on purpose: it is an AIRFLOW_DAG source, which only AtlasReg Core "
                "can run (EXECUTOR_BACKEND=core)"
            )
        else:
            why = f"failed: {outcome.error_type}: {outcome.error_message}"
        print(
            f"  {outcome.source_id} {why}. Its error is in the Gold's 'errors' and the run is "
            "'partial': one broken source never sinks the others.",
            file=err,
        )
    env = f"CURSOR_HOME={home} ALLOW_PRIVATE_SOURCES=true"
    print("== try next", file=err)
    for line in (
        f"{env} atlasreg-cursor runs list -o table",
        f"{env} atlasreg-cursor runs show {journal.run_id}",
        f"{env} atlasreg-cursor verify {journal.gold.key if journal.gold else 'gold/...'}",
        f"{env} atlasreg-cursor config show | head -40",
        f"{env} atlasreg-cursor health -o table",
        f"{env} SCHEDULE='0 6 * * *' atlasreg-cursor schedule show -o table",
    ):
        print(f"  {line}", file=err)
