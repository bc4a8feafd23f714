"""MODE=standalone end to end: the daemon on the real Redis and the S3 server."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest
import redis

from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import derive_run_id
from atlasreg_cursor.sample_site import start_sample_site
from tests.support.cli import cli_env, start_cli
from tests.support.redis_server import redis_prefix, redis_url  # noqa: F401
from tests.support.s3_server import S3Server, s3_server  # noqa: F401
from tests.support.services import wait_until
from tests.support.webhook_receiver import SECRETS, WebhookReceiver, webhook_receiver  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]


@pytest.fixture
def daemon_env(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    s3_server: S3Server,
    webhook_receiver: WebhookReceiver,
) -> Iterator[dict[str, str]]:
    """Settings of a standalone daemon over a fresh queue name, bucket and sample site."""
    with start_sample_site() as site:
        watchlist = tmp_path / "watchlist.json"
        watchlist.write_text(
            json.dumps(
                {
                    "sources": [
                        {
                            "id": "ons_ocorrencias",
                            "handler_id": "DOWNLOAD_CSV",
                            "url_feed": f"{site.base_url}/dados/ocorrencias.csv",
                            "csv": {
                                "delimiter": ";",
                                "fields": {"title": "descricao", "url": "link", "date": "data"},
                            },
                        }
                    ]
                }
            )
        )
        yield cli_env(
            {
                "MODE": "standalone",
                "EXECUTOR_BACKEND": "local",
                "REDIS_URL": redis_url,
                "QUEUE_NAME": f"{redis_prefix}:ingest-queue",
                "MINIO_ENDPOINT": s3_server.endpoint.removeprefix("http://"),
                "MINIO_ACCESS_KEY": s3_server.access_key,
                "MINIO_SECRET_KEY": s3_server.secret_key,
                "GOLD_BUCKET": f"gold-{uuid.uuid4().hex[:10]}",
                "WATCHLIST_FILE": str(watchlist),
                "HOOK_ENDPOINT": webhook_receiver.url,
                "HOOK_HMAC_SECRET": SECRETS[0],
                "HOOK_ATTEMPTS": "1",
                "RETRY_BASE_SECONDS": "1",
                "ALLOW_PRIVATE_SOURCES": "true",
                "CURSOR_HOME": str(tmp_path),
                "POLL_SECONDS": "0.5",
                "METRICS_PORT": "0",
                "NOTIFY_RETRY_BASE_SECONDS": "1",
                "NOTIFY_SCAN_SECONDS": "0.5",
            }
        )


def _s3(server: S3Server):
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def _stop(daemon: subprocess.Popen[str]) -> str:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
    return daemon.stdout.read() if daemon.stdout else ""


def test_seed_message_becomes_gold_webhook_and_poison_dead_letter(
    tmp_path: Path,
    daemon_env: dict[str, str],
    redis_url: str,
    s3_server: S3Server,
    webhook_receiver: WebhookReceiver,
) -> None:
    """A producer's RPUSH is ingested; a poison message lands in the dead list with a reason."""
    client = redis.Redis.from_url(redis_url)
    key = f"cursor:queue:{daemon_env['QUEUE_NAME']}"
    seed = b'{"type":"start_daily_ingest","date":"2026-11-24"}'
    client.rpush(key, seed)
    client.rpush(key, b"this is not json")
    run_id = derive_run_id(MessageType.START_DAILY_INGEST, hashlib.sha256(seed).hexdigest())
    gold_key = f"gold/2026-11-24/{run_id}.json"
    daemon = start_cli(["run"], env=daemon_env, cwd=tmp_path)
    try:
        assert wait_until(
            lambda: client.llen(key + ":dead") == 1 and len(webhook_receiver.requests) == 1,
            timeout=60,
        )
    finally:
        out = _stop(daemon)

    s3 = _s3(s3_server)
    obj = s3.get_object(Bucket=daemon_env["GOLD_BUCKET"], Key=gold_key)
    body = obj["Body"].read()
    (request,) = webhook_receiver.requests
    dead = json.loads(client.lrange(key + ":dead", 0, -1)[0])
    assert hashlib.sha256(body).hexdigest() == obj["Metadata"]["sha256"], out[-2000:]
    assert (run_id, "2026-11-24", "2.0") == (
        obj["Metadata"]["run_id"],
        obj["Metadata"]["date"],
        obj["Metadata"]["schema_version"],
    )
    assert (SECRETS[0],) == request.standard_verified
    assert request.legacy_verified
    assert gold_key == json.loads(request.body)["result"]["file_path"]
    assert 0 == client.llen(key)
    assert ("this is not json", True) == (
        dead["body"],
        dead["reason"].startswith("invalid message: body is not JSON"),
    )


