"""The ingest service wired to in-memory fakes of the ports, with a clock a test moves."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from atlasreg_cursor.domain.ingest import (
    HandleResult,
    IngestPolicy,
    JournalStore,
    Outbox,
    OutboxEntry,
    OutboxPolicy,
    RunControl,
    deliver_due,
    handle_delivery,
    read_journal,
)
from atlasreg_cursor.domain.runs import RunJournal
from atlasreg_cursor.ports.queue import Delivery
from tests.fakes import FakeConfigSource, FakeExecutor, FakeNotifier, FakeObjectStore, FakeQueue

WATCHLIST: dict[str, Any] = {
    "sources": [
        {
            "id": "aneel_news",
            "handler_id": "SCRAPY_NEWSROOM_PLAYER",
            "url_feed": "https://a.example/n",
        },
        {"id": "cvm_avisos", "handler_id": "SCRAPY_CVM_API", "url_feed": "https://c.example/api"},
        {"id": "ons_csv", "handler_id": "DOWNLOAD_CSV", "url_feed": "https://o.example/x.csv"},
        {
            "id": "off",
            "handler_id": "DOWNLOAD_CSV",
            "url_feed": "https://o.example/y.csv",
            "enabled": False,
        },
    ],
    "global_settings": {"max_concurrent_sources": 2},
}

DAILY = {"type": "start_daily_ingest", "date": "2026-11-24", "message_id": "m-1"}


class World:
    """The ports and a clock, wired for one test."""

    def __init__(
        self,
        watchlist: dict[str, Any] | None = None,
        *,
        max_attempts: int = 3,
        lease_seconds: float = 120,
        consumer_id: str = "consumer-a",
    ) -> None:
        self.now = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)
        self.real_time = False
        self.queue = FakeQueue(visibility_timeout=60, clock=lambda: self.clock().timestamp())
        self.store = FakeObjectStore()
        self.config = FakeConfigSource(watchlist or json.loads(json.dumps(WATCHLIST)))
        self.executor = FakeExecutor()
        self.notifier = FakeNotifier()
        self.policy = IngestPolicy(
            consumer_id=consumer_id,
            max_attempts=max_attempts,
            retry_base_seconds=10,
            lease_seconds=lease_seconds,
            source_grace_seconds=0.2,
            source_join_seconds=2.0,
        )
        self.outbox_policy = OutboxPolicy(
            max_age_seconds=3600, retry_base_seconds=10, retry_max_seconds=60
        )
        self.events: list[tuple[str, dict[str, Any]]] = []

    def clock(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) if self.real_time else self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def send(self, body: dict[str, Any] | bytes) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.queue.send(raw)

    def receive(self) -> Delivery:
        (delivery,) = self.queue.receive(1)
        return delivery

    def handle(
        self,
        *,
        advance: float = 0.0,
        policy: IngestPolicy | None = None,
        control: RunControl | None = None,
        delivery: Delivery | None = None,
    ) -> HandleResult:
        self.advance(advance)
        return handle_delivery(
            delivery or self.receive(),
            queue=self.queue,
            config=self.config,
            executor=self.executor,
            storage=self.store,
            policy=policy or self.policy,
            clock=self.clock,
            monotonic=time.monotonic,
            on_event=lambda n, d: self.events.append((n, dict(d))),
            control=control,
        )

    def journals(self) -> JournalStore:
        return JournalStore(
            self.store,
            owner=self.policy.consumer_id,
            lease_seconds=self.policy.lease_seconds,
            clock=self.clock,
        )

    def outbox(self) -> Outbox:
        return Outbox(self.store, clock=self.clock, policy=self.outbox_policy)

    def deliver(self, *, advance: float = 0.0) -> list[OutboxEntry]:
        """One pass of the outbox deliverer."""
        self.advance(advance)
        return deliver_due(
            self.outbox(),
            self.journals(),
            self.notifier,
            on_event=lambda n, d: self.events.append((n, dict(d))),
        )

    def journal(self, run_id: str | None) -> RunJournal:
        journal = read_journal(self.store, run_id or "")
        assert journal is not None
        return journal

    def event_names(self) -> list[str]:
        return [name for name, _ in self.events]

    def outbox_entries(self) -> list[OutboxEntry]:
        return [entry for _, entry in self.outbox().entries()]
