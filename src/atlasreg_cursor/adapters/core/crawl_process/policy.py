"""How the crawls behave: the ``CRAWL_*`` settings and the default ``User-Agent``."""

from __future__ import annotations

import attrs

CONTACT_URL = "https://github.com/atlasreg/atlasreg-cursor"


def default_user_agent() -> str:
    """``atlasreg-cursor/<version> (+<contact URL>)``."""
    from importlib import metadata

    try:
        version = metadata.version("atlasreg-cursor")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "0"
    return f"atlasreg-cursor/{version} (+{CONTACT_URL})"


@attrs.frozen(kw_only=True)
class CrawlPolicy:
    """
    How every crawl of the Cursor behaves (``CRAWL_*``); a source's ``crawl``
    block overrides it for that source.

    Args:
        max_per_host: requests at once per host, across the whole run.
        obey_robots: obey robots.txt.
        download_delay: seconds between two requests to one host.
        autothrottle: adapt the per-host delay to the host's latency.
        user_agent: the ``User-Agent`` header (default: product, version, contact).
        concurrent_requests: requests at once in the whole crawl process.
        retry_times: retries of 429, 503 (and 5xx, 408, connection errors).
        retry_backoff: first retry delay in seconds (doubles per retry),
            unless the answer's ``Retry-After`` says otherwise.
    """

    max_per_host: int = 2
    obey_robots: bool = True
    download_delay: float = 0.0
    autothrottle: bool = False
    user_agent: str = attrs.field(factory=default_user_agent)
    concurrent_requests: int = 32
    retry_times: int = 2
    retry_backoff: float = 1.0
