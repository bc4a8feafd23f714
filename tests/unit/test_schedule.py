"""The built-in schedule's arithmetic: slots, identities, which sources are due."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from atlasreg_cursor.domain.errors import InvalidSchedule
from atlasreg_cursor.domain.schedule import (
    due_sources,
    load_zone,
    next_slots,
    parse_cron,
    previous_slot,
    slot_identity,
    slot_message,
)
from atlasreg_cursor.domain.sources import SourceConfig

SP = zoneinfo.ZoneInfo("America/Sao_Paulo")


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SP)


def _source(sid: str, schedule: str | None = None, *, enabled: bool = True) -> SourceConfig:
    return SourceConfig(id=sid, handler_id="DOWNLOAD_CSV", schedule=schedule, enabled=enabled)


def test_next_slots_are_in_the_schedule_time_zone() -> None:
    """06:00 in São Paulo is 09:00 UTC; slots come strictly after the given instant."""
    slots = next_slots("0 6 * * *", SP, _at("2026-11-24T06:00:00"), 2)

    assert [_at("2026-11-25T06:00:00"), _at("2026-11-26T06:00:00")] == slots
    assert "2026-11-25T09:00:00+00:00" == slots[0].astimezone(dt.UTC).isoformat()


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-24T06:00:00", "2026-11-24T06:00:00"),
        ("2026-11-24T06:00:00.900000", "2026-11-24T06:00:00"),
        ("2026-11-24T05:59:59.900000", "2026-11-23T06:00:00"),
        ("2026-11-24T23:00:00", "2026-11-24T06:00:00"),
    ],
)
def test_previous_slot_is_the_latest_at_or_before(at: str, expected: str) -> None:
    """The latest slot not after the instant, never one in the future."""
    assert _at(expected) == previous_slot("0 6 * * *", SP, _at(at))


def test_slot_identity_is_the_same_for_every_daemon_and_differs_per_slot() -> None:
    """The same instant in any time zone gives one identity; the next slot another."""
    slot = _at("2026-11-24T06:00:00")

    assert slot_identity(slot) == slot_identity(slot.astimezone(dt.UTC))
    assert "schedule:2026-11-24T09:00:00Z" == slot_identity(slot)
    assert slot_identity(slot) != slot_identity(slot + dt.timedelta(days=1))


def test_slot_message_is_a_daily_ingest_for_the_local_date() -> None:
    """A 22:30 slot in São Paulo is the 24th there, the 25th in UTC: the local date wins."""
    slot = _at("2026-11-24T22:30:00")

    message = slot_message(slot, SP, sources=("a",))

    assert ("start_daily_ingest", "2026-11-24") == (message["type"], message["date"])
    assert slot_identity(slot) == message["message_id"]
    assert {"scheduled_slot": "2026-11-25T01:30:00Z", "sources": ["a"]} == message["payload"]
    assert "sources" not in slot_message(slot, SP, sources=None)["payload"]


def test_a_source_runs_in_the_global_slot_whose_window_holds_one_of_its_slots() -> None:
    """Hourly global slots: a 06:00 daily source runs at 06:00 only; a 05:30 one at 06:00 too."""
    sources = [
        _source("always"),
        _source("at_six", "0 6 * * *"),
        _source("half_five", "30 5 * * *"),
        _source("mondays", "0 6 * * 1"),
        _source("off", enabled=False),
    ]
    six = _at("2026-11-24T06:00:00")  # a Tuesday
    seven = _at("2026-11-24T07:00:00")
    monday_six = _at("2026-11-23T06:00:00")

    assert ("always", "at_six", "half_five") == due_sources(
        sources, slot=six, previous=six - dt.timedelta(hours=1), zone=SP
    )
    assert ("always",) == due_sources(sources, slot=seven, previous=six, zone=SP)
    assert ("always", "at_six", "half_five", "mondays") == due_sources(
        sources, slot=monday_six, previous=monday_six - dt.timedelta(hours=1), zone=SP
    )


@pytest.mark.parametrize("expression", ["0 6 * *", "0 0 6 * * *", "61 * * * *", "every day", ""])
def test_bad_cron_expressions_are_refused_in_plain_words(expression: str) -> None:
    """Not five fields or out of range: a clear error with an example."""
    with pytest.raises(InvalidSchedule, match=r"e\.g\."):
        parse_cron(expression)


def test_unknown_time_zone_is_refused() -> None:
    """A misspelt zone names what to use instead."""
    with pytest.raises(InvalidSchedule, match="IANA"):
        load_zone("America/Sao Paulo")

    assert "America/Sao_Paulo" == str(load_zone("America/Sao_Paulo"))