def test_failed_webhook_is_retried_from_the_outbox_and_the_message_acked(
    tmp_path: Path,
    daemon_env: dict[str, str],
    redis_url: str,
    s3_server: S3Server,
    webhook_receiver: WebhookReceiver,
) -> None:
    """A webhook 503: the published run is acked; the outbox sends the same webhook-id again."""
    client = redis.Redis.from_url(redis_url)
    key = f"cursor:queue:{daemon_env['QUEUE_NAME']}"
    webhook_receiver.program(503)
    client.rpush(key, b'{"type":"reprocess","date":"2026-11-20","message_id":"retry-me"}')
    daemon = start_cli(["run"], env=daemon_env, cwd=tmp_path)
    try:
        assert wait_until(
            lambda: (
                len(webhook_receiver.requests) == 2
                and client.zcard(key + ":delayed") == 0
                and client.zcard(key + ":inflight") == 0
            ),
            timeout=60,
        )
    finally:
        out = _stop(daemon)

    first, second = webhook_receiver.requests
    run_id = derive_run_id(MessageType.REPROCESS, "retry-me")
    listed = _s3(s3_server).list_objects_v2(Bucket=daemon_env["GOLD_BUCKET"], Prefix="gold/")
    assert [f"gold/2026-11-20/{run_id}_reprocessed.json"] == [
        o["Key"] for o in listed["Contents"]
    ], out[-2000:]
    assert first.header("webhook-id") == second.header("webhook-id") == f"{run_id}-ingest-complete"
    assert first.body == second.body
    assert (0, 0) == (client.llen(key), client.llen(key + ":dead"))
    assert '"outcome": "acked"' in out
    assert '"outcome": "retried"' not in out


def test_two_daemons_and_a_duplicated_message_make_one_gold_and_one_webhook(
    tmp_path: Path,
    daemon_env: dict[str, str],
    redis_url: str,
    s3_server: S3Server,
    webhook_receiver: WebhookReceiver,
) -> None:
    """The same job pushed twice, two consumers: one Gold, one webhook, both copies settled."""
    client = redis.Redis.from_url(redis_url)
    key = f"cursor:queue:{daemon_env['QUEUE_NAME']}"
    env = {**daemon_env, "LEASE_SECONDS": "5"}
    body = b'{"type":"start_daily_ingest","date":"2026-11-24","message_id":"dup-1"}'
    client.rpush(key, body, body)
    daemons = [start_cli(["run"], env=env, cwd=tmp_path) for _ in range(2)]
    try:
        assert wait_until(
            lambda: (
                client.llen(key) == 0
                and client.zcard(key + ":inflight") == 0
                and client.zcard(key + ":delayed") == 0
                and len(webhook_receiver.requests) >= 1
            ),
            timeout=60,
        )
    finally:
        outs = [_stop(d) for d in daemons]

    listed = _s3(s3_server).list_objects_v2(Bucket=daemon_env["GOLD_BUCKET"], Prefix="gold/")
    assert 1 == len(listed["Contents"]), outs
    assert 1 == len(webhook_receiver.requests)
    assert 0 == client.llen(key + ":dead")
    handled = [line for out in outs for line in out.splitlines() if '"message.handled"' in line]
    assert sorted(json.loads(line)["outcome"] for line in handled if '"deferred"' not in line) == [
        "acked",
        "duplicate",
    ]
