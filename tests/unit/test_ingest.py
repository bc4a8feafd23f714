"""The ingest service wired to in-memory fakes of the ports."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest

from atlasreg_cursor.domain.errors import InvalidGold, StorageUnavailable
from atlasreg_cursor.domain.ingest import IngestPolicy, Outcome, handle_delivery, read_journal
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import Lease, derive_run_id, journal_key
from tests.fakes import FakeConfigSource, FakeExecutor, FakeNotifier, FakeObjectStore, FakeQueue
from tests.fakes.executor import failing

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


class World:
    """The ports and a clock, wired for one test."""

    def __init__(self, watchlist: dict[str, Any] | None = None, *, max_attempts: int = 3) -> None:
        self.now = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)
        self.queue = FakeQueue(visibility_timeout=60, clock=lambda: self.now.timestamp())
        self.store = FakeObjectStore()
        self.config = FakeConfigSource(watchlist or json.loads(json.dumps(WATCHLIST)))
        self.executor = FakeExecutor()
        self.notifier = FakeNotifier()
        self.policy = IngestPolicy(
            consumer_id="consumer-a",
            max_attempts=max_attempts,
            retry_base_seconds=10,
            lease_seconds=120,
            source_grace_seconds=0.2,
        )
        self.events: list[tuple[str, dict[str, Any]]] = []

    def clock(self) -> dt.datetime:
        return self.now

    def send(self, body: dict[str, Any] | bytes) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.queue.send(raw)

    def handle(self, *, advance: float = 0.0, policy: IngestPolicy | None = None):
        self.now += dt.timedelta(seconds=advance)
        (delivery,) = self.queue.receive(1)
        return handle_delivery(
            delivery,
            queue=self.queue,
            config=self.config,
            executor=self.executor,
            store=self.store,
            notifier=self.notifier,
            policy=policy or self.policy,
            clock=self.clock,
            on_event=lambda n, d: self.events.append((n, dict(d))),
        )


DAILY = {"type": "start_daily_ingest", "date": "2026-11-24", "message_id": "m-1"}


def test_daily_ingest_publishes_gold_notifies_and_acks() -> None:
    """The happy path: Gold stored with its SHA-256, one signed-body notification, acked."""
    world = World()
    world.send(DAILY)

    result = world.handle()

    run_id = derive_run_id(MessageType.START_DAILY_INGEST, "m-1")
    key = f"gold/2026-11-24/{run_id}.json"
    body, obj = world.store.get(key)
    gold = json.loads(body)
    (note,) = world.notifier.sent
    sent = json.loads(note.body)
    assert (Outcome.ACKED, run_id) == (result.outcome, result.run_id)
    assert hashlib.sha256(body).hexdigest() == obj.metadata["sha256"] == sent["result"]["sha256"]
    assert {
        "run_id": run_id,
        "date": "2026-11-24",
        "schema_version": "2.0",
    }.items() <= obj.metadata.items()
    assert (6, 6, 3) == (
        gold["metadata"]["documents_count"],
        gold["metadata"]["events_count"],
        gold["metadata"]["sources_processed"],
    )
    assert ("ingest_complete", "success", key, 6, 0) == (
        sent["event_type"],
        sent["status"],
        sent["result"]["file_path"],
        sent["result"]["documents_count"],
        sent["result"]["errors_count"],
    )
    assert [] == world.queue.entries
    assert "off" not in [sid for kind, sid in world.executor.calls if kind == "run_source"]


def test_redelivered_complete_run_is_a_duplicate() -> None:
    """The same message again is acked at once: no second Gold, no second webhook."""
    world = World()
    world.send(DAILY)
    world.handle()
    puts = world.store.put_count
    world.send(DAILY)

    result = world.handle()

    assert Outcome.DUPLICATE == result.outcome
    assert 1 == len(world.notifier.sent)
    assert puts == world.store.put_count


def test_one_broken_source_gives_partial_gold_with_its_error() -> None:
    """A failing source never sinks the others; its error is in the Gold."""
    world = World()
    world.executor.behaviours["cvm_avisos"] = failing("http_error", "503 from feed")
    world.send(DAILY)

    result = world.handle()

    assert result.summary is not None
    gold = json.loads(world.store.get(result.summary.gold_key)[0])
    assert "partial" == result.summary.status.value
    assert [("cvm_avisos", "http_error", "503 from feed")] == [
        (e["source_id"], e["error_type"], e["error_message"]) for e in gold["errors"]
    ]
    assert 4 == gold["metadata"]["events_count"]


def test_crashing_handler_is_contained() -> None:
    """An unexpected exception in a handler becomes that source's error."""
    world = World()
    world.executor.behaviours["ons_csv"] = ZeroDivisionError("bad math")
    world.send(DAILY)

    result = world.handle()

    assert result.summary is not None
    gold = json.loads(world.store.get(result.summary.gold_key)[0])
    assert ["handler_crashed"] == [e["error_type"] for e in gold["errors"]]


