"""``App.close`` closes every adapter built from settings, the wrapped ones included."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import botocore.session
import pytest

from atlasreg_cursor.adapters.breakers import BreakerBoard
from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient
from atlasreg_cursor.adapters.cloudflare.kv import KVConfigSource
from atlasreg_cursor.adapters.cloudflare.queue import CloudflareQueue
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.adapters.s3 import S3ObjectStore
from atlasreg_cursor.adapters.webhook import WebhookNotifier
from atlasreg_cursor.entrypoints.bootstrap import App, build
from atlasreg_cursor.entrypoints.settings import load_settings
from tests.emulator.cloudflare import (
    DEFAULT_ACCOUNT,
    DEFAULT_TOKEN,
    CloudflareEmulator,
    cloudflare_emulator,  # noqa: F401
)
from tests.support.s3_server import S3Server, s3_server  # noqa: F401

ADAPTERS = (
    BreakerBoard,
    CloudflareClient,
    CloudflareQueue,
    KVConfigSource,
    LocalExecutor,
    S3ObjectStore,
    SqliteQueue,
    WebhookNotifier,
)
HOOK = {"HOOK_ENDPOINT": "http://127.0.0.1:9/hook", "HOOK_HMAC_SECRET": "close-test-secret-1"}


@attrs.define
class Opened:
    """The adapters made while the fixture is active, and those closed."""

    made: list[Any] = attrs.field(factory=list)
    closed: list[Any] = attrs.field(factory=list)

    def of(self, cls: type) -> list[Any]:
        return [adapter for adapter in self.made if type(adapter) is cls]

    def left_open(self) -> list[str]:
        return [repr(a) for a in self.made if not any(a is c for c in self.closed)]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    """Record every adapter of :data:`ADAPTERS` made and every ``close`` called on one."""
    seen = Opened()
    for cls in ADAPTERS:
        init, close = cls.__init__, cls.close

        def tracked_init(self: Any, *args: Any, _init: Any = init, **kwargs: Any) -> None:
            _init(self, *args, **kwargs)
            seen.made.append(self)

        def tracked_close(self: Any, _close: Any = close) -> None:
            seen.closed.append(self)
            _close(self)

        monkeypatch.setattr(cls, "__init__", tracked_init)
        monkeypatch.setattr(cls, "close", tracked_close)
    return seen


def _touch_every_port(app: App) -> None:
    for port in ("queue", "config", "storage", "notifier", "executor", "breakers"):
        getattr(app, port)


def test_local_mode_with_the_webhook_closes_the_notifier_behind_its_breaker(
    tmp_path: Path, opened: Opened
) -> None:
    """The webhook notifier wrapped in its breaker is closed with the App."""
    app = build(load_settings({"CURSOR_HOME": str(tmp_path), **HOOK}, env_file=None))
    _touch_every_port(app)

    assert "BreakerNotifier" == type(app.notifier).__name__
    assert 1 == len(opened.of(WebhookNotifier))
    app.close()

    assert [] == opened.left_open()


@pytest.fixture
def r2_bucket(s3_server: S3Server) -> str:
    """A fresh bucket on the S3 server (R2 dialect in the settings)."""
    bucket = f"close-{uuid.uuid4().hex[:10]}"
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    client.close()
    return bucket


@pytest.fixture
def cloudflare_app(
    tmp_path: Path,
    cloudflare_emulator: CloudflareEmulator,
    s3_server: S3Server,
    r2_bucket: str,
    opened: Opened,
) -> App:
    """MODE=cloudflare on the emulator, without a DLQ queue, and R2 on the S3 server."""
    namespace = cloudflare_emulator.create_namespace()
    cloudflare_emulator.kv_put(namespace, "NEWS_WATCHLIST_CONFIG", b'{"sources": []}')
    env = {
        "MODE": "cloudflare",
        "EXECUTOR_BACKEND": "local",
        "CURSOR_HOME": str(tmp_path),
        "CF_API_ENDPOINT": cloudflare_emulator.url,
        "CF_API_TOKEN": DEFAULT_TOKEN,
        "CF_ACCOUNT_ID": DEFAULT_ACCOUNT,
        "CF_QUEUE_ID": cloudflare_emulator.create_queue(),
        "CF_KV_NAMESPACE_ID": namespace,
        "R2_ENDPOINT": s3_server.endpoint,
        "R2_ACCESS_KEY": s3_server.access_key,
        "R2_SECRET_KEY": s3_server.secret_key,
        "R2_BUCKET_NAME": r2_bucket,
        **HOOK,
    }
    return build(load_settings(env, env_file=None))


@pytest.mark.cloudflare
@pytest.mark.s3
def test_cloudflare_mode_closes_every_adapter_and_keeps_dead_letters_in_the_apps_storage(
    cloudflare_app: App, opened: Opened
) -> None:
    """One store serves the App and the queue's dead letters; every adapter is closed once."""
    app = cloudflare_app
    _touch_every_port(app)
    app.queue.send(b'{"not": "a job"}')
    (delivery,) = app.queue.receive(1, wait_seconds=5)
    app.queue.dead_letter(delivery, "poison")

    letters = [o.key for o in app.storage.list("dead-letters/")]
    assert 1 == len(letters)
    assert 1 == len(opened.of(S3ObjectStore))  # the queue took the App's, no second store
    assert 2 == len(opened.of(CloudflareClient))  # the queue's and the KV source's
    app.close()

    assert [] == opened.left_open()
    assert len(opened.made) == len(opened.closed)  # each closed once
