"""Never run: mypy checks here that each adapter structurally satisfies its port."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import (
    FakeConfigSource,
    FakeExecutor,
    FakeNotifier,
    FakeObjectStore,
    FakeQueue,
)

from atlasreg_cursor.adapters.breakers import (
    BreakerBoard,
    BreakerExecutor,
    BreakerNotifier,
    BreakerStore,
)
from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient
from atlasreg_cursor.adapters.cloudflare.kv import KVConfigSource
from atlasreg_cursor.adapters.cloudflare.queue import CloudflareQueue
from atlasreg_cursor.adapters.config_cache import CachingConfigSource
from atlasreg_cursor.adapters.core.celery import CeleryGateway
from atlasreg_cursor.adapters.core.executor import CoreExecutor
from atlasreg_cursor.adapters.core.handlers import Handler, custom_scraper_handler
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.adapters.local.file_config import FileConfigSource
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.adapters.local.outbox import OutboxNotifier
from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.adapters.s3 import S3ObjectStore
from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue
from atlasreg_cursor.adapters.webhook import WebhookNotifier
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports import (
    ConfigSource,
    DeadLetterBox,
    Executor,
    MessageQueue,
    Notifier,
    ObjectStore,
)
from atlasreg_cursor.ports.storage import ConditionalWriteProbe


def _ports(signer: WebhookSigner) -> None:
    sqlite: MessageQueue = SqliteQueue(Path("q.sqlite3"))
    sqlite_dead: DeadLetterBox = SqliteQueue(Path("q.sqlite3"))
    redis_queue: MessageQueue = RedisListQueue("redis://127.0.0.1:6379/2")
    redis_dead: DeadLetterBox = RedisListQueue("redis://127.0.0.1:6379/2")
    files: ObjectStore = FileObjectStore(Path("store"))
    s3: ObjectStore = S3ObjectStore(
        endpoint_url="http://127.0.0.1:9000", bucket="b", access_key="a", secret_key="s"
    )
    config: ConfigSource = FileConfigSource(Path("watchlist.json"))
    cached: ConfigSource = CachingConfigSource(lambda: b"{}", origin="memory")
    webhook: Notifier = WebhookNotifier("http://127.0.0.1:1", signer)
    outbox: Notifier = OutboxNotifier(Path("outbox.jsonl"), signer)
    client = CloudflareClient(token="t", account_id="a")
    cloudflare: MessageQueue = CloudflareQueue(client, queue_id="q")
    kv: ConfigSource = KVConfigSource(client, namespace_id="n")
    local: Executor = LocalExecutor(work_dir=Path("work"))
    core: Executor = CoreExecutor(
        celery=CeleryGateway(broker_url="redis://", result_backend="redis://"),
        airflow=None,
        scrapy_project_path=None,
        local_fallback=local,
    )
    handler: Handler = custom_scraper_handler
    board = BreakerBoard()
    guarded_store: ObjectStore = BreakerStore(files, board)
    s3_probe: ConditionalWriteProbe = S3ObjectStore(
        endpoint_url="http://127.0.0.1:9000", bucket="b", access_key="a", secret_key="s"
    )
    guarded_probe: ConditionalWriteProbe = BreakerStore(s3, board)
    guarded_notifier: Notifier = BreakerNotifier(webhook, board)
    guarded_executor: Executor = BreakerExecutor(local, board)
    fake_queue: MessageQueue = FakeQueue()
    fake_store: ObjectStore = FakeObjectStore()
    fake_config: ConfigSource = FakeConfigSource()
    fake_executor: Executor = FakeExecutor()
    fake_notifier: Notifier = FakeNotifier()
    del (
        fake_queue,
        fake_store,
        fake_config,
        fake_executor,
        fake_notifier,
        cached,
        guarded_store,
        s3_probe,
        guarded_probe,
        guarded_notifier,
        guarded_executor,
        local,
        core,
        handler,
        cloudflare,
        kv,
        sqlite,
        sqlite_dead,
        redis_queue,
        redis_dead,
        files,
        s3,
        config,
        webhook,
        outbox,
    )
