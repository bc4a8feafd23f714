"""What only the Redis queue promises: the seed's list layout, processes, reconnects.

Tests that break connections or restart Redis use a throwaway ``redis-server``
of their own on a free loopback port (append-only file on, fsync always),
never the shared server.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import attrs
import pytest
import redis

from atlasreg_cursor.adapters.standalone._scripts import QueueScripts, script_source
from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue
from atlasreg_cursor.domain.errors import (
    LeaseExpired,
    QueueConfigurationError,
    QueueUnavailable,
)
from atlasreg_cursor.ports.queue import Delivery
from tests.support.redis_server import (  # noqa: F401
    ThrowawayRedis,
    own_redis,
    redis_prefix,
    redis_url,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.redis

SEED_MESSAGE = {
    "type": "start_daily_ingest",
    "date": "2026-11-24",
    "payload": {"sources": ["aneel_news"]},
    "timestamp": "2026-11-24T06:00:00Z",
    "message_id": "8f0c2d1e",
}


def take(queue: RedisListQueue, count: int, *, timeout: float = 5.0) -> list[Delivery]:
    """Receive until *count* deliveries or *timeout* seconds."""
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out += queue.receive(count - len(out), wait_seconds=0.5)
    return out


@pytest.fixture
def names(redis_prefix: str) -> tuple[str, str]:
    """``(key_prefix, list_key)`` shaped like ``cursor:queue:ingest-queue``."""
    key_prefix = f"{redis_prefix}:cursor:queue:"
    return key_prefix, f"{key_prefix}ingest-queue"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client, as AtlasReg Core uses."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def queue(redis_url: str, names: tuple[str, str]) -> Iterator[RedisListQueue]:
    """The adapter on the test's list."""
    made = RedisListQueue(redis_url, key_prefix=names[0], visibility_timeout=60, poll_cap=0.5)
    yield made
    made.close()


# --- the scripts -------------------------------------------------------------


@pytest.mark.parametrize("name", [field.name for field in attrs.fields(QueueScripts)])
def test_each_script_ships_with_a_header_of_its_keys_args_and_reply(name: str) -> None:
    """Every script is package data that says what KEYS and ARGV it takes and returns."""
    source = script_source(name)
    header = source[source.index(f"-- {name}:") :].split("\n-- Returns:")[0]

    assert "\n-- KEYS:" in header
    assert "\n-- ARGV:" in header
    assert script_source(name) is source


# --- the seed's layout --------------------------------------------------------


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_producer_rpush_is_received_byte_for_byte(
    raw: redis.Redis, queue: RedisListQueue, names: tuple[str, str], ensure_ascii: bool
) -> None:
    """A message Core RPUSHes with redis-py arrives with exactly its bytes."""
    message = dict(SEED_MESSAGE, payload={"nota": "transmissão"})
    text = json.dumps(message, ensure_ascii=ensure_ascii)
    raw.rpush(names[1], text)

    [delivery] = take(queue, 1)

    assert text.encode("utf-8") == delivery.body
    assert 1 == delivery.attempts
    assert delivery.identity_from_queue is False


def test_llen_means_waiting(
    raw: redis.Redis, queue: RedisListQueue, names: tuple[str, str]
) -> None:
    """LLEN of the list counts waiting messages through receive, ack and retry."""
    bodies = [json.dumps(dict(SEED_MESSAGE, message_id=f"m{i}")).encode() for i in range(3)]
    raw.rpush(names[1], *bodies)
    before = raw.llen(names[1])

    [first] = take(queue, 1)
    while_leased = raw.llen(names[1])
    untouched = raw.lrange(names[1], 0, -1)
    queue.retry(first, 0)
    after_retry = raw.llen(names[1])
    [again] = take(queue, 1)
    queue.ack(again)
    after_ack = raw.llen(names[1])

    assert 3 == before
    assert 2 == while_leased == queue.stats().ready
    assert bodies[1:] == untouched
    assert 3 == after_retry
    assert first.queue_message_id == again.queue_message_id
    assert 2 == again.attempts
    assert 2 == after_ack


def test_send_pushes_the_plain_body(
    raw: redis.Redis, queue: RedisListQueue, names: tuple[str, str]
) -> None:
    """``send`` RPUSHes the body unchanged, like a producer, and its id comes back."""
    body = json.dumps(SEED_MESSAGE).encode()
    raw.rpush(names[1], body)

    message_id = queue.send(body)
    listed = raw.lrange(names[1], 0, -1)
    got = take(queue, 2)

    assert [body, body] == listed
    assert message_id in {d.queue_message_id for d in got}
    assert 2 == len({d.queue_message_id for d in got})