def test_hanging_source_times_out_and_others_finish() -> None:
    """A source past its timeout is recorded as a timeout; the run goes on."""
    watchlist = json.loads(json.dumps(WATCHLIST))
    watchlist["sources"][0]["timeout_seconds"] = 0.1
    world = World(watchlist)
    world.clock = lambda: dt.datetime.now(dt.UTC)  # type: ignore[method-assign]
    world.executor.sleep["aneel_news"] = 3.0
    world.send(DAILY)

    result = world.handle()

    assert result.summary is not None
    gold = json.loads(world.store.get(result.summary.gold_key)[0])
    assert [("aneel_news", "timeout")] == [
        (e["source_id"], e["error_type"]) for e in gold["errors"]
    ]
    assert 4 == gold["metadata"]["documents_count"]


def test_all_sources_failing_retries_then_dead_letters_with_processing_error() -> None:
    """Nothing usable: retried with backoff, then dead-lettered with a processing_error."""
    world = World(max_attempts=2)
    for sid in ("aneel_news", "cvm_avisos", "ons_csv"):
        world.executor.behaviours[sid] = failing("http_error")
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)

    assert (Outcome.RETRIED, 10.0) == (first.outcome, first.delay_seconds)
    assert Outcome.DEAD_LETTERED == second.outcome
    assert "every source failed" in world.queue.dead[0][1]
    (note,) = world.notifier.sent
    body = json.loads(note.body)
    assert ("processing_error", "all_sources_failed", 2) == (
        body["event_type"],
        body["error_type"],
        body["context"]["attempts"],
    )
    journal = read_journal(world.store, second.run_id or "")
    assert journal is not None
    assert "failed" == (journal.status.value if journal.status else None)


def test_storage_down_is_retried_and_then_succeeds() -> None:
    """A transient storage failure retries the delivery; the next attempt publishes."""
    world = World()
    world.store.fail_puts = 1
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)

    assert (Outcome.RETRIED, Outcome.ACKED) == (first.outcome, second.outcome)
    assert 1 == len(world.notifier.sent)


def test_notification_failure_resends_same_webhook_id_without_republishing() -> None:
    """Gold published but not notified: the retry only sends the webhook again."""
    world = World()
    world.notifier.fail_next = 1
    world.send(DAILY)

    first = world.handle()
    gold_keys = [k for k in world.store.objects if k.startswith("gold/")]
    calls = len(world.executor.calls)
    second = world.handle(advance=first.delay_seconds or 0)

    assert (Outcome.RETRIED, Outcome.ACKED) == (first.outcome, second.outcome)
    assert gold_keys == [k for k in world.store.objects if k.startswith("gold/")]
    assert calls == len(world.executor.calls)
    (note,) = world.notifier.sent
    assert f"{second.run_id}-ingest-complete" == note.webhook_id


def test_rejected_notification_completes_the_run() -> None:
    """A 4xx from the receiver is final: the run is acked, not retried forever."""
    world = World()
    world.notifier.reject_with = 400
    world.send(DAILY)

    result = world.handle()

    assert Outcome.ACKED == result.outcome
    assert result.summary is not None
    assert result.summary.notified is False


def test_run_leased_by_another_consumer_is_deferred() -> None:
    """A live lease elsewhere defers the delivery by the lease's remaining time."""
    world = World()
    world.send(DAILY)
    world.handle()
    run_id = derive_run_id(MessageType.START_DAILY_INGEST, "m-2")
    world.send({**DAILY, "message_id": "m-2"})
    other = IngestPolicy(consumer_id="consumer-b", lease_seconds=120)
    # consumer b holds the run's lease (it is working it right now)
    from atlasreg_cursor.domain.codec import converter
    from atlasreg_cursor.domain.hashing import canonical_bytes
    from atlasreg_cursor.domain.runs import RunJournal

    journal = RunJournal(
        run_id=run_id,
        date=dt.date(2026, 11, 24),
        message_type=MessageType.START_DAILY_INGEST,
        message_id="m-2",
        created_at=world.now,
        updated_at=world.now,
        lease=Lease(owner=other.consumer_id, expires_at=world.now + dt.timedelta(seconds=90)),
    )
    world.store.put(
        journal_key(run_id), canonical_bytes(converter.unstructure(journal)), if_none_match=True
    )

    deferred = world.handle()
    resumed = world.handle(advance=(deferred.delay_seconds or 0))

    assert (Outcome.DEFERRED, 91.0) == (deferred.outcome, deferred.delay_seconds)
    assert Outcome.ACKED == resumed.outcome


