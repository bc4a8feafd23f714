"""Run ids, dates and keys."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasreg_cursor.domain.errors import InvalidRunId
from atlasreg_cursor.domain.ingest.model import job_of_journal
from atlasreg_cursor.domain.messages import (
    MessageType,
    encode_message,
    message_identity,
    parse_message,
)
from atlasreg_cursor.domain.runs import (
    RunJournal,
    derive_run_id,
    gold_key,
    journal_key,
    validate_date,
    validate_run_id,
)


@given(st.sampled_from(MessageType), st.text(min_size=1))
def test_run_id_is_stable_and_valid(kind: MessageType, identity: str) -> None:
    """The same identity gives the same, valid run id."""
    run_id = derive_run_id(kind, identity)

    assert run_id == derive_run_id(kind, identity)
    assert run_id == validate_run_id(run_id)
    assert run_id.startswith("run_" if kind is MessageType.START_DAILY_INGEST else "reprocess_")


@given(st.text())
def test_validate_run_id_rejects_everything_else(text: str) -> None:
    """Only run_<12 hex> / reprocess_<12 hex> pass."""
    try:
        validate_run_id(text)
    except InvalidRunId:
        return
    assert text.split("_")[0] in {"run", "reprocess"}
    assert len(text.split("_")[1]) == 12


@pytest.mark.parametrize(
    "bad",
    [
        "../run_0123456789ab",
        "run_0123456789ab/..",
        "run_0123456789AB",
        "run_0123456789a",
        "run_0123456789ab.json",
        "",
    ],
)
def test_path_traversal_run_ids_are_rejected(bad: str) -> None:
    """Run ids that could change a key's path are rejected."""
    with pytest.raises(InvalidRunId):
        gold_key(bad, "2026-11-24")


@pytest.mark.parametrize(
    "bad", ["2026-13-01", "2026-02-29", "../2026", "2026-1-01", "20261124", "2026-11-24/x"]
)
def test_bad_dates_are_rejected(bad: str) -> None:
    """Only real YYYY-MM-DD dates pass."""
    with pytest.raises(InvalidRunId):
        validate_date(bad)


def test_keys() -> None:
    """Gold and journal keys follow architecture §4."""
    assert "gold/2026-11-24/run_0123456789ab.json" == gold_key(
        "run_0123456789ab", dt.date(2026, 11, 24)
    )
    assert "gold/2026-11-20/reprocess_0123456789ab_reprocessed.json" == gold_key(
        "reprocess_0123456789ab", "2026-11-20", reprocessed=True
    )
    assert "runs/run_0123456789ab.json" == journal_key("run_0123456789ab")


@pytest.mark.parametrize("queue_message_id", [None, "cf-1"])
@pytest.mark.parametrize("message_id", [None, "producer-1"])
def test_a_job_resumed_from_its_journal_re_derives_the_same_run(
    message_id: str | None, queue_message_id: str | None
) -> None:
    """Whatever the identity came from (producer, queue, body), the rebuilt message names the run."""
    extra = f', "message_id": "{message_id}"' if message_id else ""
    body = f'{{"type": "start_daily_ingest", "date": "2026-11-24", "payload": {{}}{extra}}}'
    identity = message_identity(parse_message(body.encode()), body.encode(), queue_message_id)
    now = dt.datetime(2026, 11, 24, 6, tzinfo=dt.UTC)
    journal = RunJournal(
        run_id=derive_run_id(MessageType.START_DAILY_INGEST, identity),
        date=dt.date(2026, 11, 24),
        message_type=MessageType.START_DAILY_INGEST,
        identity=identity,
        created_at=now,
        updated_at=now,
    )

    job = job_of_journal(journal)
    raw = encode_message(job.message)
    again = message_identity(parse_message(raw), raw, None)

    assert (journal.run_id, identity) == (job.run_id, job.identity)
    assert journal.run_id == derive_run_id(job.message.type, again)
