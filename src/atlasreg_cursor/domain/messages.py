"""Job messages: parse raw queue bodies into typed messages, or reject them.

Anything that is not a valid message is *poison*: :func:`parse_message`
raises :class:`InvalidMessage` with a human reason and never anything else.
A message it accepts can always be stored: no number out of range (``1e400``,
``NaN``, ``Infinity``), no lone surrogate (a ``\\ud800`` escape), since the
journal and the Gold are canonical UTF-8 JSON.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import InvalidMessage
from .hashing import canonical_bytes, sha256_hex

MAX_MESSAGE_BYTES = 256 * 1024
_KNOWN_KEYS = frozenset({"type", "date", "payload", "timestamp", "message_id"})
_MAX_MESSAGE_ID = 200


class MessageType(enum.Enum):
    """The two jobs a message can ask for."""

    START_DAILY_INGEST = "start_daily_ingest"
    REPROCESS = "reprocess"


@attrs.frozen(kw_only=True)
class QueueMessage:
    """A valid job message (architecture §3)."""

    type: MessageType
    date: dt.date
    payload: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    timestamp: dt.datetime | None = None
    message_id: str | None = None

    @property
    def source_filter(self) -> frozenset[str] | None:
        """Source ids the payload restricts the run to, or ``None`` for all."""
        sources = self.payload.get("sources")
        return None if sources is None else frozenset(sources)


def parse_date(value: object) -> dt.date:
    """
    Parse a strict ``YYYY-MM-DD`` calendar date.

    Raises:
        InvalidMessage: if *value* is not such a string or not a real date.
    """
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise InvalidMessage(f"date must be a YYYY-MM-DD string, got {_show(value)}")
    if not (value[:4] + value[5:7] + value[8:]).isdigit() or not value.isascii():
        raise InvalidMessage(f"date must be a YYYY-MM-DD string, got {_show(value)}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"date {value!r} is not a calendar date") from None


def parse_message(raw: bytes) -> QueueMessage:
    """
    Parse a queue body.

    Raises:
        InvalidMessage: for anything but a valid message; the only exception.
    """
    if not isinstance(raw, bytes | bytearray):
        raise InvalidMessage(f"body must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"body is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"body is not JSON: {_short(exc)}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"body must be a JSON object, got {type(data).__name__}")
    if _SURROGATE_ESCAPE.search(text):  # UTF-8 text holds none: only an escape makes one
        _check_storable(data)
    return _from_mapping(data)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidMessage(f"number {_show(text)[1:-1]} is out of range (not a finite number)")
    return value


def _check_storable(data: Mapping[str, Any]) -> None:
    """Reject what canonical JSON cannot store (a lone surrogate), here rather than mid-run."""
    try:
        canonical_bytes(data)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
        escape = "".join(f"\\u{ord(c):04x}" for c in bad)
        raise InvalidMessage(
            f"body has a lone surrogate ({escape}): not Unicode text, it cannot be stored"
        ) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidMessage(f"body cannot be stored as JSON: {_short(exc)}") from None


def _from_mapping(data: Mapping[str, Any]) -> QueueMessage:
    kind = data.get("type")
    try:
        mtype = MessageType(kind)
    except (ValueError, TypeError):
        allowed = ", ".join(t.value for t in MessageType)
        raise InvalidMessage(f"unknown type {_show(kind)}; expected one of: {allowed}") from None
    if "date" not in data:
        raise InvalidMessage("missing required field 'date'")
    date = parse_date(data["date"])
    payload = data.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise InvalidMessage(f"payload must be an object, got {type(payload).__name__}")
    sources = payload.get("sources")
    if sources is not None and (
        not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources)
    ):
        raise InvalidMessage("payload.sources must be a list of non-empty strings")
    return QueueMessage(
        type=mtype,
        date=date,
        payload=payload,
        timestamp=_parse_timestamp(data.get("timestamp")),
        message_id=_parse_message_id(data.get("message_id")),
    )


def _parse_timestamp(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"timestamp must be an ISO 8601 string, got {_show(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidMessage(f"timestamp {_show(value)} is not ISO 8601") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _parse_message_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_MESSAGE_ID:
        raise InvalidMessage(f"message_id must be a string of 1-{_MAX_MESSAGE_ID} characters")
    if not value.isprintable():
        raise InvalidMessage("message_id must be printable")
    return value


def encode_message(message: QueueMessage) -> bytes:
    """Serialize *message* as canonical JSON bytes; ``parse_message`` inverts it."""
    data: dict[str, Any] = {
        "type": message.type.value,
        "date": message.date.isoformat(),
        "payload": dict(message.payload),
    }
    if message.timestamp is not None:
        data["timestamp"] = message.timestamp.isoformat().replace("+00:00", "Z")
    if message.message_id is not None:
        data["message_id"] = message.message_id
    return canonical_bytes(data)


def message_identity(message: QueueMessage, raw: bytes, queue_message_id: str | None) -> str:
    """
    Return the identity a run is derived from (architecture §3).

    The message's own ``message_id`` (the producer's idempotency key) when it
    has one, else the queue-provided id when the backend has stable ones,
    else the SHA-256 of the raw body. The producer's key comes first because
    a publish retried after a lost reply (Cloudflare's publish API has no
    idempotency key) makes two queue messages, each with its own queue id,
    of one job: they must be one run.
    """
    if message.message_id:
        return message.message_id
    if queue_message_id:
        return queue_message_id
    return sha256_hex(bytes(raw))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short(exc: BaseException) -> str:
    return _show(str(exc))[1:-1] if isinstance(exc, ValueError) else type(exc).__name__
