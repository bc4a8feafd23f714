"""The crawl's DNS: every connection goes to an address the URL guard vetted.

:class:`AddressBook` keeps the answers :func:`vet_host` gave (a short TTL),
shared by the guard middleware (which vets each request's URL) and
:class:`VettingResolver`, the ``IHostnameResolver`` installed on the reactor
(Scrapy's HTTP client resolves every host through it). A name that does not
pass the guard resolves to nothing, so no connection is ever made to it,
whatever a second DNS answer says.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer  # type: ignore[import-untyped]

from atlasreg_cursor.adapters._netguard import vet_host
from atlasreg_cursor.domain.errors import SourceFailed

ANSWER_TTL_SECONDS = 60.0
MAX_ANSWERS = 4096
_DEFAULT_PORT = 80


class AddressBook:
    """
    Vetted addresses by ``(host, port)``, and why hosts were refused.

    Args:
        allow_private: lift the address check (``ALLOW_PRIVATE_SOURCES``).
        ttl: seconds an answer is reused.
    """

    def __init__(self, *, allow_private: bool, ttl: float = ANSWER_TTL_SECONDS) -> None:
        self.allow_private = allow_private
        self._ttl = ttl
        self._answers: OrderedDict[tuple[str, int], tuple[float, tuple[str, ...]]] = OrderedDict()
        self._refused: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, host: str, port: int) -> tuple[str, ...] | None:
        """The vetted addresses of *host*, if known and fresh."""
        with self._lock:
            entry = self._answers.get((host.lower(), port))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def remember(self, host: str, port: int, addresses: Sequence[str]) -> None:
        """Keep a vetted answer for :data:`ANSWER_TTL_SECONDS`."""
        with self._lock:
            self._answers[(host.lower(), port)] = (time.monotonic() + self._ttl, tuple(addresses))
            self._answers.move_to_end((host.lower(), port))
            while len(self._answers) > MAX_ANSWERS:
                self._answers.popitem(last=False)

    def vet(self, host: str, port: int) -> tuple[str, ...]:
        """
        Resolve and vet *host* (blocking; call it in a thread).

        Raises:
            SourceFailed: as :func:`vet_host`; the reason is kept for :meth:`refusal`.
        """
        try:
            addresses = vet_host(host, port, allow_private=self.allow_private)
        except SourceFailed as exc:
            with self._lock:
                self._refused[host.lower()] = f"{exc.error_type}: {exc}"
                while len(self._refused) > MAX_ANSWERS:
                    self._refused.popitem(last=False)
            raise
        self.remember(host, port, addresses)
        return addresses

    def refusal(self, host: str) -> str | None:
        """Why *host* was last refused (``"<error_type>: <message>"``), if it was."""
        with self._lock:
            return self._refused.get(host.lower())


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:  # pragma: no cover - Twisted never cancels these
        return None


@implementer(IHostnameResolver)
class VettingResolver:
    """
    The reactor's name resolver: answers only addresses that passed the guard.

    Args:
        reactor: the running reactor (its thread pool runs the lookups).
        book: the vetted answers shared with the guard middleware.
    """

    def __init__(self, reactor: Any, book: AddressBook) -> None:
        self._reactor = reactor
        self._book = book

    def install(self) -> None:
        """Make this the reactor's resolver (for every crawler of the process)."""
        self._reactor.installNameResolver(self)

    def resolveHostName(
        self,
        resolutionReceiver: Any,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[Any]] | None = None,
        transportSemantics: str = "TCP",
    ) -> _Resolution:
        """Deliver the vetted addresses of *hostName* (none when it is refused)."""
        host = str(hostName)
        port = portNumber or _DEFAULT_PORT
        resolution = _Resolution(host)
        resolutionReceiver.resolutionBegan(resolution)

        def deliver(addresses: Sequence[str]) -> None:
            for address in addresses:
                kind = IPv6Address if ":" in address else IPv4Address
                if addressTypes is None or kind in addressTypes:
                    resolutionReceiver.addressResolved(kind("TCP", address, portNumber))
            resolutionReceiver.resolutionComplete()

        def refuse(_: Any) -> None:
            resolutionReceiver.resolutionComplete()

        cached = self._book.lookup(host, port)
        if cached is not None:
            deliver(cached)
            return resolution
        pool = self._reactor.getThreadPool()
        lookup = deferToThreadPool(self._reactor, pool, self._book.vet, host, port)
        lookup.addCallbacks(deliver, refuse)
        return resolution
