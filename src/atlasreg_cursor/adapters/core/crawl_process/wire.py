"""What the parent and its crawl process tell each other.

The crawler (``atlasreg_cursor.adapters.local.spider_runner``, started as
``python -m``) reads commands as JSON lines on its stdin — one ``crawl`` per
source, then ``shutdown`` — and answers with JSON-line events on a pipe of
its own: ``ready`` once, then one ``done`` per source, whose items are in a
JSON-lines file named by the event; ``cancel`` ends a source the parent
gave up on (its requests are dropped, its places freed). A download of the
parent asks for its turn on a host with ``turn`` (answered by a ``turn``
event once the host has a place under the run's per-host limit) and gives it
back with ``release``; ``hold`` tells a new process of the run about a place
a download still holds from the one before. The names both sides share (the
parent pid variable, the stats keys of the URL guard and of the item cap,
the caps, the reactor watchdog's default) live here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atlasreg_cursor.domain.sources.model import DEFAULT_MAX_ITEMS, MAX_ITEMS_LIMIT

RUNNER_MODULE = "atlasreg_cursor.adapters.local.spider_runner"
PARENT_PID_ENV = "ATLASREG_CRAWL_PARENT"
FORBIDDEN_STAT = "atlasreg/forbidden_address"
INVALID_URL_STAT = "atlasreg/invalid_url"
#: Set (to the cap) when a source yielded more items than its ``max_items``.
TOO_MANY_ITEMS_STAT = "atlasreg/too_many_items"
#: No source keeps more items than this, whatever its ``max_items`` says.
MAX_ITEMS = MAX_ITEMS_LIMIT
SHUTDOWN_COMMAND = b'{"op": "shutdown"}\n'
#: Seconds the crawl process's reactor may stall before the spider blocking it is failed.
DEFAULT_REACTOR_LAG_SECONDS = 2.0


def item_cap(value: Any) -> int:
    """A spec's ``max_items`` as a cap: the watchlist's default when absent, in [1, MAX_ITEMS]."""
    if isinstance(value, bool) or not isinstance(value, int):
        return DEFAULT_MAX_ITEMS
    return max(1, min(value, MAX_ITEMS))


def crawl_command(key: str, spec: Mapping[str, Any], deadline: float) -> bytes:
    """The ``crawl`` command line for one source (its result comes back under *key*)."""
    command = {"op": "crawl", "key": key, "spec": dict(spec), "deadline": deadline}
    return json.dumps(command, ensure_ascii=False).encode("utf-8") + b"\n"


def turn_command(key: str, host: str, *, max_per_host: int, download_delay: float) -> bytes:
    """The ``turn`` command: a place on *host* for one of the parent's downloads."""
    return _place_command("turn", key, host, max_per_host, download_delay)


def hold_command(key: str, host: str, *, max_per_host: int, download_delay: float) -> bytes:
    """The ``hold`` command: a place on *host* a download holds already (counted at once)."""
    return _place_command("hold", key, host, max_per_host, download_delay)


def _place_command(op: str, key: str, host: str, max_per_host: int, download_delay: float) -> bytes:
    command = {
        "op": op,
        "key": key,
        "host": host,
        "max_per_host": max_per_host,
        "download_delay": download_delay,
    }
    return json.dumps(command, ensure_ascii=False).encode("utf-8") + b"\n"


def cancel_command(key: str) -> bytes:
    """The ``cancel`` command: the parent no longer waits for *key*; end it now."""
    return json.dumps({"op": "cancel", "key": key}).encode("utf-8") + b"\n"


def release_command(key: str) -> bytes:
    """The ``release`` command: the download of turn *key* is over (or gave up waiting)."""
    return json.dumps({"op": "release", "key": key}).encode("utf-8") + b"\n"


def parse_event(line: bytes) -> dict[str, Any] | None:
    """One event line as a dict; ``None`` for a line that is not a JSON object."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def read_items(path: Path) -> tuple[dict[str, Any], ...]:
    """
    The items of a ``done`` event's ``items_file`` (at most :data:`MAX_ITEMS`).

    Lines that are not JSON objects (one cut short by a kill) are skipped; the
    file is removed.
    """
    if not path.exists():
        return ()
    items = []
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if isinstance(item, dict):
                    items.append(item)
                if len(items) >= MAX_ITEMS:
                    break
    finally:
        path.unlink(missing_ok=True)
    return tuple(items)