def test_existing_gold_object_is_adopted_not_replaced() -> None:
    """A Gold already at the key (a crashed earlier attempt) is adopted."""
    world = World()
    run_id = derive_run_id(MessageType.START_DAILY_INGEST, "m-1")
    key = f"gold/2026-11-24/{run_id}.json"
    world.store.put(
        key,
        b'{"earlier":true}',
        metadata={"sha256": hashlib.sha256(b'{"earlier":true}').hexdigest(), "status": "success"},
    )
    world.send(DAILY)

    result = world.handle()

    assert b'{"earlier":true}' == world.store.get(key)[0]
    assert result.summary is not None
    assert hashlib.sha256(b'{"earlier":true}').hexdigest() == result.summary.sha256


def test_poison_is_dead_lettered_with_reason_and_nothing_runs() -> None:
    """A poison message goes to the dead letters at once."""
    world = World()
    world.send(b"{not json")

    result = world.handle()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert world.queue.dead[0][1].startswith("invalid message: body is not JSON")
    assert ([], []) == (world.executor.calls, world.notifier.sent)


def test_invalid_gold_fails_the_run_without_publishing() -> None:
    """Invalid Gold from the executor is permanent: nothing published, processing_error sent."""
    world = World()
    world.executor.gold_error = InvalidGold("invalid Gold document: events missing")
    world.send(DAILY)

    result = world.handle()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert [] == [k for k in world.store.objects if k.startswith("gold/")]
    assert "processing_error" == world.notifier.sent[0].event_type


def test_too_many_attempts_dead_letters_before_running() -> None:
    """A message redelivered past MAX_ATTEMPTS (e.g. it crashed the process) is dead-lettered."""
    world = World(max_attempts=2)
    world.send(DAILY)
    for _ in range(2):
        world.queue.receive(1)
        world.now += dt.timedelta(seconds=61)

    result = world.handle()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert [] == world.executor.calls


def test_reprocess_publishes_with_suffix() -> None:
    """A reprocess run's Gold key ends with _reprocessed."""
    world = World()
    world.send({"type": "reprocess", "date": "2026-11-20", "message_id": "r-1"})

    result = world.handle()

    run_id = derive_run_id(MessageType.REPROCESS, "r-1")
    assert result.summary is not None
    assert f"gold/2026-11-20/{run_id}_reprocessed.json" == result.summary.gold_key
    assert ("reprocess", run_id) in world.executor.calls


def test_payload_sources_restrict_the_run() -> None:
    """payload.sources runs only the named sources."""
    world = World()
    world.send({**DAILY, "payload": {"sources": ["cvm_avisos"]}})

    world.handle()

    assert [("run_source", "cvm_avisos")] == [
        c for c in world.executor.calls if c[0] == "run_source"
    ]


def test_resume_skips_sources_already_done() -> None:
    """After a failure past the sources, a redelivery does not run them again."""
    world = World()
    world.executor.process_error = StorageUnavailable("core down")
    world.send(DAILY)
    first = world.handle()
    world.executor.process_error = None

    second = world.handle(advance=first.delay_seconds or 0)

    assert Outcome.ACKED == second.outcome
    assert 3 == sum(1 for c in world.executor.calls if c[0] == "run_source")


@pytest.mark.parametrize("source_count", [0])
def test_no_enabled_sources_publishes_empty_gold(source_count: int) -> None:
    """A watchlist with nothing enabled still ends with a (empty) Gold."""
    world = World({"sources": []})
    world.send(DAILY)

    result = world.handle()

    assert result.summary is not None
    assert (source_count, Outcome.ACKED) == (result.summary.events_count, result.outcome)


@pytest.mark.parametrize(("sleep", "extra_saves"), [(0.0, 0), (2.5, 2)])
def test_long_processing_renews_the_lease(sleep: float, extra_saves: int) -> None:
    """While a long step runs, the journal lease is renewed about every third of its length."""
    world = World()
    world.clock = lambda: dt.datetime.now(dt.UTC)  # type: ignore[method-assign]
    world.executor.process_sleep = sleep
    policy = IngestPolicy(consumer_id="consumer-a", lease_seconds=3)
    world.send(DAILY)

    result = world.handle(policy=policy)

    journal_puts = sum(1 for k in world.store.put_keys if k.startswith("runs/"))
    baseline = 3 + 1 + 1 + 1 + 1 + 1  # open, 3 sources, processing, gold, notification, finish
    assert Outcome.ACKED == result.outcome
    assert baseline + extra_saves <= journal_puts <= baseline + extra_saves + 1


def test_losing_the_queue_lease_does_not_fail_the_run() -> None:
    """When the queue refuses to extend the lease, the journal lease carries the run to the end."""
    from atlasreg_cursor.domain.errors import LeaseExpired

    world = World()

    def refuse(delivery: object, seconds: float) -> None:
        raise LeaseExpired("lease expired before extended")

    world.queue.extend = refuse  # type: ignore[method-assign]
    world.send(DAILY)

    result = world.handle()

    assert Outcome.ACKED == result.outcome
    assert result.summary is not None
    assert "success" == result.summary.status.value
    assert any(name == "queue.extend_failed" for name, _ in world.events)
