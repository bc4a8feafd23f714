"""The built-in schedule: cron slots, their job messages, and which sources are due.

Pure arithmetic (croniter computes the slots; nothing here reads a clock).

- ``SCHEDULE`` is a 5-field cron expression evaluated in ``SCHEDULE_TZ``.
  Each *slot* (an instant the expression matches) gives one
  ``start_daily_ingest`` for the slot's local date. Its ``message_id`` is
  derived from the slot alone, so every daemon that enqueues the same slot
  enqueues the same run: the journal collapses the copies into one run.
- A source with its own ``schedule`` (same syntax, same time zone) runs in
  the scheduled run whose window holds one of its own slots; the window of a
  global slot ``S`` is ``(previous global slot, S]``. A source without one
  runs in every scheduled run. Runs enqueued by hand or by a producer are
  not scheduled runs: they run every enabled source (or the payload's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from .cron import load_zone, parse_cron
from .gold import isoformat_z
from .sources import SourceConfig

SLOT_ID_PREFIX = "schedule:"


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("schedule arithmetic needs aware datetimes")
    return at


def next_slots(
    expression: str, zone: dt.tzinfo, after: dt.datetime, count: int
) -> list[dt.datetime]:
    """The *count* slots strictly after *after*, in *zone*."""
    from croniter import croniter

    start = _aware(after).astimezone(zone)
    it = croniter(parse_cron(expression), start)
    return [it.get_next(dt.datetime) for _ in range(count)]


def previous_slot(expression: str, zone: dt.tzinfo, at: dt.datetime) -> dt.datetime:
    """The latest slot at or before *at*, in *zone*."""
    from croniter import croniter

    start = _aware(at).astimezone(zone).replace(microsecond=0) + dt.timedelta(seconds=1)
    slot: dt.datetime = croniter(parse_cron(expression), start).get_prev(dt.datetime)
    return slot


def slot_identity(slot: dt.datetime) -> str:
    """The message identity of a slot: the same for every daemon."""
    return SLOT_ID_PREFIX + isoformat_z(_aware(slot))


def due_sources(
    sources: Iterable[SourceConfig],
    *,
    slot: dt.datetime,
    previous: dt.datetime,
    zone: dt.tzinfo,
) -> tuple[str, ...]:
    """
    Ids of the enabled sources that run in the scheduled run of *slot*.

    A source without a ``schedule`` is always due; one with its own is due
    when one of its slots falls in ``(previous, slot]``.
    """
    due = []
    for source in sources:
        if not source.enabled:
            continue
        if source.schedule is None or previous_slot(source.schedule, zone, slot) > previous:
            due.append(source.id)
    return tuple(due)


def slot_message(
    slot: dt.datetime, zone: dt.tzinfo, *, sources: tuple[str, ...] | None
) -> dict[str, Any]:
    """
    The ``start_daily_ingest`` job of *slot*, for its local date.

    Args:
        sources: restrict the run to these ids (``None``: every enabled source).
    """
    local = _aware(slot).astimezone(zone)
    payload: dict[str, Any] = {"scheduled_slot": isoformat_z(slot)}
    if sources is not None:
        payload["sources"] = list(sources)
    return {
        "type": "start_daily_ingest",
        "date": local.date().isoformat(),
        "payload": payload,
        "timestamp": isoformat_z(slot),
        "message_id": slot_identity(slot),
    }


__all__ = [
    "due_sources",
    "load_zone",
    "next_slots",
    "parse_cron",
    "previous_slot",
    "slot_identity",
    "slot_message",
]