def test_dead_letter_record_format(
    raw: redis.Redis, queue: RedisListQueue, names: tuple[str, str]
) -> None:
    """Dead letters are JSON on ``<list>:dead``; a non-UTF-8 body is base64."""
    raw.rpush(names[1], b'{"type": "bogus"}', b"\xff\xfe")
    got = {d.body: d for d in take(queue, 2)}
    queue.dead_letter(got[b'{"type": "bogus"}'], "unknown type")
    queue.dead_letter(got[b"\xff\xfe"], "not JSON")

    records = [json.loads(x) for x in raw.lrange(f"{names[1]}:dead", 0, -1)]
    listed = queue.list_dead()

    assert {"body", "reason", "attempts", "message_id", "dead_at"} <= set(records[0])
    assert ('{"type": "bogus"}', "unknown type", 1) == (
        records[0]["body"],
        records[0]["reason"],
        records[0]["attempts"],
    )
    assert base64.b64encode(b"\xff\xfe").decode() == records[1]["body"]
    assert "base64" == records[1]["body_encoding"]
    assert [b'{"type": "bogus"}', b"\xff\xfe"] == [x.body for x in listed]
    assert all(x.dead_at is not None for x in listed)


def test_expired_message_goes_back_to_the_head(
    raw: redis.Redis,
    redis_url: str,
    names: tuple[str, str],
) -> None:
    """An expired lease puts the message first in line, keeping id and attempts."""
    short = RedisListQueue(redis_url, key_prefix=names[0], visibility_timeout=0.3, poll_cap=0.2)
    raw.rpush(names[1], b"first", b"second")
    [lost] = short.receive(1)
    time.sleep(0.5)

    [again] = short.receive(1)
    short.close()

    assert b"first" == again.body
    assert lost.queue_message_id == again.queue_message_id
    assert 2 == again.attempts


def test_decoding_client_refused(redis_url: str) -> None:
    """A client that decodes responses would corrupt bodies, so it is refused."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(QueueConfigurationError):
            RedisListQueue(client)
    finally:
        client.close()


def test_client_timeout_shorter_than_a_block_refused(redis_url: str) -> None:
    """A client whose reads time out before a server-side block ends is refused."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5)
    try:
        with pytest.raises(QueueConfigurationError):
            RedisListQueue(client, poll_cap=1.0)
    finally:
        client.close()


def test_a_lease_is_released_once(queue: RedisListQueue) -> None:
    """After ``retry`` the old lease can neither retry, ack nor dead-letter again."""
    queue.send(b"once")
    [delivery] = queue.receive(1)
    queue.retry(delivery, 30)

    for again in (
        lambda: queue.retry(delivery, 0),
        lambda: queue.ack(delivery),
        lambda: queue.dead_letter(delivery, "late"),
        lambda: queue.extend(delivery, 10),
    ):
        with pytest.raises(LeaseExpired):
            again()
    stats = queue.stats()

    assert (0, 0, 1, 0) == (stats.ready, stats.in_flight, stats.delayed, stats.dead)


def test_wrong_key_type_is_a_configuration_error(
    raw: redis.Redis, queue: RedisListQueue, names: tuple[str, str]
) -> None:
    """A list key holding something else is reported, not retried forever."""
    raw.set(names[1], "not a list")

    with pytest.raises(QueueConfigurationError):
        queue.receive(1)


def test_delayed_retry_wakes_a_blocked_receive(
    redis_url: str,
    names: tuple[str, str],
) -> None:
    """A long ``poll_cap`` still wakes when the next delayed message is due."""
    queue = RedisListQueue(redis_url, key_prefix=names[0], visibility_timeout=60, poll_cap=10)
    queue.send(b"soon")
    [first] = queue.receive(1)
    queue.retry(first, 0.5)

    start = time.monotonic()
    got = queue.receive(1, wait_seconds=5)
    elapsed = time.monotonic() - start
    queue.close()

    assert [b"soon"] == [d.body for d in got]
    assert 0.3 <= elapsed < 2.0


# --- several processes ----------------------------------------------------------

CONSUMER = r"""
import json, sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue
queue = RedisListQueue(sys.argv[1], key_prefix=sys.argv[2], visibility_timeout=60, poll_cap=0.2)
print("ready", flush=True)
sys.stdin.readline()
deadline, empty = time.monotonic() + 30, 0
while time.monotonic() < deadline and empty < 3:
    got = queue.receive(3, wait_seconds=0.2)
    empty = 0 if got else empty + 1
    for d in got:
        time.sleep(0.002)
        queue.ack(d)
        print(json.dumps({"body": d.body.decode(), "id": d.queue_message_id}), flush=True)
queue.close()
"""


