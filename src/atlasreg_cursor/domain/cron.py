"""Cron expressions and time zones, checked: a leaf module of the domain.

The watchlist checks a source's own ``schedule`` and the settings check
``SCHEDULE`` and ``SCHEDULE_TZ`` here; :mod:`.schedule` computes the slots.
croniter is imported only when an expression is checked.
"""

from __future__ import annotations

import zoneinfo

from .errors import InvalidSchedule


def load_zone(name: str) -> zoneinfo.ZoneInfo:
    """
    The time zone named *name* (IANA, e.g. ``America/Sao_Paulo``).

    Raises:
        InvalidSchedule: the name is unknown.
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"{name!r} is not a known time zone (use an IANA name like America/Sao_Paulo)"
        ) from None


def parse_cron(expression: str) -> str:
    """
    Check a 5-field cron expression (minute hour day-of-month month day-of-week).

    Returns the expression with its whitespace normalised.

    Raises:
        InvalidSchedule: not 5 fields, or a field out of range.
    """
    from croniter import croniter

    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"{expression!r} is not a cron expression of 5 fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 6 * * *')"
        )
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise InvalidSchedule(f"{expression!r} has a field out of range (e.g. '0 6 * * 1-5')")
    return normalised
