"""The MessageQueue contract (architecture §6), run against every queue adapter.

A test module plugs an adapter in by subclassing :class:`QueueContract` and
overriding the ``queue_factory`` fixture::

    class TestSqliteQueue(QueueContract):
        @pytest.fixture
        def queue_factory(self, tmp_path):
            made = []
            def make(visibility_timeout: float) -> MessageQueue:
                q = SqliteQueue(tmp_path / "q.db", visibility_timeout=visibility_timeout)
                made.append(q)
                return q
            yield make
            for q in made:
                q.close()

Fixture shape:
    ``queue_factory`` returns ``make(visibility_timeout: float) -> MessageQueue``.
    Every call within one test returns a new consumer (own connection) on the
    SAME underlying queue, which is empty when the test starts. The fixture
    closes what it made and cleans up afterwards.

Capabilities (class attributes; override where the backend differs):
    DETECTS_LATE_ACK: acking a lease that expired and was re-leased raises ``LeaseExpired``.
    SUPPORTS_EXTEND: ``extend`` keeps a lease past the original visibility timeout.
    SEND_RETURNS_ID: the id ``send`` returns is the ``Delivery.queue_message_id``.
    BINARY_BODIES: bodies that are not UTF-8 survive the round trip.
    DEAD_LETTER_BOX: the queue implements ``DeadLetterBox`` (list/replay/purge).
    STATS_REPORTED: the ``QueueStats`` fields the backend counts exactly.
    MAX_BATCH: the largest ``max_messages`` the backend accepts.
    MIN_VISIBILITY: the shortest visibility timeout (seconds) timeout tests use.
    REDELIVERY_SLACK: seconds a timed-out or delayed message may take to reappear.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from atlasreg_cursor.domain.errors import LeaseExpired, QueueError
from atlasreg_cursor.ports.queue import Delivery, MessageQueue

QueueFactory = Callable[[float], MessageQueue]
LONG_VISIBILITY = 60.0


def receive_until(
    queue: MessageQueue, count: int, *, timeout: float, max_messages: int = 10
) -> list[Delivery]:
    """Receive until *count* deliveries arrived or *timeout* seconds passed."""
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        out.extend(queue.receive(min(max_messages, count - len(out)), wait_seconds=min(left, 1.0)))
    return out


class QueueContract:
    """Checks every MessageQueue adapter must pass."""

    DETECTS_LATE_ACK: ClassVar[bool] = True
    SUPPORTS_EXTEND: ClassVar[bool] = True
    SEND_RETURNS_ID: ClassVar[bool] = True
    BINARY_BODIES: ClassVar[bool] = True
    DEAD_LETTER_BOX: ClassVar[bool] = True
    STATS_REPORTED: ClassVar[frozenset[str]] = frozenset({"ready", "in_flight", "delayed", "dead"})
    MAX_BATCH: ClassVar[int] = 100
    MIN_VISIBILITY: ClassVar[float] = 1.0
    REDELIVERY_SLACK: ClassVar[float] = 2.0

    @pytest.fixture
    def queue_factory(self) -> QueueFactory:
        """Return ``make(visibility_timeout)``: consumers on one fresh queue."""
        raise NotImplementedError

    @pytest.fixture
    def queue(self, queue_factory: QueueFactory) -> MessageQueue:
        """One consumer with a long visibility timeout."""
        return queue_factory(LONG_VISIBILITY)

    def assert_stats(self, queue: MessageQueue, **expected: int) -> None:
        """Check the stats fields this backend reports exactly."""
        stats = queue.stats()
        actual = {name: getattr(stats, name) for name in expected if name in self.STATS_REPORTED}
        wanted = {name: value for name, value in expected.items() if name in self.STATS_REPORTED}
        assert wanted == actual

    # --- basics -------------------------------------------------------------

    def test_send_receive_ack(self, queue: MessageQueue) -> None:
        """A sent message is received once with attempts=1 and is gone after ack."""
        body = b'{"type": "start_daily_ingest", "date": "2026-11-24"}'
        message_id = queue.send(body)

        [delivery] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)
        queue.ack(delivery)

        assert body == delivery.body
        assert 1 == delivery.attempts
        if self.SEND_RETURNS_ID:
            assert message_id == delivery.queue_message_id
        assert [] == queue.receive(1, wait_seconds=0)
        self.assert_stats(queue, ready=0, in_flight=0, delayed=0, dead=0)

    @pytest.mark.parametrize(
        "body",
        [
            b"{}",
            '{"title": "Transmissão — R$ 1,5 milhão ✓"}'.encode(),
            b"x" * 100_000,
            b"not json at all",
        ],
        ids=["empty-object", "utf8", "100k", "not-json"],
    )
    def test_body_bytes_preserved(self, queue: MessageQueue, body: bytes) -> None:
        """The body comes back byte for byte."""
        queue.send(body)

        [delivery] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)

        assert body == delivery.body

    def test_binary_body_preserved(self, queue: MessageQueue) -> None:
        """Bytes that are not UTF-8 survive, or are refused up front where the backend stores text."""
        body = bytes(range(256))
        if not self.BINARY_BODIES:
            with pytest.raises(QueueError):
                queue.send(body)
            return
        queue.send(body)

        [delivery] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)

        assert body == delivery.body

    def test_batch_receive(self, queue: MessageQueue) -> None:
        """``max_messages`` bounds a batch; every message arrives exactly once."""
        bodies = {f"m{i}".encode() for i in range(7)}
        for body in sorted(bodies):
            queue.send(body)

        first = queue.receive(min(3, self.MAX_BATCH), wait_seconds=self.REDELIVERY_SLACK)
        rest = receive_until(queue, 7 - len(first), timeout=self.REDELIVERY_SLACK + 3)

        assert 1 <= len(first) <= 3
        assert sorted(bodies) == sorted(d.body for d in first + rest)

    def test_receive_waits_then_returns_empty(self, queue: MessageQueue) -> None:
        """An empty queue blocks about ``wait_seconds`` and returns ``[]``."""
        start = time.monotonic()
        got = queue.receive(1, wait_seconds=0.6)
        elapsed = time.monotonic() - start

        assert [] == got
        assert 0.5 <= elapsed < 0.6 + self.REDELIVERY_SLACK

    def test_receive_returns_early_when_a_message_arrives(
        self, queue_factory: QueueFactory
    ) -> None:
        """A blocked receive returns soon after another consumer sends."""
        consumer, producer = queue_factory(LONG_VISIBILITY), queue_factory(LONG_VISIBILITY)
        timer = threading.Timer(0.3, producer.send, args=(b"wake",))
        timer.start()
        try:
            start = time.monotonic()
            got = consumer.receive(1, wait_seconds=10)
            elapsed = time.monotonic() - start
        finally:
            timer.cancel()
            timer.join()

        assert [b"wake"] == [d.body for d in got]
        assert elapsed < 0.3 + self.REDELIVERY_SLACK

    # --- leases ---------------------------------------------------------------

    def test_redelivered_after_visibility_timeout(self, queue_factory: QueueFactory) -> None:
        """An un-acked message comes back after the timeout with attempts + 1."""
        queue = queue_factory(self.MIN_VISIBILITY)
        queue.send(b"lost")
        [first] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)
        hidden = queue.receive(1, wait_seconds=0)

        [second] = receive_until(queue, 1, timeout=self.MIN_VISIBILITY + self.REDELIVERY_SLACK)

        assert [] == hidden
        assert b"lost" == second.body
        assert first.attempts + 1 == second.attempts
        assert first.queue_message_id == second.queue_message_id
        assert first.lease_token != second.lease_token

    def test_late_ack_raises_lease_expired(self, queue_factory: QueueFactory) -> None:
        """Acking a lease that expired and went to another consumer fails where detectable.

        Where the backend cannot tell (Cloudflare accepts late acks), the late
        ack is accepted and the message is gone: the service's journal, not the
        queue, keeps a run from being worked twice.
        """
        slow, fast = queue_factory(self.MIN_VISIBILITY), queue_factory(LONG_VISIBILITY)
        slow.send(b"late")
        [stale] = receive_until(slow, 1, timeout=self.REDELIVERY_SLACK + 3)
        [fresh] = receive_until(fast, 1, timeout=self.MIN_VISIBILITY + self.REDELIVERY_SLACK)
        if not self.DETECTS_LATE_ACK:
            slow.ack(stale)
            assert [] == fast.receive(1, wait_seconds=0)
            return

        with pytest.raises(LeaseExpired):
            slow.ack(stale)
        with pytest.raises(LeaseExpired):
            slow.retry(stale, 0)
        with pytest.raises(LeaseExpired):
            slow.dead_letter(stale, "too late")
        fast.ack(fresh)

        assert [] == fast.receive(1, wait_seconds=0)

    def test_retry_with_delay_hides_the_message(self, queue: MessageQueue) -> None:
        """``retry`` with a delay hides the message for that long, then it returns."""
        queue.send(b"again")
        [first] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)
        queue.retry(first, self.MIN_VISIBILITY)
        hidden = queue.receive(1, wait_seconds=0)
        self.assert_stats(queue, ready=0, in_flight=0, delayed=1, dead=0)

        [second] = receive_until(queue, 1, timeout=self.MIN_VISIBILITY + self.REDELIVERY_SLACK)

        assert [] == hidden
        assert b"again" == second.body
        assert 2 == second.attempts

    def test_retry_without_delay_comes_back(self, queue: MessageQueue) -> None:
        """``retry`` with no delay makes the message receivable again."""
        queue.send(b"now")
        [first] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)
        queue.retry(first, 0)

        [second] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)

        assert b"now" == second.body
        assert 2 == second.attempts

    def test_dead_letter(self, queue: MessageQueue) -> None:
        """A dead-lettered message is not received again and counts as dead."""
        queue.send(b"poison")
        queue.send(b"good")
        got = receive_until(queue, 2, timeout=self.REDELIVERY_SLACK + 3)
        by_body = {d.body: d for d in got}
        queue.dead_letter(by_body[b"poison"], "not JSON")
        queue.ack(by_body[b"good"])

        again = queue.receive(1, wait_seconds=0.2)

        assert [] == again
        self.assert_stats(queue, ready=0, in_flight=0, delayed=0, dead=1)

    def test_dead_letter_box(self, queue: MessageQueue) -> None:
        """Dead letters keep their reason and can be replayed and purged (where kept locally)."""
        if not self.DEAD_LETTER_BOX:
            assert not hasattr(queue, "list_dead")
            return
        box: Any = queue
        for body in (b"d1", b"d2", b"d3"):
            queue.send(body)
        for d in receive_until(queue, 3, timeout=self.REDELIVERY_SLACK + 3):
            queue.dead_letter(d, f"reason {d.body.decode()}")

        dead = box.list_dead()
        replayed = box.replay_dead(next(x.queue_message_id for x in dead if x.body == b"d2"))
        missing = box.replay_dead("no-such-message")
        [back] = receive_until(queue, 1, timeout=self.REDELIVERY_SLACK + 3)
        purged = box.purge_dead()

        assert {(b"d1", "reason d1"), (b"d2", "reason d2"), (b"d3", "reason d3")} == {
            (x.body, x.reason) for x in dead
        }
        assert all(x.attempts == 1 for x in dead)
        assert replayed is True
        assert missing is False
        assert b"d2" == back.body
        assert 2 == purged
        assert [] == box.list_dead()

    def test_extend_keeps_the_lease(self, queue_factory: QueueFactory) -> None:
        """``extend`` keeps a lease alive past the original visibility timeout."""
        holder, other = queue_factory(self.MIN_VISIBILITY), queue_factory(LONG_VISIBILITY)
        holder.send(b"long run")
        [delivery] = receive_until(holder, 1, timeout=self.REDELIVERY_SLACK + 3)
        holder.extend(delivery, self.MIN_VISIBILITY * 4 + self.REDELIVERY_SLACK * 2)
        if not self.SUPPORTS_EXTEND:
            return
        time.sleep(self.MIN_VISIBILITY * 1.5)

        stolen = other.receive(1, wait_seconds=self.REDELIVERY_SLACK)
        holder.ack(delivery)

        assert [] == stolen

    def test_stats_counts(self, queue: MessageQueue) -> None:
        """``stats`` counts ready, in-flight, delayed and dead messages."""
        for body in (b"a", b"b", b"c", b"d"):
            queue.send(body)
        got = receive_until(queue, 3, timeout=self.REDELIVERY_SLACK + 3, max_messages=1)
        queue.dead_letter(got[0], "bad")
        queue.retry(got[1], 600)

        self.assert_stats(queue, ready=1, in_flight=1, delayed=1, dead=1)

    # --- concurrency ----------------------------------------------------------

    def test_competing_consumers_get_each_message_once(self, queue_factory: QueueFactory) -> None:
        """Consumers hammering ``receive`` never share a message; all get acked once."""
        producer = queue_factory(LONG_VISIBILITY)
        expected = [f"job-{i:03d}".encode() for i in range(60)]
        for body in expected:
            producer.send(body)
        consumers = [queue_factory(LONG_VISIBILITY) for _ in range(4)]
        seen: list[bytes] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        deadline = time.monotonic() + 30

        def work(consumer: MessageQueue) -> None:
            try:
                while time.monotonic() < deadline:
                    with lock:
                        if len(seen) >= len(expected):
                            return
                    for d in consumer.receive(min(5, self.MAX_BATCH), wait_seconds=0.2):
                        consumer.ack(d)
                        with lock:
                            seen.append(d.body)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in consumers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=40)

        assert [] == errors
        assert sorted(expected) == sorted(seen)

    # --- model-based ------------------------------------------------------------

    def test_state_machine(self, queue_factory: QueueFactory) -> None:
        """Random send/receive/ack/retry/dead-letter sequences match a list model."""
        contract = self

        class QueueMachine(RuleBasedStateMachine):
            held = Bundle("held")

            def __init__(self) -> None:
                super().__init__()
                self.queue = queue_factory(LONG_VISIBILITY)
                self.dead_base = self.queue.stats().dead or 0
                self.ready: list[bytes] = []
                self.in_flight: dict[bytes, Delivery] = {}
                self.dead = 0
                self.counter = 0
                self.attempts: dict[bytes, int] = {}

            @rule()
            def send(self) -> None:
                self.counter += 1
                body = f"sm-{self.counter}".encode()
                self.queue.send(body)
                self.ready.append(body)
                self.attempts[body] = 0

            @rule(target=held, n=st.integers(1, 3))
            def receive(self, n: int) -> Any:
                wanted = min(n, len(self.ready))
                if wanted:
                    got = receive_until(
                        self.queue, wanted, timeout=contract.REDELIVERY_SLACK + 2, max_messages=n
                    )
                else:
                    got = self.queue.receive(n, wait_seconds=0)
                assert wanted == len(got)
                for d in got:
                    assert d.body in self.ready
                    self.ready.remove(d.body)
                    self.in_flight[d.body] = d
                    self.attempts[d.body] += 1
                    assert self.attempts[d.body] == d.attempts
                return multiple(*got)

            @rule(d=consumes(held))
            def ack(self, d: Delivery) -> None:
                self.queue.ack(d)
                del self.in_flight[d.body]

            @rule(d=consumes(held))
            def retry(self, d: Delivery) -> None:
                self.queue.retry(d, 0)
                del self.in_flight[d.body]
                self.ready.append(d.body)

            @rule(d=consumes(held))
            def dead_letter(self, d: Delivery) -> None:
                self.queue.dead_letter(d, "model")
                del self.in_flight[d.body]
                self.dead += 1

            @invariant()
            def stats_match(self) -> None:
                stats = self.queue.stats()
                expected = {
                    "ready": len(self.ready),
                    "in_flight": len(self.in_flight),
                    "delayed": 0,
                    "dead": self.dead_base + self.dead,
                }
                for name in contract.STATS_REPORTED:
                    assert expected[name] == getattr(stats, name)

            def teardown(self) -> None:
                # Leave the shared queue without live messages for the next example.
                for d in self.in_flight.values():
                    self.queue.ack(d)
                for d in receive_until(self.queue, len(self.ready), timeout=5.0):
                    self.queue.ack(d)

        run_state_machine_as_test(
            QueueMachine,
            settings=settings(
                max_examples=10,
                stateful_step_count=15,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
