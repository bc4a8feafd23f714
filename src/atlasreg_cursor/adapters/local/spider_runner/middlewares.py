"""Downloader middlewares of every crawl: the source gate, the URL guard, polite retries.

- :class:`SourceGateMiddleware` (first): a request whose source is done or
  past its deadline is dropped; the others get a ``download_timeout`` that
  ends by their source's deadline.
- :class:`GuardMiddleware`: every request (first pages, pagination,
  redirects, robots.txt) must be http or https — always — and, unless
  private sources are allowed, resolve only to public addresses; its vetted
  answer is what the resolver connects to.
- :class:`RobotsRefusalMiddleware` (project spiders): Scrapy drops a
  request robots.txt forbids without telling the spider; this sends
  :data:`ROBOTS_REFUSED` (with the request) so the source's report keeps
  the refusal and the source fails with ``robots_disallowed``.
- :class:`BackoffRetryMiddleware` replaces Scrapy's ``RetryMiddleware``: the
  same codes and exceptions, but each retry waits — ``Retry-After`` when the
  answer has one (429, 503), else an exponential backoff — and never past
  the source's deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
import urllib.parse
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK
from scrapy.settings import BaseSettings
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.response import response_status_message
from twisted.internet.threads import deferToThread

from atlasreg_cursor.adapters._netguard import check_source_url, vet_url
from atlasreg_cursor.adapters.core.crawl_process import FORBIDDEN_STAT, INVALID_URL_STAT
from atlasreg_cursor.adapters.http import parse_retry_after
from atlasreg_cursor.domain.errors import SourceFailed

from .resolver import AddressBook

SOURCE_META = "atlasreg_source"
DEADLINE_META = "atlasreg_deadline"
DEADLINE_SETTING = "ATLASREG_DEADLINE"
BACKOFF_SETTING = "ATLASREG_RETRY_BACKOFF"
GATE_DROPPED = "atlasreg: the request's source is finished"
MAX_RETRY_WAIT = 120.0
MIN_DOWNLOAD_TIMEOUT = 0.5
GUARD_PREFIX = "atlasreg guard"

#: The process's vetted answers (set once by the crawl service).
ADDRESS_BOOK = AddressBook(allow_private=False)
#: Signal sent by :class:`RobotsRefusalMiddleware` (``request=``).
ROBOTS_REFUSED = object()


def is_robots_txt(request: Request) -> bool:
    """Tell whether *request* is the robots.txt fetch of ``RobotsTxtMiddleware``."""
    return request.callback is NO_CALLBACK and request.url.endswith("/robots.txt")


def robots_refusal(request: Request) -> str:
    """What a robots.txt refusal of *request* says: whose robots.txt, which URL, which agent."""
    parts = urllib.parse.urlsplit(request.url)
    agent = (request.headers.get(b"User-Agent") or b"").decode("latin-1")
    return f"robots.txt of {parts.scheme}://{parts.netloc} disallows {request.url} for {agent!r}"


class SourceGateMiddleware:
    """Drop the requests of finished sources; end downloads by the source's deadline."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SourceGateMiddleware:
        """Build the middleware for *crawler*."""
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        """Raise ``IgnoreRequest`` for a finished source; clamp ``download_timeout``."""
        key = request.meta.get(SOURCE_META)
        if key is None:
            return
        remaining = getattr(self.crawler.spider, "remaining", None)
        left = remaining(key) if callable(remaining) else None
        if left is None:
            raise IgnoreRequest(GATE_DROPPED)
        configured = float(
            request.meta.get("download_timeout")
            or self.crawler.settings.getfloat("DOWNLOAD_TIMEOUT")
        )
        request.meta["download_timeout"] = max(MIN_DOWNLOAD_TIMEOUT, min(configured, left))


class GuardMiddleware:
    """
    Refuse requests the URL guard refuses (see the module docstring).

    The first refusal is kept in the crawler's stats (``atlasreg/forbidden_address``
    or ``atlasreg/invalid_url``); the ``IgnoreRequest`` says why.
    """

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GuardMiddleware:
        """Build the middleware with the crawler's stats."""
        return cls(crawler.stats)

    async def process_request(self, request: Request) -> None:
        """Vet the request's URL; raise ``IgnoreRequest`` when it is refused."""
        try:
            if ADDRESS_BOOK.allow_private:
                check_source_url(request.url, allow_private=True)
            else:
                vetted = await maybe_deferred_to_future(
                    deferToThread(
                        vet_url, request.url, allow_private=False, resolver=ADDRESS_BOOK.resolver
                    )
                )
                ADDRESS_BOOK.remember(vetted.host, vetted.port, vetted.addresses)
        except SourceFailed as exc:
            stat = INVALID_URL_STAT if exc.error_type == "invalid_url" else FORBIDDEN_STAT
            if self.stats is not None and not self.stats.get_value(stat):
                self.stats.set_value(stat, str(exc))
            raise IgnoreRequest(f"{GUARD_PREFIX} {exc.error_type}: {exc}") from None


class RobotsRefusalMiddleware:
    """Tell the crawler's listeners about requests robots.txt forbids (:data:`ROBOTS_REFUSED`)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RobotsRefusalMiddleware:
        """Build the middleware for *crawler*."""
        return cls(crawler)

    def process_exception(self, request: Request, exception: Exception) -> None:
        """Send :data:`ROBOTS_REFUSED` for Scrapy's robots.txt ``IgnoreRequest``."""
        if isinstance(exception, IgnoreRequest) and "robots.txt" in str(exception):
            self.crawler.signals.send_catch_log(signal=ROBOTS_REFUSED, request=request)


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries, each after a pause (``Retry-After`` or exponential backoff)."""

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.backoff = settings.getfloat(BACKOFF_SETTING, 1.0)
        self.deadline = settings.getfloat(DEADLINE_SETTING, 0.0) or None

    async def process_response(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> Request | Response:
        """Retry a retryable status after ``Retry-After`` or the backoff."""
        if (
            is_robots_txt(request)
            or request.meta.get("dont_retry", False)
            or response.status not in self.retry_http_codes
        ):
            return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        header = response.headers.get(b"Retry-After")
        wait = parse_retry_after(header.decode("latin-1") if header else None, cap=MAX_RETRY_WAIT)
        if not await self._pause(request, self._backoff(retry) if wait is None else wait):
            return response
        return retry

    async def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception
    ) -> Request | Response | None:
        """Retry a download error (connection refused, timeout…) after the backoff."""
        if is_robots_txt(request):
            return None
        retry = super().process_exception(request, exception)
        if not isinstance(retry, Request):
            return retry
        if not await self._pause(request, self._backoff(retry)):
            return None
        return retry

    def _backoff(self, retry: Request) -> float:
        attempt = max(1, int(retry.meta.get("retry_times", 1)))
        return float(self.backoff * 2 ** (attempt - 1) * random.uniform(0.8, 1.2))

    async def _pause(self, request: Request, seconds: float) -> bool:
        """Wait *seconds*; ``False`` (no wait) when the deadline comes first."""
        seconds = min(max(0.0, seconds), MAX_RETRY_WAIT)
        deadline = request.meta.get(DEADLINE_META) or self.deadline
        if deadline is not None and time.monotonic() + seconds >= float(deadline) - 0.2:
            return False
        if seconds > 0:
            await asyncio.sleep(seconds)
        return True
