"""The Redis queue's dead-letter entries: JSON records on ``<list>:dead``.

An entry is ``{body, reason, attempts, message_id, dead_at}``; a body that is
not UTF-8 is base64 with ``"body_encoding": "base64"``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

import structlog

from atlasreg_cursor.ports.queue import DeadLetter, Delivery

log = structlog.get_logger()


def dead_entry(delivery: Delivery, reason: str) -> str:
    """Return the JSON entry that records *delivery* as dead for *reason*."""
    record: dict[str, Any] = {
        "message_id": delivery.queue_message_id,
        "reason": reason,
        "attempts": delivery.attempts,
        "dead_at": _now_iso(),
    }
    try:
        record["body"] = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        record["body"] = base64.b64encode(delivery.body).decode("ascii")
        record["body_encoding"] = "base64"
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def parse_dead(entry: bytes | str) -> DeadLetter | None:
    """Return the dead letter an entry records, ``None`` (logged) if unreadable."""
    try:
        record = json.loads(entry)
        text = str(record.get("body", ""))
        if record.get("body_encoding") == "base64":
            body = base64.b64decode(text, validate=True)
        else:
            body = text.encode("utf-8")
        dead_at = record.get("dead_at")
        return DeadLetter(
            queue_message_id=str(record.get("message_id", "")),
            body=body,
            reason=str(record.get("reason", "")),
            attempts=int(record.get("attempts", 0)),
            dead_at=dt.datetime.fromisoformat(dead_at) if dead_at else None,
        )
    except (ValueError, TypeError, AttributeError, binascii.Error):
        log.warning("queue.dead_unreadable", size=len(entry))
        return None


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
