"""The crawl's DNS: every connection goes to an address the URL guard vetted.

:class:`AddressBook` keeps the answers :func:`vet_host` gave (a short TTL),
shared by the guard middleware (which vets each request's URL) and
:class:`VettingResolver`, the ``IHostnameResolver`` installed on the reactor
(Scrapy's HTTP client resolves every host through it). A name that does not
pass the guard resolves to nothing, so no connection is ever made to it,
whatever a second DNS answer says.

:class:`StubNetwork` is a test-only seam, read from the process's config
(``stub_network``), which only code constructing ``CrawlSessions`` sets —
never settings, the watchlist or a crawl spec. It plays the part netlab's
resolver and dial play for the guarded client: fake public names resolve to
public addresses (still vetted by the guard) and a vetted public address is
dialled at a loopback port.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer  # type: ignore[import-untyped]

from atlasreg_cursor.adapters._netguard import Resolver, system_resolver, vet_host
from atlasreg_cursor.domain.errors import SourceFailed

ANSWER_TTL_SECONDS = 60.0
MAX_ANSWERS = 4096
_DEFAULT_PORT = 80


class StubNetwork:
    """
    Test-only DNS and dial table (see the module docstring).

    Args:
        answers: successive DNS answers by name (the last one repeats);
            other names go to the system resolver.
        sites: loopback port by public address: a vetted address found here
            is dialled at ``127.0.0.1:<port>``; a loopback address is dialled
            as is (so a guard failure would show on the test's server); any
            other address is never dialled.
    """

    def __init__(
        self, answers: Mapping[str, Sequence[Sequence[str]]], sites: Mapping[str, int]
    ) -> None:
        self._answers = {str(k): [list(a) for a in v] for k, v in answers.items()}
        self._sites = {str(k): int(v) for k, v in sites.items()}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StubNetwork:
        """Build it from the process config's ``stub_network``."""
        return cls(dict(config.get("answers") or {}), dict(config.get("sites") or {}))

    def resolve(self, host: str, port: int) -> Sequence[str]:
        """The next programmed answer for *host*, or the system's."""
        with self._lock:
            answers = self._answers.get(host.lower())
            if not answers:
                return system_resolver(host, port)
            return list(answers.pop(0) if len(answers) > 1 else answers[0])

    def dial(self, address: str, port: int) -> tuple[str, int] | None:
        """Where to connect for a vetted address (``None``: nowhere)."""
        if address in self._sites:
            return "127.0.0.1", self._sites[address]
        if ipaddress.ip_address(address).is_loopback:
            return address, port
        return None


class AddressBook:
    """
    Vetted addresses by ``(host, port)``, and why hosts were refused.

    Args:
        allow_private: lift the address check (``ALLOW_PRIVATE_SOURCES``).
        ttl: seconds an answer is reused.
        network: the test-only :class:`StubNetwork` (none in production).
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        ttl: float = ANSWER_TTL_SECONDS,
        network: StubNetwork | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.network = network
        self._ttl = ttl
        self._answers: OrderedDict[tuple[str, int], tuple[float, tuple[str, ...]]] = OrderedDict()
        self._refused: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def resolver(self) -> Resolver | None:
        """The guard's resolver (``None``: the system's)."""
        return self.network.resolve if self.network is not None else None

    def dial(self, address: str, port: int) -> tuple[str, int] | None:
        """Where to connect for a vetted address: itself, except on a stub network."""
        return self.network.dial(address, port) if self.network is not None else (address, port)

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
            addresses = vet_host(
                host, port, allow_private=self.allow_private, resolver=self.resolver
            )
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
                target = self._book.dial(address, portNumber)
                if target is None:
                    continue
                kind = IPv6Address if ":" in target[0] else IPv4Address
                if addressTypes is None or kind in addressTypes:
                    resolutionReceiver.addressResolved(kind("TCP", *target))
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
