"""Scrapy's downloader, with per-host limits that hold across the crawl process.

Two things differ from Scrapy 2.19's ``Downloader``:

- **The limit and the delay of a host hold across every crawler of the
  process.** Each project spider is a crawler of its own, with a downloader
  of its own; before letting a request out, :class:`PoliteDownloader` asks
  the process's :data:`~.hosts.HOSTS` table (shared by every downloader and
  by the parent's CSV downloads) for a place on the request's host, and
  gives it back when the download ends. A crawler's own limit
  (``CONCURRENT_REQUESTS_PER_DOMAIN`` or a source's ``max_per_host``) and
  delay (``DOWNLOAD_DELAY`` or a source's ``download_delay``) are registered
  with the table, where the most polite value holds; AutoThrottle adjusts
  the slot's delay above that floor, never below it.
- **A request is counted as transferring when it is let out.** With the
  asyncio reactor, Scrapy's ``_process_queue`` hands each request to a task
  that marks it as transferring only once the task runs; the loop meanwhile
  sees every place free, so a slot's whole queue could go out at once (10
  requests at once on one host with a limit of 2 were seen with a plain
  ``CrawlerProcess``).

A third thing is added: :meth:`PoliteDownloader.abort` ends transfers in
progress (a source cancelled, expired or past its item cap; a project
spider stopped), so their hosts' places are free at once rather than when
the transfer ends; the request fails with ``IgnoreRequest``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.core.downloader import Downloader, Slot
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import _process_pending_io, _schedule_coro
from scrapy.utils.httpobj import urlparse_cached

from .hosts import FULL, HOSTS

#: What an aborted transfer's ``IgnoreRequest`` says.
ABORTED = "atlasreg: the transfer was aborted (its source is over)"

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response


class PoliteDownloader(Downloader):
    """``Downloader`` whose per-host limit and delay hold across the process."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self._configured_delay = self.settings.getfloat("DOWNLOAD_DELAY")
        self._out: dict[Request, str] = {}
        self._transfers: dict[Request, asyncio.Future[Response]] = {}
        self._aborted: set[Request] = set()

    def _politeness(self, key: str) -> tuple[int, float]:
        """This crawler's limit and delay for slot *key* (a source's own values included)."""
        wanted = self.per_slot_settings.get(key, {})
        limit = int(wanted.get("concurrency", self.ip_concurrency or self.domain_concurrency))
        return limit, max(self._configured_delay, float(wanted.get("delay", 0.0)))

    def _process_queue(self, slot: Slot) -> None:
        if slot.latercall:
            return  # processing resumes when the delay is over
        while slot.queue and slot.free_transfer_slots() > 0:
            request, queue_dfd = slot.queue[0]
            host = urlparse_cached(request).hostname or ""
            limit, floor = self._politeness(str(request.meta.get(self.DOWNLOAD_SLOT, host)))
            now = monotonic()
            wait = HOSTS.admit(host, limit=limit, floor=floor, delay=slot.download_delay(), now=now)
            if wait == FULL:
                HOSTS.park(host, (self, slot), lambda: self._process_queue(slot))
                return
            if wait > 0:
                slot.latercall = call_later(wait, self._latercall, slot)
                return
            slot.queue.popleft()
            slot.lastseen = now
            slot.transferring.add(request)  # counted now, not when the task starts
            self._out[request] = host
            task: Any = self._wait_for_download(slot, request, queue_dfd)
            _schedule_coro(task)

    def abort(self, which: Callable[[Request], bool]) -> int:
        """
        Abort the transfers in progress of the requests *which* picks.

        Returns:
            How many were aborted.
        """
        picked = [(r, t) for r, t in self._transfers.items() if r not in self._aborted and which(r)]
        for request, transfer in picked:
            self._aborted.add(request)
            transfer.cancel()
        return len(picked)

    async def _transfer(self, request: Request) -> Response:
        transfer = asyncio.ensure_future(self.handlers.download_request_async(request))
        self._transfers[request] = transfer
        try:
            return await transfer
        except asyncio.CancelledError:
            if request not in self._aborted:
                raise
            raise IgnoreRequest(ABORTED) from None
        finally:
            self._transfers.pop(request, None)
            self._aborted.discard(request)

    async def _download(self, slot: Slot, request: Request) -> Response:
        slot.transferring.add(request)
        try:
            response: Response = await self._transfer(request)
            self.signals.send_catch_log(
                signal=signals.response_downloaded,
                response=response,
                request=request,
                spider=self.crawler.spider,
            )
            return response
        except Exception:
            await _process_pending_io()
            raise
        finally:
            slot.transferring.discard(request)
            host = self._out.pop(request, None)
            if host is not None:
                HOSTS.release(host)  # wakes the slots of every downloader waiting for it
            self._process_queue(slot)
            self.signals.send_catch_log(
                signal=signals.request_left_downloader,
                request=request,
                spider=self.crawler.spider,
            )

    def close(self) -> None:
        """Close the slots; forget what this downloader parked in the host table."""
        HOSTS.forget(self)
        super().close()
