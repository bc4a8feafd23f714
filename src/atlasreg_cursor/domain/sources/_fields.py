"""Readers of untrusted JSON fields: finite numbers in range, strings, objects, URLs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

#: Integers beyond a signed 64-bit range are refused anywhere in a source.
MAX_ABS_INT = 2**63 - 1
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HTTP_URL_RE = re.compile(r"https?://[^\s/?#\\@]+(?:[/?#][^\s\\]*)?", re.IGNORECASE)


class NonFinite:
    """A JSON number that is not a finite float (``NaN``, ``Infinity``, ``1e400``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def non_finite(text: str) -> NonFinite:
    """``json.loads`` hook for ``NaN`` and ``Infinity``: kept, to be refused by name."""
    return NonFinite(text)


def json_float(text: str) -> float | NonFinite:
    """``json.loads`` hook for floats: a float that overflows (``1e400``) is kept as text."""
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text[:40])


def first_bad_number(value: object, path: str, depth: int = 0) -> str | None:
    """The first number under *value* that is not finite or is out of range, described."""
    if isinstance(value, NonFinite) or (isinstance(value, float) and not math.isfinite(value)):
        return f"{path}: {value!r} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ABS_INT:
        return f"{path}: integer with {len(str(abs(value)))} digits is out of range"
    if depth > 64:
        return f"{path}: nested too deeply"
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_bad_number(item, f"{path}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_bad_number(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


def read_number(
    item: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float,
    high: float,
    integer: bool = False,
    low_open: bool = False,
    where: str = "",
) -> float:
    """Read a numeric field in ``[low, high]`` (``(low, high]`` with *low_open*)."""
    value = item.get(key, default)
    name = f"{where}{key}"
    kind = "an integer" if integer else "a number"
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be {kind} in {interval}, got {show(value)}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be {kind} in {interval}, got {show(value)}")
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        raise ValueError(f"{name} must be {kind} in {interval}, got {show(value)}")
    return value


def show(value: object) -> str:
    """A value's repr for error messages, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def opt_str(item: Mapping[str, Any], key: str) -> str | None:
    """An optional string field (``ValueError`` when it is something else)."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {show(value)}")
    return value


def opt_mapping(item: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """An optional object field (``ValueError`` when it is something else)."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return value


def is_http_url(url: str) -> bool:
    """Tell whether *url* is a plain http(s) URL (no control characters, user-info, …)."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        return False
    return _HTTP_URL_RE.fullmatch(url) is not None
