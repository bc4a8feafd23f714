"""The crawl's DNS (vetted answers only), download turns per host."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.threadpool import ThreadPool

from atlasreg_cursor.adapters.local.downloads import HostTurns
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


def test_host_turns_allow_at_most_the_limit_at_once() -> None:
    """Downloads on one host take turns; another host is not held back."""
    turns = HostTurns(2)
    most = {"a": 0, "b": 0}
    lock = threading.Lock()

    def download(host: str) -> None:
        with turns.turn(host, deadline=time.monotonic() + 30, stopped=lambda: False):
            with lock:
                most[host] = max(most[host], turns.holders(host))
            time.sleep(0.1)

    threads = [threading.Thread(target=download, args=(h,)) for h in "aaaaab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert {"a": 2, "b": 1} == most
    assert 0 == turns.holders("a")


def test_waiting_for_a_turn_ends_at_the_deadline_or_when_stopped() -> None:
    """No turn before the deadline is a timeout; a stopped wait is cancelled."""
    turns = HostTurns(1)
    stop = threading.Event()
    with turns.turn("h", deadline=time.monotonic() + 30, stopped=lambda: False):
        with (
            pytest.raises(SourceFailed) as late,
            turns.turn("h", deadline=time.monotonic() + 0.3, stopped=lambda: False),
        ):
            pass
        stop.set()
        with (
            pytest.raises(SourceFailed) as stopped,
            turns.turn("h", deadline=time.monotonic() + 30, stopped=stop.is_set),
        ):
            pass

    assert "timeout" == late.value.error_type
    assert "cancelled" == stopped.value.error_type
