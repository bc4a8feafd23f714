"""Outages of the services around the daemon: Redis restarted (once gracefully, once killed), S3
gone for 30 s from the moment a Gold is published, the webhook receiver down longer than every
retry budget. Each checks its invariants once the service is back."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import redis

from tests.faults.report import FaultReport
from tests.faults.support import (
    Daemon,
    check,
    daemon_env,
    gold_writes,
    gold_writes_answered,
    gold_writes_logged_by,
    golds_in_bucket,
    golds_on_disk,
    jobs,
    journals_on_disk,
    wait_for,
    write_watchlist,
)
from tests.support.redis_server import ThrowawayRedis, own_redis, redis_prefix, redis_url  # noqa: F401
from tests.support.s3_server import S3Server, s3_server  # noqa: F401
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver  # noqa: F401

pytestmark = [pytest.mark.faults, pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

LIST = "cursor:queue:ingest-queue"


def _s3(server: S3Server) -> Any:
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def _queue_left(client: redis.Redis, key: str) -> tuple[int, int, int]:
    return (client.llen(key), client.zcard(key + ":inflight"), client.zcard(key + ":delayed"))


def test_redis_restarted_mid_run_loses_nothing(
    tmp_path: Path,
    own_redis: ThrowawayRedis,
    site_url: str,
    webhook_receiver: WebhookReceiver,
    fault_report: FaultReport,
) -> None:
    """Invariant: after a restart and a crash (SIGKILL) of Redis, every run once, all acked.

    The server runs with ``appendonly yes`` and ``appendfsync always``: every
    write it answered is on disk before the answer, so a crash loses none
    (docs/reliability.md advises the same).
    """
    direct = redis.Redis(port=own_redis.port)
    config = {str(k): str(v) for k, v in direct.config_get("append*").items()}
    assert ("yes", "always") == (config["appendonly"], config["appendfsync"])
    specs = jobs("restart", 6)
    for spec in specs:
        direct.rpush(LIST, spec.body)
    direct.close()
    env = daemon_env(
        tmp_path,
        write_watchlist(tmp_path / "watchlist.json", site_url, slow_seconds=1.5),
        webhook_receiver,
        QUEUE_BACKEND="redis",
        STORAGE_BACKEND="file",
        REDIS_URL=own_redis.url,
        POLL_SECONDS="0.5",
        LEASE_SECONDS="6",
        NOTIFY_SCAN_SECONDS="0.5",
        NOTIFY_RETRY_BASE_SECONDS="1",
    )
    daemon = Daemon(env, tmp_path, "restart")
    restarts: list[str] = []
    for wanted, how in ((1, "SIGTERM"), (3, "SIGKILL")):  # mid-run: after one, then three, runs
        assert wait_for(lambda n=wanted: len(journals_on_disk(tmp_path / "store")) > n, timeout=60)
        if how == "SIGTERM":
            own_redis.stop()  # an operator's restart: it flushes and exits
        else:
            own_redis.kill()  # a crash: whatever it answered must be on disk already
        time.sleep(3)
        own_redis.start()
        restarts.append(how)
    client = redis.Redis(port=own_redis.port)
    drained = wait_for(
        lambda: (
            _queue_left(client, LIST) == (0, 0, 0) and len(webhook_receiver.requests) >= len(specs)
        ),
        timeout=90,
    )
    alive = daemon.alive()
    code = daemon.stop()
    dead = client.llen(LIST + ":dead")
    client.close()
    writes = gold_writes(gold_writes_logged_by([daemon]))
    checked = check(specs, golds_on_disk(tmp_path / "store"), webhook_receiver, writes)
    fault_report.record(
        "redis_restart",
        invariant="every run once, all messages acked, nothing dead, the daemon alive",
        faults_injected=len(restarts),
        restarts=restarts,
        dead_lettered_by_infrastructure_faults=dead,
        **checked.figures(),
    )

    assert drained, daemon.tail()
    assert (True, 0) == (alive, code)
    assert daemon.events("stamina.retry_scheduled")  # the restarts were felt
    assert (0, 0, 0) == (checked.lost, checked.doubled, dead), checked
    assert () == checked.golds_never_seen_written
    assert () == checked.missing_notifications
    assert checked.webhook_ids_stable


def test_s3_gone_for_30_seconds_mid_run_is_waited_out(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    s3_server: S3Server,
    site_url: str,
    webhook_receiver: WebhookReceiver,
    fault_report: FaultReport,
) -> None:
    """Invariant: S3 refusing connections for 30 s from a Gold's PUT on dead-letters nothing; each
    run published once."""
    proxy = TcpProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    bucket = f"outage-{uuid.uuid4().hex[:10]}"
    queue_name = f"{redis_prefix}:ingest-queue"
    key = f"cursor:queue:{queue_name}"
    specs = jobs("s3-outage", 3)
    client = redis.Redis.from_url(redis_url)
    for spec in specs:
        client.rpush(key, spec.body)
    env = daemon_env(
        tmp_path,
        write_watchlist(tmp_path / "watchlist.json", site_url, slow_seconds=2),
        webhook_receiver,
        MODE="standalone",
        REDIS_URL=redis_url,
        QUEUE_NAME=queue_name,
        MINIO_ENDPOINT=proxy.url_host,
        MINIO_ACCESS_KEY=s3_server.access_key,
        MINIO_SECRET_KEY=s3_server.secret_key,
        GOLD_BUCKET=bucket,
        POLL_SECONDS="0.5",
        LEASE_SECONDS="10",
        MAX_ATTEMPTS="8",
        RETRY_BASE_SECONDS="2",
        RETRY_MAX_SECONDS="8",
        NOTIFY_SCAN_SECONDS="0.5",
        NOTIFY_RETRY_BASE_SECONDS="1",
        NOTIFY_RETRY_MAX_SECONDS="3",
    )
    s3 = _s3(s3_server)
    # the first Gold's PUT takes S3 down: that publish meets the outage, not reaching S3
    publishing = proxy.down_on_request(f"PUT /{bucket}/gold/".encode())
    daemon = Daemon(env, tmp_path, "s3-outage")

    assert publishing.wait(60), daemon.tail()
    down_at = time.monotonic()
    time.sleep(30)
    proxy.up()
    outage = time.monotonic() - down_at
    drained = wait_for(
        lambda: (
            _queue_left(client, key) == (0, 0, 0) and len(webhook_receiver.requests) >= len(specs)
        ),
        timeout=120,
    )
    alive = daemon.alive()
    code = daemon.stop()
    dead = client.llen(key + ":dead")
    writes = gold_writes(gold_writes_logged_by([daemon]), gold_writes_answered(proxy.exchanges, bucket))
    checked = check(specs, golds_in_bucket(s3, bucket), webhook_receiver, writes)
    proxy.stop()
    fault_report.record(
        "s3_outage_30s",
        invariant="nothing dead-lettered; every run published once and notified",
        faults_injected=1 + proxy.cuts,
        outage_seconds=round(outage, 1),
        outage_started_by="the first Gold's PUT",
        retries_logged=len(daemon.events("run.retry_scheduled")),
        dead_lettered_by_infrastructure_faults=dead,
        **checked.figures(),
    )

    assert drained, daemon.tail()
    assert (True, 0) == (alive, code)
    assert daemon.events("run.retry_scheduled")  # the outage was felt
    assert (0, 0, 0) == (checked.lost, checked.doubled, dead), checked
    assert () == checked.golds_never_seen_written
    assert () == checked.missing_notifications
    assert checked.webhook_ids_stable
    assert [] == [r for r in webhook_receiver.requests if r.path.endswith("/processing-error")]


def test_webhook_receiver_down_past_every_retry_budget_gets_every_notification(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    s3_server: S3Server,
    site_url: str,
    webhook_receiver: WebhookReceiver,
    fault_report: FaultReport,
) -> None:
    """Invariant: every Gold published and acked while the receiver is down; each notified later,
    one stable webhook-id, no processing_error, nothing dead-lettered."""
    receiver_port = int(webhook_receiver.url.rsplit(":", 1)[1])
    proxy = TcpProxy(receiver_port)
    proxy.down()
    bucket = f"hooks-{uuid.uuid4().hex[:10]}"
    queue_name = f"{redis_prefix}:ingest-queue"
    key = f"cursor:queue:{queue_name}"
    specs = jobs("hook-outage", 3)
    client = redis.Redis.from_url(redis_url)
    for spec in specs:
        client.rpush(key, spec.body)
    env = daemon_env(
        tmp_path,
        write_watchlist(tmp_path / "watchlist.json", site_url),
        webhook_receiver,
        MODE="standalone",
        REDIS_URL=redis_url,
        QUEUE_NAME=queue_name,
        MINIO_ENDPOINT=s3_server.endpoint.removeprefix("http://"),
        MINIO_ACCESS_KEY=s3_server.access_key,
        MINIO_SECRET_KEY=s3_server.secret_key,
        GOLD_BUCKET=bucket,
        HOOK_ENDPOINT=f"http://{proxy.url_host}",
        HOOK_ATTEMPTS="2",
        MAX_ATTEMPTS="2",
        RETRY_BASE_SECONDS="1",
        POLL_SECONDS="0.5",
        NOTIFY_SCAN_SECONDS="0.5",
        NOTIFY_RETRY_BASE_SECONDS="1",
        NOTIFY_RETRY_MAX_SECONDS="3",
    )
    s3 = _s3(s3_server)
    daemon = Daemon(env, tmp_path, "hook-outage")
    started = time.monotonic()
    published_while_down = wait_for(
        lambda: (
            _queue_left(client, key) == (0, 0, 0)
            and sum(golds_in_bucket(s3, bucket).values()) == len(specs)
        ),
        timeout=60,
    )
    time.sleep(max(0.0, 20 - (time.monotonic() - started)))  # down > MAX_ATTEMPTS x HOOK_ATTEMPTS
    down_for = time.monotonic() - started
    requests_while_down = len(webhook_receiver.requests)
    proxy.up()
    back_at = time.monotonic()
    delivered = wait_for(lambda: len(webhook_receiver.requests) >= len(specs), timeout=60)
    delivered_after = time.monotonic() - back_at
    time.sleep(1)
    alive = daemon.alive()
    code = daemon.stop()
    dead = client.llen(key + ":dead")
    writes = gold_writes(gold_writes_logged_by([daemon]))
    checked = check(specs, golds_in_bucket(s3, bucket), webhook_receiver, writes)
    attempts = []
    for item in s3.list_objects_v2(Bucket=bucket, Prefix="outbox/").get("Contents", []):
        entry = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        attempts.append(int(entry["attempts"]))
    proxy.stop()
    failed = daemon.events("notification.retry_scheduled")
    # attempts refused by the receiver's absence; the others failed fast on the open breaker
    refused = [e for e in failed if "circuit open" not in str(e.get("error"))]
    fault_report.record(
        "webhook_outage",
        invariant=(
            "published and acked while the receiver is down; each run notified once back,"
            " one stable webhook-id; no processing_error; nothing dead-lettered"
        ),
        faults_injected=len(refused),
        failed_fast_by_the_open_breaker=len(failed) - len(refused),
        receiver_down_seconds=round(down_for, 1),
        delivered_seconds_after_the_receiver_came_back=round(delivered_after, 1),
        dead_lettered_by_infrastructure_faults=dead,
        **checked.figures(),
    )

    assert published_while_down, daemon.tail()
    assert 0 == requests_while_down
    assert delivered, daemon.tail()
    assert (True, 0) == (alive, code)
    assert (0, 0, 0) == (checked.lost, checked.doubled, dead), checked
    assert () == checked.golds_never_seen_written
    assert () == checked.missing_notifications
    assert checked.webhook_ids_stable
    assert all(a >= 2 for a in attempts)
    assert [] == [r for r in webhook_receiver.requests if r.path.endswith("/processing-error")]
