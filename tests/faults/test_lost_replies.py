"""Lost replies: a proxy in front of a real Redis lets every Nth command run, then cuts the connection.

The client never learns whether the command ran, retries it, and the Lua
scripts must recognise their own earlier effect.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
import stamina

from atlasreg_cursor.adapters.standalone.redis_queue import RETRY_ATTEMPTS, RedisListQueue
from atlasreg_cursor.domain.errors import LeaseExpired, QueueUnavailable
from atlasreg_cursor.ports.queue import Delivery
from tests.faults.report import FaultReport
from tests.faults.support import (
    Daemon,
    check,
    daemon_env,
    gold_writes,
    gold_writes_logged_by,
    golds_on_disk,
    jobs,
    wait_for,
    write_watchlist,
)
from tests.support.redis_server import ThrowawayRedis, own_redis  # noqa: F401
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401

pytestmark = [pytest.mark.faults, pytest.mark.redis, pytest.mark.slow]

LIST = "cursor:queue:ingest-queue"


def test_28_messages_with_every_9th_reply_lost_none_lost_none_doubled(
    own_redis: ThrowawayRedis, fault_report: FaultReport
) -> None:
    """Invariant: every message acked exactly once, no id names two bodies, nothing left over."""
    stamina.set_testing(True, attempts=RETRY_ATTEMPTS)  # the adapter's own budget, not 3
    proxy = TcpProxy(own_redis.port, redis=True)
    url = f"redis://{proxy.url_host}/0"
    direct = redis.Redis(port=own_redis.port)
    producer = RedisListQueue(url, visibility_timeout=5, poll_cap=0.3)
    bodies = [f'{{"type":"reprocess","date":"2026-11-24","n":{i}}}'.encode() for i in range(28)]
    proxy.drop_reply_every(9)
    for i, body in enumerate(bodies):
        if i % 2:
            direct.rpush(LIST, body)  # a producer of the seed, straight to the server
        else:
            producer.send(body)
    lock = threading.Lock()
    acked: dict[bytes, int] = {}
    bodies_by_id: dict[str, set[bytes]] = {}
    after_ack: list[bytes] = []
    uncertain: set[bytes] = set()  # the ack raised: it may or may not have landed
    unavailable = [0]

    watcher = redis.Redis(port=own_redis.port)

    def empty() -> bool:  # nothing waiting, leased or delayed, seen past the proxy
        keys = (LIST + ":inflight", LIST + ":delayed")
        return watcher.llen(LIST) == 0 and all(watcher.zcard(k) == 0 for k in keys)

    def settle(queue: RedisListQueue, delivery: Delivery) -> None:
        queue.extend(delivery, 5)
        if delivery.attempts == 1 and bodies.index(delivery.body) % 5 == 0:
            queue.retry(delivery, 0)
            return
        try:
            queue.ack(delivery)
        except QueueUnavailable:
            with lock:  # it may or may not have landed; if not, it comes back
                uncertain.add(delivery.body)
            raise
        with lock:
            acked[delivery.body] = acked.get(delivery.body, 0) + 1

    def consume() -> None:
        queue = RedisListQueue(url, visibility_timeout=5, poll_cap=0.3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                accounted = len(acked) + len(uncertain - set(acked)) == len(bodies)
            if accounted and empty():
                break
            try:
                for delivery in queue.receive(3, wait_seconds=0.5):
                    with lock:
                        bodies_by_id.setdefault(delivery.queue_message_id, set()).add(delivery.body)
                        if delivery.body in acked:
                            after_ack.append(delivery.body)
                    settle(queue, delivery)
            except QueueUnavailable:
                with lock:
                    unavailable[0] += 1
            except LeaseExpired:
                continue
        queue.close()

    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for thread in consumers:
        thread.start()
    for thread in consumers:
        thread.join(timeout=90)
    watcher.close()
    left = (
        direct.llen(LIST),
        direct.zcard(LIST + ":inflight"),
        direct.zcard(LIST + ":delayed"),
        direct.llen(LIST + ":dead"),
    )
    producer.close()
    direct.close()
    proxy.stop()
    # an uncertain ack that landed took its message away for good: acked, not lost
    lost = len([b for b in bodies if b not in acked and b not in uncertain])
    doubled = sum(n - 1 for n in acked.values()) + len(after_ack)
    fault_report.record(
        "lost_replies_queue",
        invariant="every message acked exactly once; no id names two bodies; nothing left over",
        faults_injected=proxy.dropped,
        messages=len(bodies),
        lost=lost,
        doubled=doubled,
        queue_unavailable_raised=unavailable[0],
    )

    assert proxy.dropped >= 8
    assert (0, 0) == (lost, doubled)
    assert [] == [mid for mid, seen in bodies_by_id.items() if len(seen) > 1]
    assert (0, 0, 0, 0) == left


def test_a_daemon_behind_a_lossy_redis_publishes_each_run_once(
    tmp_path: Path,
    own_redis: ThrowawayRedis,
    site_url: str,
    webhook_receiver: WebhookReceiver,
    fault_report: FaultReport,
) -> None:
    """Invariant: one Gold and one stable notification per run, the queue drained, nothing dead."""
    proxy = TcpProxy(own_redis.port, redis=True)
    direct = redis.Redis(port=own_redis.port)
    specs = jobs("lossy", 8)
    for spec in specs:
        direct.rpush(LIST, spec.body)
    env = daemon_env(
        tmp_path,
        write_watchlist(tmp_path / "watchlist.json", site_url),
        webhook_receiver,
        QUEUE_BACKEND="redis",
        STORAGE_BACKEND="file",
        REDIS_URL=f"redis://{proxy.url_host}/0",
        POLL_SECONDS="0.5",
        NOTIFY_SCAN_SECONDS="0.5",
        NOTIFY_RETRY_BASE_SECONDS="1",
    )
    proxy.drop_reply_every(9)
    daemon = Daemon(env, tmp_path, "lossy")
    drained = wait_for(
        lambda: (
            direct.llen(LIST) == 0
            and direct.zcard(LIST + ":inflight") == 0
            and direct.zcard(LIST + ":delayed") == 0
            and len(webhook_receiver.requests) >= len(specs)
        ),
        timeout=90,
    )
    alive = daemon.alive()
    code = daemon.stop()
    dead = direct.llen(LIST + ":dead")
    direct.close()
    proxy.stop()
    writes = gold_writes(gold_writes_logged_by([daemon]))
    checked = check(specs, golds_on_disk(tmp_path / "store"), webhook_receiver, writes)
    fault_report.record(
        "lost_replies_daemon",
        invariant="one Gold and one stable notification per run; queue drained; nothing dead",
        faults_injected=proxy.dropped,
        dead_lettered_by_infrastructure_faults=dead,
        **checked.figures(),
    )

    assert drained, daemon.tail()
    assert alive
    assert 0 == code
    assert proxy.dropped >= 5
    assert (0, 0, 0) == (checked.lost, checked.doubled, dead), checked
    assert () == checked.golds_never_seen_written
    assert () == checked.missing_notifications
    assert checked.webhook_ids_stable
