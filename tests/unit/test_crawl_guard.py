"""The crawl's DNS (vetted answers only) and the crawl process's per-host table."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.threadpool import ThreadPool

from atlasreg_cursor.adapters.local.spider_runner.hosts import FULL, HostTable
from atlasreg_cursor.adapters.local.spider_runner.resolver import AddressBook, VettingResolver
from atlasreg_cursor.domain.errors import SourceFailed


class Receiver:
    """An IResolutionReceiver that remembers what it was told."""

    def __init__(self) -> None:
        self.addresses: list[Any] = []
        self.done = threading.Event()

    def resolutionBegan(self, resolution: Any) -> None:
        self.name = resolution.name

    def addressResolved(self, address: Any) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.done.set()


class ThreadReactor:
    """Just enough of a reactor for deferToThreadPool: a real pool, direct callbacks."""

    def __init__(self) -> None:
        self.pool = ThreadPool(minthreads=1, maxthreads=2)
        self.pool.start()

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


@pytest.fixture
def reactor() -> Any:
    fake = ThreadReactor()
    yield fake
    fake.pool.stop()


def test_refused_host_resolves_to_nothing(reactor: Any) -> None:
    """Without private sources, a loopback name gets no address: nothing to connect to."""
    book = AddressBook(allow_private=False)
    receiver = Receiver()

    VettingResolver(reactor, book).resolveHostName(receiver, "localhost", 80)

    assert receiver.done.wait(10)
    assert [] == receiver.addresses
    assert "forbidden_address" in (book.refusal("localhost") or "")


def test_allowed_host_resolves_to_its_vetted_addresses(reactor: Any) -> None:
    """With private sources allowed a loopback literal resolves; the answer is kept."""
    book = AddressBook(allow_private=True)
    receiver = Receiver()

    VettingResolver(reactor, book).resolveHostName(receiver, "127.0.0.7", 8080)

    assert receiver.done.wait(10)
    assert [IPv4Address("TCP", "127.0.0.7", 8080)] == receiver.addresses
    assert ("127.0.0.7",) == book.lookup("127.0.0.7", 8080)


def test_cached_answer_is_what_the_connection_gets(reactor: Any) -> None:
    """The guard's vetted answer is delivered as is (a later DNS answer is never asked)."""
    book = AddressBook(allow_private=False)
    book.remember("portal.example", 443, ["203.0.113.5", "2001:db8::5"])
    receiver = Receiver()

    VettingResolver(reactor, book).resolveHostName(
        receiver, "portal.example", 443, addressTypes=[IPv4Address]
    )

    assert receiver.done.is_set()
    assert [IPv4Address("TCP", "203.0.113.5", 443)] == receiver.addresses
    assert IPv6Address not in {type(a) for a in receiver.addresses}


def test_address_book_vets_every_answer() -> None:
    """vet() refuses a private literal unless allowed, and says why."""
    strict, lax = AddressBook(allow_private=False), AddressBook(allow_private=True)

    with pytest.raises(SourceFailed) as info:
        strict.vet("10.0.0.1", 80)

    assert "forbidden_address" == info.value.error_type
    assert ("10.0.0.1",) == lax.vet("10.0.0.1", 80)


def test_a_host_admits_its_limit_then_wakes_who_waits_when_one_ends() -> None:
    """Two places on a host whoever asks (any crawler, a download); a third is parked and
    woken when one ends; another host is not held back."""
    table = HostTable()
    woken: list[str] = []

    first = table.admit("a", limit=2, floor=0, delay=0, now=10.0)
    second = table.admit("a", limit=2, floor=0, delay=0, now=10.0)
    third = table.admit("a", limit=2, floor=0, delay=0, now=10.0)
    table.park("a", "third", lambda: woken.append("third"))
    other = table.admit("b", limit=2, floor=0, delay=0, now=10.0)
    table.release("a")

    assert (0.0, 0.0, FULL, 0.0) == (first, second, third, other)
    assert ["third"] == woken
    assert 1 == table.busy("a")
    assert 0.0 == table.admit("a", limit=2, floor=0, delay=0, now=10.0)


def test_the_most_polite_limit_and_delay_hold_for_everyone() -> None:
    """A caller asking one place and a 2 s floor lowers the host for all; a caller's own
    (AutoThrottle) delay under the floor does not shorten the wait."""
    table = HostTable()

    assert 0.0 == table.admit("h", limit=4, floor=0, delay=0, now=0.0)
    assert 0.0 == table.admit("h", limit=4, floor=0, delay=0, now=0.0)
    table.release("h")
    table.release("h")
    assert 2.0 == table.admit("h", limit=1, floor=2.0, delay=0.1, now=0.0)
    assert 0.0 == table.admit("h", limit=4, floor=0, delay=0, now=2.0)
    assert FULL == table.admit("h", limit=4, floor=0, delay=0, now=10.0)  # one place now
    table.release("h")
    assert 0.5 == table.admit("h", limit=4, floor=0, delay=3.0, now=4.5)  # its own delay wins


def test_parked_callbacks_of_a_closed_downloader_are_forgotten() -> None:
    """A downloader that closes leaves nothing parked behind."""
    table = HostTable()
    owner, other = object(), object()
    table.admit("h", limit=1, floor=0, delay=0, now=0.0)
    table.park("h", (owner, 1), lambda: pytest.fail("woken after close"))
    table.park("h", (other, 1), lambda: None)

    table.forget(owner)
    table.release("h")

    assert 0 == table.busy("h")
