"""What one source's crawl left behind, as the parent reads it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .wire import read_items


@attrs.frozen(kw_only=True)
class CrawlOutcome:
    """What one source's crawl left behind."""

    items: tuple[dict[str, Any], ...] = ()
    stats: Mapping[str, Any] = attrs.field(factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    stderr_tail: str = ""
    spider: str | None = None
    errors: tuple[str, ...] = ()
    http_errors: tuple[str, ...] = ()
    robots: tuple[str, ...] = ()
    runner_error: str | None = None
    timeout_seconds: float = 0.0
    duration_seconds: float = 0.0
    pid: int | None = None

    @classmethod
    def from_event(
        cls, event: Mapping[str, Any], *, timeout: float, duration: float, pid: int | None
    ) -> CrawlOutcome:
        """What a source's ``done`` event reports (its items file is read, then removed)."""
        items_file = event.get("items_file")
        return cls(
            items=read_items(Path(items_file)) if isinstance(items_file, str) else (),
            stats=dict(event.get("stats") or {}),
            timed_out=bool(event.get("timed_out")),
            spider=event.get("spider"),
            errors=tuple(str(e) for e in event.get("errors") or ()),
            http_errors=tuple(str(e) for e in event.get("http_errors") or ()),
            robots=tuple(str(e) for e in event.get("robots") or ()),
            runner_error=event.get("runner_error"),
            timeout_seconds=timeout,
            duration_seconds=duration,
            pid=pid,
        )

    @classmethod
    def died(
        cls,
        *,
        returncode: int | None,
        stderr_tail: str,
        timeout: float,
        duration: float,
        pid: int | None,
    ) -> CrawlOutcome:
        """A source whose crawl process exited before answering (its stderr's last line said)."""
        lines = [line.strip() for line in stderr_tail.splitlines() if line.strip()]
        last = lines[-1][:300] if lines else ""
        return cls(
            runner_error=f"the crawl process exited with code {returncode}"
            + (f": {last}" if last else ""),
            returncode=returncode,
            stderr_tail=stderr_tail,
            timeout_seconds=timeout,
            duration_seconds=duration,
            pid=pid,
        )
