"""The places the parent's downloads (CSV) take on a host, from the process's table.

A download of the parent asks for a place with ``turn``: it is granted (a
``turn`` event) once the host has a free place under the most polite limit
and delay (:data:`~.hosts.HOSTS`, shared with every crawler of the process),
and given back with ``release`` (or the parent's ``cancel``). ``hold`` counts
at once a place a download still holds from the run's previous crawl
process (which died): the new process must not give it to another.

Everything runs in the reactor thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .hosts import FULL, HostTable

Emit = Callable[[dict[str, Any]], None]


class DownloadTurns:
    """
    The parent's downloads' places, by key.

    Args:
        hosts: the process's per-host table.
        policy: the crawl policy (the default limit and delay).
        emit: sends one event to the parent.
        reactor: the running reactor (for delays).
    """

    def __init__(
        self, hosts: HostTable, policy: Mapping[str, Any], emit: Emit, reactor: Any
    ) -> None:
        self._hosts = hosts
        self._policy = policy
        self._emit = emit
        self._reactor = reactor
        self._turns: dict[str, tuple[str, bool]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._turns

    def _place(self, command: Mapping[str, Any]) -> tuple[str, int, float]:
        """The host, limit and delay a ``turn`` or ``hold`` command asks for."""
        host = str(command.get("host") or "")
        limit = int(command.get("max_per_host") or self._policy["max_per_host"])
        asked = command.get("download_delay")
        return host, limit, float(self._policy["download_delay"] if asked is None else asked)

    def hold(self, key: str, command: Mapping[str, Any]) -> None:
        """Count a place a download already holds (granted by the run's process before)."""
        if key in self._turns:
            return
        host, limit, delay = self._place(command)
        self._hosts.hold(host, limit=limit, floor=delay, now=time.monotonic())
        self._turns[key] = (host, True)

    def turn(self, key: str, command: Mapping[str, Any]) -> None:
        """Send ``turn`` once the host has a place for the download."""
        host, limit, delay = self._place(command)
        self._turns[key] = (host, False)

        def attempt() -> None:
            if self._turns.get(key) != (host, False):
                return  # given back before its turn came
            now = time.monotonic()
            wait = self._hosts.admit(host, limit=limit, floor=delay, delay=delay, now=now)
            if wait == FULL:
                self._hosts.park(host, key, attempt)
            elif wait > 0:
                self._reactor.callLater(wait, attempt)
            else:
                self._turns[key] = (host, True)
                self._emit({"event": "turn", "key": key})

        attempt()

    def release(self, key: str) -> None:
        """The download is over (or gave up waiting): free its place."""
        entry = self._turns.pop(key, None)
        if entry is None:
            return
        host, held = entry
        if held:
            self._hosts.release(host)
        else:
            self._hosts.unpark(host, key)
