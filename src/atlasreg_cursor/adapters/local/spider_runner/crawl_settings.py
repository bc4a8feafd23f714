"""The Scrapy settings of the crawl process's crawlers, from the crawl policy.

- :func:`politeness`: the policy (``CRAWL_*``) with a source's ``crawl`` block
  over it, as Scrapy settings;
- :func:`generic_settings`: the one crawler of the generic sources (robots.txt
  and AutoThrottle on for the crawler, each request saying whether its
  source obeys / is throttled);
- :func:`project_settings`: a project spider's crawler, the project's own
  settings under the Cursor's politeness, guard and retries.

Every crawler uses :class:`~.downloader.PoliteDownloader`, so per-host
limits and delays hold across all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scrapy.settings import Settings

from . import middlewares

ROBOTS_TIMEOUT_SECONDS = 30.0
RETRY_HTTP_CODES = [429, 503, 500, 502, 504, 408, 522, 524]
_MW = "atlasreg_cursor.adapters.local.spider_runner.middlewares"
_DOWNLOADER = "atlasreg_cursor.adapters.local.spider_runner.downloader.PoliteDownloader"
_RETRY = "scrapy.downloadermiddlewares.retry.RetryMiddleware"
_NO_HANDLERS = {"file": None, "ftp": None, "s3": None, "data": None}


def politeness(policy: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The Scrapy settings of the crawl policy, a source's ``crawl`` block over it."""
    merged = {**policy, **{k: v for k, v in options.items() if v is not None}}
    return {
        "CONCURRENT_REQUESTS_PER_DOMAIN": int(merged["max_per_host"]),
        "DOWNLOAD_DELAY": float(merged["download_delay"]),
        "ROBOTSTXT_OBEY": bool(merged["obey_robots"]),
        "AUTOTHROTTLE_ENABLED": bool(merged["autothrottle"]),
        "AUTOTHROTTLE_START_DELAY": max(float(merged["download_delay"]), 0.5),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(merged["max_per_host"]),
        "RETRY_TIMES": int(merged["retry_times"]),
        "RETRY_HTTP_CODES": RETRY_HTTP_CODES,
        "USER_AGENT": str(merged["user_agent"]),
        "DOWNLOADER": _DOWNLOADER,
        middlewares.BACKOFF_SETTING: float(merged["retry_backoff"]),
    }


def generic_settings(policy: Mapping[str, Any]) -> Settings:
    """Settings of the shared crawler of the generic sources."""
    values = {
        **politeness(policy, {}),
        # robots.txt and AutoThrottle are on for the crawler; each request says
        # whether its source obeys / is throttled (meta flags).
        "ROBOTSTXT_OBEY": True,
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": float(policy["download_delay"]),
        "CONCURRENT_REQUESTS": int(policy["concurrent_requests"]),
        # sources' requests carry their own timeout; this bounds robots.txt fetches
        "DOWNLOAD_TIMEOUT": ROBOTS_TIMEOUT_SECONDS,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "HTTPPROXY_ENABLED": False,  # a proxy resolves names itself: no vetted address
        "DOWNLOAD_MAXSIZE": 20 * 2**20,
        "DOWNLOAD_HANDLERS": dict(_NO_HANDLERS),
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "DOWNLOADER_MIDDLEWARES": {
            f"{_MW}.SourceGateMiddleware": 10,
            f"{_MW}.GuardMiddleware": 50,
            _RETRY: None,
            f"{_MW}.BackoffRetryMiddleware": 550,
        },
        "EXTENSIONS": {"scrapy.extensions.logstats.LogStats": None},
    }
    return Settings(values)


def project_settings(
    base: Settings, policy: Mapping[str, Any], spec: Mapping[str, Any], deadline: float
) -> Settings:
    """A project spider's settings: the project's, under the Cursor's politeness and guard."""
    from scrapy.downloadermiddlewares.retry import RetryMiddleware

    settings = base.copy()
    overrides = {
        **politeness(policy, dict(spec.get("crawl") or {})),
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": None,
        "TELNETCONSOLE_ENABLED": False,
        "HTTPPROXY_ENABLED": False,
        "DOWNLOAD_TIMEOUT": float(spec.get("download_timeout") or 60.0),
        "DOWNLOAD_HANDLERS": {**settings.getdict("DOWNLOAD_HANDLERS"), **_NO_HANDLERS},
        middlewares.DEADLINE_SETTING: deadline,
    }
    settings.setdict(overrides, priority="cmdline")
    settings.set_in_component_priority_dict(
        "DOWNLOADER_MIDDLEWARES", middlewares.GuardMiddleware, 50
    )
    settings.set_in_component_priority_dict(
        "DOWNLOADER_MIDDLEWARES", middlewares.RobotsRefusalMiddleware, 60
    )
    settings.set_in_component_priority_dict("DOWNLOADER_MIDDLEWARES", RetryMiddleware, None)
    settings.set_in_component_priority_dict(
        "DOWNLOADER_MIDDLEWARES", middlewares.BackoffRetryMiddleware, 550
    )
    return settings
