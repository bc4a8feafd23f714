"""Gold 2.0: deterministic bytes, hashing, validation."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given

from atlasreg_cursor.domain.errors import InvalidGold
from atlasreg_cursor.domain.gold import GoldDocument, gold_to_dict, parse_gold, serialize_gold
from tests.strategies import golds


@given(golds)
def test_serialization_is_deterministic_and_hash_matches(gold: GoldDocument) -> None:
    """Same content, same bytes; the SHA-256 is hashlib's over those bytes."""
    first, second = serialize_gold(gold), serialize_gold(gold)

    assert first.body == second.body
    assert hashlib.sha256(first.body).hexdigest() == first.sha256


@given(golds)
def test_serialized_gold_validates_and_round_trips(gold: GoldDocument) -> None:
    """What we write is valid Gold 2.0 and parses back to the same document."""
    body = serialize_gold(gold).body

    assert gold == parse_gold(json.loads(body))


@given(golds)
def test_bytes_are_canonical(gold: GoldDocument) -> None:
    """Sorted keys, compact separators, UTF-8, no NaN."""
    body = serialize_gold(gold).body

    expected = json.dumps(
        json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert expected == body


def _valid() -> dict:
    return {
        "metadata": {
            "run_id": "run_a1b2c3d4e5f6",
            "generated_at": "2026-11-24T09:30:00Z",
            "date": "2026-11-24",
            "sources_processed": 1,
            "documents_count": 1,
            "events_count": 1,
            "version": "2.0",
        },
        "events": [
            {
                "event_id": "e1",
                "title": "Multa",
                "summary": "",
                "event_type": "MULTA",
                "company": {
                    "id": "c1",
                    "name": "X",
                    "cnpj": "12.345.678/0001-90",
                    "player_id": None,
                },
                "amount": 1250000.0,
                "date": "2026-11-24",
                "source": "aneel_news",
                "source_url": "https://x",
                "confidence_score": 0.93,
                "is_critical": True,
                "entities": [{"type": "CNPJ", "text": "12.345.678/0001-90", "confidence": 0.9}],
                "tags": [],
            }
        ],
        "errors": [],
    }


def test_design_example_is_valid() -> None:
    """The architecture §7 example shape validates."""
    gold = parse_gold(_valid())

    assert 1 == len(gold.events)
    assert _valid()["events"][0]["event_type"] == gold_to_dict(gold)["events"][0]["event_type"]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["metadata"].update(version="1.0"), "version"),
        (lambda d: d["metadata"].update(events_count=2), "events_count"),
        (lambda d: d["events"][0].update(event_type="PARTY"), "event_type"),
        (lambda d: d["events"][0].update(amount="much"), "amount"),
        (lambda d: d["metadata"].pop("run_id"), "run_id"),
        (lambda d: d["events"][0].update(title=5), "title"),
    ],
)
def test_invalid_gold_is_rejected_with_reason(mutate, fragment: str) -> None:
    """Core output that is not Gold 2.0 is refused with a reason naming the field."""
    data = _valid()
    mutate(data)

    with pytest.raises(InvalidGold, match=fragment):
        parse_gold(data)
