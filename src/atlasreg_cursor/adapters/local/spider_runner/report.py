"""What one source's crawl reports: items (written as they come), stats, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from atlasreg_cursor.adapters.core.crawl_process import TOO_MANY_ITEMS_STAT, item_cap

MAX_RECORDED_ERRORS = 10
MAX_ERROR_LENGTH = 500


class SourceReport:
    """
    The record of one source's crawl.

    Args:
        key: the source's key in the crawl process.
        items_path: where its items are written, one JSON line each.
        max_items: the source's cap; one item more sets :attr:`overflowed`
            and the ``too_many_items`` stat (the crawl then stops the source).
    """

    def __init__(self, key: str, items_path: Path, *, max_items: Any = None) -> None:
        self.key = key
        self.items_path = items_path
        self._items: IO[str] | None = items_path.open("w", encoding="utf-8")
        self.max_items = item_cap(max_items)
        self.overflowed = False
        self.items = 0
        self.stats: dict[str, Any] = {}
        self.errors: list[str] = []
        self.http_errors: list[str] = []
        self.robots: list[str] = []
        self.runner_error: str | None = None
        self.spider: str | None = None

    @property
    def full(self) -> bool:
        """Tell whether the item cap is reached."""
        return self.items >= self.max_items

    def item(self, data: dict[str, Any]) -> None:
        """Write one item (ignored once closed; past the cap, marks the overflow)."""
        if self._items is None:
            return
        if self.full:
            self.overflowed = True
            self.stats[TOO_MANY_ITEMS_STAT] = self.max_items
            return
        self._items.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        self.items += 1

    def count(self, stat: str, by: int = 1) -> None:
        """Add *by* to a stat."""
        self.stats[stat] = int(self.stats.get(stat, 0)) + by

    def error(self, message: str) -> None:
        """Keep an error message (the first few)."""
        _keep(self.errors, message)

    def http_error(self, message: str) -> None:
        """Keep an HTTP error (the first few)."""
        _keep(self.http_errors, message)

    def robots_refusal(self, message: str) -> None:
        """Keep a robots.txt refusal (the first few)."""
        _keep(self.robots, message)

    def close(self) -> None:
        """Close the items file."""
        if self._items is not None:
            self._items.close()
            self._items = None

    def event(
        self, *, stats: dict[str, Any] | None = None, timed_out: bool = False
    ) -> dict[str, Any]:
        """The ``done`` event of this source."""
        self.close()
        return {
            "event": "done",
            "key": self.key,
            "spider": self.spider,
            "stats": {**self.stats, **(stats or {})},
            "errors": self.errors,
            "http_errors": self.http_errors,
            "robots": self.robots,
            "runner_error": self.runner_error,
            "timed_out": timed_out,
            "items_file": str(self.items_path),
            "items": self.items,
        }


def _keep(messages: list[str], message: str) -> None:
    if len(messages) < MAX_RECORDED_ERRORS:
        messages.append(message[:MAX_ERROR_LENGTH])
