"""What one source's crawl left behind, as the parent reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


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
