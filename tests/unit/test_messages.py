"""Message parsing: poison detection and round trips."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasreg_cursor.domain.errors import InvalidMessage
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.messages import (
    MAX_MESSAGE_BYTES,
    MessageType,
    encode_message,
    message_identity,
    parse_message,
)
from tests.strategies import json_values, messages


@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_invalid_message(raw: bytes) -> None:
    """Any byte string parses or raises InvalidMessage, never anything else."""
    try:
        parse_message(raw)
    except InvalidMessage as exc:
        assert exc.reason


@given(json_values)
def test_arbitrary_json_raises_only_invalid_message(value: object) -> None:
    """Any JSON value parses or raises InvalidMessage."""
    try:
        parse_message(json.dumps(value).encode())
    except InvalidMessage as exc:
        assert exc.reason


@given(
    st.dictionaries(
        st.sampled_from(["type", "date", "payload", "timestamp", "message_id", "x"]), json_values
    )
)
def test_near_miss_objects_raise_only_invalid_message(value: dict[str, object]) -> None:
    """Objects with the right keys and wrong values raise InvalidMessage only."""
    try:
        parse_message(json.dumps(value).encode())
    except InvalidMessage as exc:
        assert exc.reason


_TEXT = st.text(st.characters(categories=("Cs", "Lu", "Nd")), max_size=6)


@given(st.dictionaries(_TEXT, st.one_of(_TEXT, st.floats())))
def test_every_accepted_message_can_be_stored(payload: dict[str, object]) -> None:
    """Surrogates and non-finite floats in a payload are poison; what parses is storable."""
    raw = json.dumps({"type": "reprocess", "date": "2026-11-24", "payload": payload}).encode()
    try:
        message = parse_message(raw)
    except InvalidMessage as exc:
        assert exc.reason
        return
    assert canonical_bytes(dict(message.payload))


@given(messages)
def test_parse_inverts_encode(message: object) -> None:
    """parse(encode(m)) == m."""
    assert message == parse_message(encode_message(message))  # type: ignore[arg-type]


def test_seed_format_message_parses() -> None:
    """The seed's producers' message is understood."""
    raw = b'{"type":"start_daily_ingest","date":"2026-11-24"}'

    msg = parse_message(raw)

    assert (MessageType.START_DAILY_INGEST, dt.date(2026, 11, 24), {}) == (
        msg.type,
        msg.date,
        dict(msg.payload),
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"type":"delete_everything","date":"2026-11-24"}', "unknown type"),
        (b'{"type":"reprocess","date":"2026-02-30"}', "not a calendar date"),
        (b'{"type":"reprocess","date":"24/11/2026"}', "YYYY-MM-DD"),
        (b'{"type":"reprocess","date":"../../etc"}', "YYYY-MM-DD"),
        (b'{"type":"reprocess"}', "missing required field 'date'"),
        (b'{"type":"reprocess","date":"2026-11-24","payload":[]}', "payload must be an object"),
        (b'{"type":"reprocess","date":"2026-11-24","payload":{"sources":"x"}}', "payload.sources"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"type":"reprocess","date":"2026-11-24","x":NaN}', "not JSON"),
        (b'{"type":"reprocess","date":"2026-11-24","payload":{"n":1e400}}', "out of range"),
        (b'{"type":"reprocess","date":"2026-11-24","payload":{"n":-Infinity}}', "not JSON"),
        (b'{"type":"reprocess","date":"2026-11-24","payload":{"s":"\\ud800"}}', "lone surrogate"),
        (b'{"type":"reprocess","date":"2026-11-24","payload":{"\\udc00":1}}', "lone surrogate"),
    ],
)
def test_poison_reasons(raw: bytes, fragment: str) -> None:
    """Each kind of poison gets a reason that says what is wrong."""
    with pytest.raises(InvalidMessage) as info:
        parse_message(raw)

    assert fragment in info.value.reason


def test_oversized_body_is_poison() -> None:
    """A body over 256 KiB is rejected before parsing."""
    raw = (
        b'{"type":"reprocess","date":"2026-11-24","payload":{"x":"'
        + b"a" * MAX_MESSAGE_BYTES
        + b'"}}'
    )

    with pytest.raises(InvalidMessage, match="limit"):
        parse_message(raw)


def test_identity_prefers_message_id_then_queue_id_then_body_hash() -> None:
    """The producer's message_id wins (a doubled publish is one run), then the queue id, then the hash."""
    raw = b'{"type":"reprocess","date":"2026-11-24","message_id":"m-1"}'
    msg = parse_message(raw)
    bare = b'{"type":"reprocess","date":"2026-11-24"}'

    assert ("m-1", "m-1") == (message_identity(msg, raw, "q-1"), message_identity(msg, raw, None))
    assert "q-1" == message_identity(parse_message(bare), bare, "q-1")
    assert len(message_identity(parse_message(bare), bare, None)) == 64
