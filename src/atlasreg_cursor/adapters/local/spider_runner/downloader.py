"""Scrapy's downloader, with its per-slot concurrency counted when a request is let out.

With the asyncio reactor, Scrapy 2.19's ``Downloader._process_queue`` hands
each queued request to a task that marks it as transferring only when the
task starts running; the loop meanwhile still sees every transfer slot free,
so every request queued in a slot at that moment goes out at once and
``CONCURRENT_REQUESTS_PER_DOMAIN`` is exceeded (seen here: 10 requests at
once on one host with a limit of 2, plain ``CrawlerProcess``).
:class:`PoliteDownloader` marks the request as transferring before the task
is scheduled, so the limit holds; ``_download`` adds it again (a set) and
removes it when done, as before.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from scrapy.core.downloader import Downloader, Slot
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import _schedule_coro


class PoliteDownloader(Downloader):
    """``Downloader`` whose per-slot concurrency holds under the asyncio reactor."""

    def _process_queue(self, slot: Slot) -> None:
        if slot.latercall:
            return  # processing resumes when the delay is over
        now = monotonic()
        delay = slot.download_delay()
        if delay:
            penalty = delay - now + slot.lastseen
            if penalty > 0:
                slot.latercall = call_later(penalty, self._latercall, slot)
                return
        while slot.queue and slot.free_transfer_slots() > 0:
            slot.lastseen = now
            request, queue_dfd = slot.queue.popleft()
            slot.transferring.add(request)  # counted now, not when the task starts
            task: Any = self._wait_for_download(slot, request, queue_dfd)
            _schedule_coro(task)
            if delay:
                self._process_queue(slot)
                break
