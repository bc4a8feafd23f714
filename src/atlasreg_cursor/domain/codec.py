"""The cattrs converters for wire formats (journal, Gold, notifications).

``converter`` is lenient on input the project wrote itself; ``strict_converter``
checks types exactly and is used for documents that come from elsewhere
(Core's Gold).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter


def _make(strict: bool) -> cattrs.Converter:
    conv = make_converter()
    conv.register_unstructure_hook(dt.datetime, lambda v: v.isoformat())
    conv.register_structure_hook(dt.datetime, lambda v, _: _datetime(v))
    conv.register_unstructure_hook(dt.date, lambda v: v.isoformat())
    conv.register_structure_hook(dt.date, lambda v, _: _date(v))
    if strict:
        conv.register_structure_hook(str, lambda v, _: _exact(v, str, "a string"))
        conv.register_structure_hook(bool, lambda v, _: _exact(v, bool, "a boolean"))
        conv.register_structure_hook(int, lambda v, _: _integer(v))
        conv.register_structure_hook(float, lambda v, _: _number(v))
    return conv


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    return dt.datetime.fromisoformat(value)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"expected a YYYY-MM-DD string, got {type(value).__name__}")
    return dt.date.fromisoformat(value)


def _exact(value: Any, kind: type, name: str) -> Any:
    if type(value) is not kind:
        raise TypeError(f"expected {name}, got {type(value).__name__}")
    return value


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


converter = _make(strict=False)
strict_converter = _make(strict=True)