def test_two_processes_never_share_a_message(
    raw: redis.Redis,
    redis_url: str,
    names: tuple[str, str],
) -> None:
    """Two consumer processes drain one list; each message is taken exactly once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, redis_url, names[0]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert "ready" == proc.stdout.readline().strip()
        expected = [json.dumps(dict(SEED_MESSAGE, message_id=f"m{i:03d}")) for i in range(200)]
        raw.rpush(names[1], *expected)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    per_process = [[json.loads(line) for line in out.splitlines()] for out in outputs]
    bodies = [item["body"] for items in per_process for item in items]

    assert sorted(expected) == sorted(bodies)
    assert all(len(items) > 0 for items in per_process)
    assert 0 == raw.llen(names[1])


# --- a Redis of our own: dropped connections and restarts ---------------------------


def kill_clients(server: ThrowawayRedis) -> int:
    """CLIENT KILL TYPE normal on the throwaway server; return how many went."""
    admin = redis.Redis(port=server.port, socket_timeout=2)
    try:
        return int(admin.execute_command("CLIENT", "KILL", "TYPE", "normal"))
    finally:
        admin.close()


def test_dropped_connection_loses_nothing(own_redis: ThrowawayRedis) -> None:
    """Connections killed mid-run: the lease is still acked, a blocked receive recovers."""
    queue = RedisListQueue(own_redis.url, visibility_timeout=60, poll_cap=0.5)
    queue.send(b"held")
    [held] = queue.receive(1)
    killed_first = kill_clients(own_redis)
    queue.ack(held)

    got: list[Delivery] = []
    waiter = threading.Thread(target=lambda: got.extend(queue.receive(1, wait_seconds=5)))
    waiter.start()
    time.sleep(0.3)
    killed_second = kill_clients(own_redis)
    producer = redis.Redis(port=own_redis.port)
    producer.rpush("cursor:queue:ingest-queue", b"after the cut")
    producer.close()
    waiter.join(timeout=10)
    stats = queue.stats()
    queue.close()

    assert killed_first >= 1
    assert killed_second >= 1
    assert [b"after the cut"] == [d.body for d in got]
    assert (0, 1, 0) == (stats.ready, stats.in_flight, stats.dead)


def test_survives_a_redis_restart(own_redis: ThrowawayRedis) -> None:
    """Down: QueueUnavailable. Back: acked stays gone, un-acked comes back, nothing lost."""
    queue = RedisListQueue(own_redis.url, visibility_timeout=1.0, poll_cap=0.3)
    for body in (b"acked", b"leased", b"waiting"):
        queue.send(body)
    leased = {d.body: d for d in take(queue, 2)}
    queue.ack(leased[b"acked"])

    own_redis.kill()
    with pytest.raises(QueueUnavailable):
        queue.stats()
    with pytest.raises(QueueUnavailable):
        queue.receive(1, wait_seconds=0.2)
    own_redis.start()
    reconnected = queue.stats()
    later = RedisListQueue(own_redis.url, visibility_timeout=60, poll_cap=0.3)
    back = {d.body: d for d in take(later, 2, timeout=6)}
    for d in back.values():
        later.ack(d)
    extra = later.receive(1, wait_seconds=1.5)
    stats = later.stats()
    later.close()
    queue.close()

    assert (1, 1, 0) == (reconnected.ready, reconnected.in_flight, reconnected.dead)
    assert {b"leased", b"waiting"} == set(back)
    assert 2 == back[b"leased"].attempts
    assert leased[b"leased"].queue_message_id == back[b"leased"].queue_message_id
    assert 1 == back[b"waiting"].attempts
    assert [] == extra
    assert (0, 0, 0, 0) == (stats.ready, stats.in_flight, stats.delayed, stats.dead)


def test_receive_blocks_on_the_server_without_busy_polling(own_redis: ThrowawayRedis) -> None:
    """An idle two-second receive sends a handful of commands, not a stream."""
    queue = RedisListQueue(own_redis.url, visibility_timeout=60, poll_cap=1.0)
    admin = redis.Redis(port=own_redis.port)
    admin.config_resetstat()

    start = time.monotonic()
    got = queue.receive(1, wait_seconds=2.0)
    elapsed = time.monotonic() - start
    stats = admin.info("commandstats")
    admin.close()
    queue.close()
    top_level = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_blmove", "cmdstat_script|load"}
    calls = sum(int(v["calls"]) for k, v in stats.items() if k in top_level)

    assert [] == got
    assert 1.9 <= elapsed < 3.0
    assert calls <= 8, stats


# --- lost replies: the server ran the command, the answer never came ----------------


@pytest.fixture
def lossy(own_redis: ThrowawayRedis) -> Iterator[tuple[RedisListQueue, TcpProxy, redis.Redis]]:
    """The adapter behind a reply-dropping proxy, and a direct client to look with."""
    proxy = TcpProxy(own_redis.port, redis=True)
    queue = RedisListQueue(f"redis://{proxy.url_host}/0", visibility_timeout=60, poll_cap=0.3)
    direct = redis.Redis(port=own_redis.port)
    _load_every_script(queue)
    yield queue, proxy, direct
    queue.close()
    direct.close()
    proxy.stop()


def _load_every_script(queue: RedisListQueue) -> None:
    """Run each operation once, so the dropped command is the script itself, not NOSCRIPT."""
    queue.send(b"warm-up")
    [first] = queue.receive(1)
    queue.extend(first, 60)
    queue.retry(first, 0)
    [again] = queue.receive(1)
    queue.dead_letter(again, "warm-up")
    queue.replay_dead(again.queue_message_id)
    [last] = queue.receive(1)
    queue.ack(last)
    queue.purge_dead()
    assert (0, 0, 0, 0) == tuple(attrs.astuple(queue.stats()))


def test_receive_rerun_after_a_lost_reply_returns_the_same_lease(
    lossy: tuple[RedisListQueue, TcpProxy, redis.Redis],
) -> None:
    """A receive whose reply was lost leases nothing more and loses nothing."""
    queue, proxy, direct = lossy
    queue.send(b"first")
    queue.send(b"second")

    proxy.drop_next_reply()
    [got] = queue.receive(1)
    [other] = queue.receive(1)
    bodies = direct.hgetall("cursor:queue:ingest-queue:bodies")

    assert 1 == proxy.dropped
    assert (b"first", 1) == (got.body, got.attempts)
    assert b"second" == other.body
    assert {got.queue_message_id: b"first", other.queue_message_id: b"second"} == {
        k.decode(): v for k, v in bodies.items()
    }
    assert (0, 2) == (queue.stats().ready, queue.stats().in_flight)


@pytest.mark.parametrize("op", ["ack", "retry", "dead_letter", "extend"])
def test_settling_rerun_after_a_lost_reply_is_done_once(
    lossy: tuple[RedisListQueue, TcpProxy, redis.Redis], op: str
) -> None:
    """ack, retry, dead_letter and extend whose reply was lost succeed, with one effect."""
    queue, proxy, _ = lossy
    queue.send(b"job")
    [delivery] = queue.receive(1)

    proxy.drop_next_reply()
    if op == "ack":
        queue.ack(delivery)
    elif op == "retry":
        queue.retry(delivery, 0)
    elif op == "dead_letter":
        queue.dead_letter(delivery, "testing")
    else:
        queue.extend(delivery, 120)
    stats = queue.stats()

    assert 1 == proxy.dropped
    expected = {
        "ack": (0, 0, 0),
        "retry": (1, 0, 0),
        "dead_letter": (0, 0, 1),
        "extend": (0, 1, 0),
    }[op]
    assert expected == (stats.ready, stats.in_flight, stats.dead)
    if op == "retry":
        [again] = queue.receive(1)
        assert (delivery.queue_message_id, 2) == (again.queue_message_id, again.attempts)


def test_send_rerun_after_a_lost_reply_pushes_once(
    lossy: tuple[RedisListQueue, TcpProxy, redis.Redis],
) -> None:
    """A send whose reply was lost is not pushed twice."""
    queue, proxy, direct = lossy

    proxy.drop_next_reply()
    message_id = queue.send(b"once")
    [delivery] = queue.receive(1)

    assert 1 == proxy.dropped
    assert [b"once"] == [delivery.body]
    assert message_id == delivery.queue_message_id
    assert 0 == direct.llen("cursor:queue:ingest-queue")


def test_replay_rerun_after_a_lost_reply_reports_the_replay(
    lossy: tuple[RedisListQueue, TcpProxy, redis.Redis],
) -> None:
    """A dead-letter replay whose reply was lost still says it replayed, once."""
    queue, proxy, _ = lossy
    queue.send(b"dead")
    [delivery] = queue.receive(1)
    queue.dead_letter(delivery, "testing")

    proxy.drop_next_reply(skip=1)  # the LRANGE that finds it goes through; the script's reply not
    replayed = queue.replay_dead(delivery.queue_message_id)

    assert 1 == proxy.dropped
    assert replayed
    assert (1, 0) == (queue.stats().ready, queue.stats().dead)


def test_server_warnings_name_the_fix(own_redis: ThrowawayRedis) -> None:
    """No persistence or an evicting maxmemory-policy is reported with the setting to change."""
    queue = RedisListQueue(own_redis.url, visibility_timeout=60, poll_cap=0.3)
    admin = redis.Redis(port=own_redis.port)
    safe = queue.server_warnings()
    admin.config_set("appendonly", "no")
    admin.config_set("maxmemory-policy", "allkeys-lru")

    unsafe = queue.server_warnings()
    admin.close()
    queue.close()

    assert [] == safe
    assert 2 == len(unsafe)
    assert "no persistence" in unsafe[0]
    assert "appendonly yes" in unsafe[0]
    assert "allkeys-lru" in unsafe[1]
    assert "noeviction" in unsafe[1]
