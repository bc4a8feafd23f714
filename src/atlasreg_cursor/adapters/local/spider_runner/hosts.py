"""The crawl process's per-host budget: one table for every crawler and download.

Each Scrapy crawler of the process (the shared crawler of the generic
sources, one per project spider) has a downloader of its own, with slots of
its own. :class:`HostTable` is what they share: per host name, how many
requests are out right now, when the last one was let out, and the most
polite limit and delay anyone asked for (``CRAWL_MAX_PER_HOST`` and the
per-host delay, lowered / raised by a source's ``crawl`` block). A downloader
asks :meth:`HostTable.admit` before letting a request out and calls
:meth:`HostTable.release` when it is done; the parent's CSV downloads take a
turn the same way (``turns.py``). Whoever finds a host full parks a
callback, called when a request of that host ends.

The delay a request waits for is the larger of the host's floor (the most
polite ``download_delay`` registered for it) and its own slot's delay, so
AutoThrottle may slow a host down but never below a source's delay.

Everything runs in the reactor thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import attrs

#: :meth:`HostTable.admit`'s answer when the host has no free place.
FULL = math.inf


@attrs.define(eq=False)
class Host:
    """One host's state: the most polite limits asked for, and what is out now."""

    limit: int = 2**31
    floor: float = 0.0
    busy: int = 0
    lastseen: float = -math.inf
    parked: dict[Hashable, Callable[[], None]] = attrs.field(factory=dict)


class HostTable:
    """Per-host places and delays shared by every crawler of the process."""

    def __init__(self) -> None:
        self._hosts: dict[str, Host] = {}

    def host(self, name: str) -> Host:
        """The state of host *name* (made on first use)."""
        key = name.lower()
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = Host()
        return host

    def admit(self, name: str, *, limit: int, floor: float, delay: float, now: float) -> float:
        """
        Let one request out to *name* now, if the host allows it.

        Args:
            name: the host name.
            limit: the caller's most requests at once on this host (the
                smallest ever asked for holds).
            floor: the caller's configured delay for this host (the largest
                ever asked for holds).
            delay: the caller's current delay (AutoThrottle's, with jitter).
            now: ``time.monotonic()``.

        Returns:
            ``0.0`` when the request may go (it is counted until
            :meth:`release`), the seconds to wait for the delay, or
            :data:`FULL` when the host has no free place (:meth:`park`).
        """
        host = self.host(name)
        host.limit = max(1, min(host.limit, int(limit)))
        host.floor = max(host.floor, float(floor))
        if host.busy >= host.limit:
            return FULL
        wait = host.lastseen + max(host.floor, float(delay)) - now
        if wait > 0:
            return wait
        host.busy += 1
        host.lastseen = now
        return 0.0

    def hold(self, name: str, *, limit: int, floor: float, now: float) -> None:
        """
        Count one place on *name* as taken now, whatever its limit: a download
        the run's previous crawl process let out, still going (see ``turns.py``).
        """
        host = self.host(name)
        host.limit = max(1, min(host.limit, int(limit)))
        host.floor = max(host.floor, float(floor))
        host.busy += 1
        host.lastseen = now

    def release(self, name: str) -> None:
        """One request to *name* ended: free its place, wake whoever waits."""
        host = self.host(name)
        host.busy = max(0, host.busy - 1)
        waiting = list(host.parked.values())
        host.parked.clear()
        for wake in waiting:
            wake()

    def park(self, name: str, key: Hashable, wake: Callable[[], None]) -> None:
        """Call *wake* (once) when a request to *name* ends; *key* replaces an earlier one."""
        self.host(name).parked[key] = wake

    def unpark(self, name: str, key: Hashable) -> None:
        """Forget what :meth:`park` registered under *key*."""
        self.host(name).parked.pop(key, None)

    def forget(self, owner: object) -> None:
        """Forget every callback parked by *owner* (keys ``(owner, …)``)."""
        for host in self._hosts.values():
            for key in [k for k in host.parked if isinstance(k, tuple) and k[:1] == (owner,)]:
                del host.parked[key]

    def busy(self, name: str) -> int:
        """How many requests to *name* are out now."""
        return self.host(name).busy


#: The process's table (one crawl process serves one run).
HOSTS = HostTable()
