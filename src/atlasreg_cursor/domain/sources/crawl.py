"""A source's ``crawl`` block: its politeness overrides and their validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class CrawlOptions:
    """
    A source's ``crawl`` block: politeness overrides for its crawl.

    ``None`` means "the setting's value" (``CRAWL_MAX_PER_HOST``,
    ``CRAWL_DOWNLOAD_DELAY``, ``CRAWL_OBEY_ROBOTS``, ``CRAWL_AUTOTHROTTLE``,
    ``CRAWL_RETRY_TIMES``, ``CRAWL_USER_AGENT``). A host shared by several
    sources gets the most polite of their values.
    """

    max_per_host: int | None = None
    download_delay: float | None = None
    obey_robots: bool | None = None
    autothrottle: bool | None = None
    retry_times: int | None = None
    user_agent: str | None = None


CRAWL_KEYS = tuple(f.name for f in attrs.fields(CrawlOptions))
MAX_PER_HOST_LIMIT = 16
MAX_DOWNLOAD_DELAY = 60.0
MAX_RETRY_TIMES = 10


def parse_crawl_options(value: object) -> CrawlOptions | None:
    """
    Validate a source's ``crawl`` block (absent or ``null``: no overrides).

    Raises:
        ValueError: naming the key that is wrong and what it accepts.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"crawl must be an object, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in CRAWL_KEYS)
    if unknown:
        raise ValueError(
            f"crawl has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(CRAWL_KEYS)}"
        )
    return CrawlOptions(
        max_per_host=_crawl_int(value, "max_per_host", 1, MAX_PER_HOST_LIMIT),
        download_delay=_crawl_seconds(value, "download_delay"),
        obey_robots=_crawl_bool(value, "obey_robots"),
        autothrottle=_crawl_bool(value, "autothrottle"),
        retry_times=_crawl_int(value, "retry_times", 0, MAX_RETRY_TIMES),
        user_agent=_crawl_user_agent(value),
    )


def _crawl_int(block: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    number = block.get(key)
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise ValueError(f"crawl.{key} must be a whole number from {low} to {high}, got {number!r}")
    return number


def _crawl_seconds(block: Mapping[str, Any], key: str) -> float | None:
    number = block.get(key)
    if number is None:
        return None
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not 0 <= number <= MAX_DOWNLOAD_DELAY
    ):
        raise ValueError(
            f"crawl.{key} must be a number of seconds from 0 to {MAX_DOWNLOAD_DELAY:g}, "
            f"got {number!r}"
        )
    return float(number)


def _crawl_bool(block: Mapping[str, Any], key: str) -> bool | None:
    flag = block.get(key)
    if flag is None or isinstance(flag, bool):
        return flag
    raise ValueError(f"crawl.{key} must be true or false, got {flag!r}")


def _crawl_user_agent(block: Mapping[str, Any]) -> str | None:
    agent = block.get("user_agent")
    if agent is None:
        return None
    if (
        not isinstance(agent, str)
        or not agent.strip()
        or len(agent) > 300
        or any(not 32 <= ord(c) < 127 for c in agent)
    ):
        raise ValueError("crawl.user_agent must be one line of printable ASCII (at most 300)")
    return agent.strip()
