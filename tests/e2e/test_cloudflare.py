"""MODE=cloudflare end to end: the daemon on the Cloudflare API emulator and the S3 server (R2 dialect)."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest

from atlasreg_cursor.sample_site import start_sample_site
from tests.emulator.cloudflare import (
    DEFAULT_ACCOUNT,
    DEFAULT_TOKEN,
    CloudflareEmulator,
    cloudflare_emulator,  # noqa: F401
)
from tests.support.cli import cli_env, run_cli, start_cli
from tests.support.s3_server import S3Server, s3_server  # noqa: F401
from tests.support.services import wait_until
from tests.support.webhook_receiver import SECRETS, WebhookReceiver, webhook_receiver  # noqa: F401

pytestmark = [pytest.mark.cloudflare, pytest.mark.s3, pytest.mark.slow]


@pytest.fixture
def world(
    tmp_path: Path,
    cloudflare_emulator: CloudflareEmulator,
    s3_server: S3Server,
    webhook_receiver: WebhookReceiver,
) -> Iterator[dict[str, str]]:
    """A queue with a DLQ, a KV watchlist, an R2 bucket and the settings pointing at them."""
    dlq = cloudflare_emulator.create_queue()
    queue = cloudflare_emulator.create_queue(max_retries=3, dead_letter_queue=None)
    namespace = cloudflare_emulator.create_namespace()
    bucket = f"r2-{uuid.uuid4().hex[:10]}"
    botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    with start_sample_site() as site:
        watchlist = {
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
        cloudflare_emulator.kv_put(
            namespace, "NEWS_WATCHLIST_CONFIG", json.dumps(watchlist).encode()
        )
        yield cli_env(
            {
                "MODE": "cloudflare",
                "EXECUTOR_BACKEND": "local",
                "CF_API_ENDPOINT": cloudflare_emulator.url,
                "CF_API_TOKEN": DEFAULT_TOKEN,
                "CF_ACCOUNT_ID": DEFAULT_ACCOUNT,
                "CF_QUEUE_ID": queue,
                "CF_DLQ_QUEUE_ID": dlq,
                "CF_KV_NAMESPACE_ID": namespace,
                "R2_ENDPOINT": s3_server.endpoint,
                "R2_ACCESS_KEY": s3_server.access_key,
                "R2_SECRET_KEY": s3_server.secret_key,
                "R2_BUCKET_NAME": bucket,
                "HOOK_ENDPOINT": webhook_receiver.url,
                "HOOK_HMAC_SECRET": SECRETS[0],
                "ALLOW_PRIVATE_SOURCES": "true",
                "CURSOR_HOME": str(tmp_path),
                "POLL_SECONDS": "1",
                "METRICS_PORT": "0",
            }
        )


def test_daily_ingest_reprocess_and_poison_through_cloudflare(
    tmp_path: Path,
    world: dict[str, str],
    cloudflare_emulator: CloudflareEmulator,
    s3_server: S3Server,
    webhook_receiver: WebhookReceiver,
) -> None:
    """Jobs sent with `enqueue` are published and notified; the poison goes to the DLQ; all acked."""
    queue, dlq = world["CF_QUEUE_ID"], world["CF_DLQ_QUEUE_ID"]
    for args in (
        ["start_daily_ingest", "--date", "2026-11-24"],
        ["reprocess", "--date", "2026-11-20"],
    ):
        sent = run_cli(["enqueue", *args], env=world, cwd=tmp_path)
        assert 0 == sent.returncode, sent.stderr
    cloudflare_emulator.inject_message(queue, "definitely not a job", content_type="text")
    daemon = start_cli(["run"], env=world, cwd=tmp_path)
    try:
        assert wait_until(
            lambda: (
                len(cloudflare_emulator.acked(queue)) == 3 and len(webhook_receiver.requests) == 2
            ),
            timeout=60,
        )
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    out = daemon.stdout.read() if daemon.stdout else ""

    s3 = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    keys = sorted(
        o["Key"]
        for o in s3.list_objects_v2(Bucket=world["R2_BUCKET_NAME"], Prefix="gold/")["Contents"]
    )
    (dead,) = cloudflare_emulator.messages(dlq)
    dead_body = json.loads(dead.raw())
    assert 2 == len(keys), out[-3000:]
    assert DEFAULT_TOKEN not in out
    assert keys[0].startswith("gold/2026-11-20/reprocess_")
    assert keys[0].endswith("_reprocessed.json")
    assert keys[1].startswith("gold/2026-11-24/run_")
    assert [] == cloudflare_emulator.messages(queue)
    assert "definitely not a job" == dead_body["body"]
    assert dead_body["reason"].startswith("invalid message: body is not JSON")
    assert all(r.legacy_verified and r.standard_verified for r in webhook_receiver.requests)
    assert (
        sorted(json.loads(r.body)["result"]["file_path"] for r in webhook_receiver.requests) == keys
    )
