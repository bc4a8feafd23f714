"""The ingest service wired to in-memory fakes of the ports: what handle_delivery does."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from typing import Any

import attrs
import pytest

from atlasreg_cursor.domain.errors import InvalidGold, LeaseExpired, StorageUnavailable
from atlasreg_cursor.domain.ingest import IngestPolicy, Job, Outcome
from atlasreg_cursor.domain.messages import MessageType, parse_message
from atlasreg_cursor.domain.runs import derive_run_id
from tests.fakes.executor import failing
from tests.unit.world import DAILY, WATCHLIST, World

RUN_ID = derive_run_id(MessageType.START_DAILY_INGEST, "m-1")


def test_daily_ingest_publishes_gold_queues_the_notification_and_acks() -> None:
    """The happy path: Gold stored with its SHA-256, acked, one notification delivered after."""
    world = World()
    world.send(DAILY)

    result = world.handle()
    queued = world.outbox_entries()
    delivered = world.deliver()

    key = f"gold/2026-11-24/{RUN_ID}.json"
    body, obj = world.store.get(key)
    gold = json.loads(body)
    (note,) = world.notifier.sent
    sent = json.loads(note.body)
    assert (Outcome.ACKED, RUN_ID) == (result.outcome, result.run_id)
    assert ["pending"] == [e.state for e in queued]
    assert ["delivered"] == [e.state for e in delivered]
    assert hashlib.sha256(body).hexdigest() == obj.metadata["sha256"] == sent["result"]["sha256"]
    assert {"run_id": RUN_ID, "date": "2026-11-24", "schema_version": "2.0"}.items() <= (
        obj.metadata.items()
    )
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
    journal = world.journal(RUN_ID)
    assert journal.notification is not None
    assert (True, None) == (journal.notification.delivered, journal.lease)


def test_redelivered_complete_run_is_a_duplicate() -> None:
    """The same message again is acked at once: no second Gold, no second notification."""
    world = World()
    world.send(DAILY)
    world.handle()
    world.deliver()
    puts = world.store.put_count
    world.send(DAILY)

    result = world.handle()
    world.deliver()

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
    assert result.summary.gold_key is not None
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
    assert result.summary.gold_key is not None
    gold = json.loads(world.store.get(result.summary.gold_key)[0])
    assert ["handler_crashed"] == [e["error_type"] for e in gold["errors"]]


def test_hanging_source_is_recorded_as_timeout_stopped_and_not_left_running() -> None:
    """A source past its timeout is a timeout; close_run stops it; no source thread outlives the run."""
    watchlist = json.loads(json.dumps(WATCHLIST))
    watchlist["sources"][0]["timeout_seconds"] = 0.1
    world = World(watchlist)
    world.real_time = True
    world.executor.sleep["aneel_news"] = 30.0
    world.send(DAILY)
    earlier = set(threading.enumerate())

    started = time.monotonic()
    result = world.handle()
    elapsed = time.monotonic() - started

    assert result.summary is not None
    assert result.summary.gold_key is not None
    gold = json.loads(world.store.get(result.summary.gold_key)[0])
    assert [("aneel_news", "timeout")] == [
        (e["source_id"], e["error_type"]) for e in gold["errors"]
    ]
    assert 4 == gold["metadata"]["documents_count"]
    assert [RUN_ID] == world.executor.closed_runs
    assert [] == [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("source-") and t not in earlier  # not another test's
    ]
    assert elapsed < 10


def test_a_source_past_its_deadline_is_stopped_and_never_exceeds_the_limit() -> None:
    """An executor that does not cut a source: at its deadline it is cancelled, alone, and keeps
    its slot until its thread ends, so never more than max_concurrent_sources (2) run."""
    watchlist = json.loads(json.dumps(WATCHLIST))
    watchlist["sources"][0]["timeout_seconds"] = 0.1
    world = World(watchlist)
    world.real_time = True
    world.executor.sleep.update({"aneel_news": 30.0, "cvm_avisos": 0.8, "ons_csv": 0.2})
    world.executor.overrun.add("aneel_news")
    world.send(DAILY)

    started = time.monotonic()
    result = world.handle()
    elapsed = time.monotonic() - started

    assert Outcome.ACKED == result.outcome
    assert 2 == world.executor.most_running
    calls = world.executor.calls
    assert [("cancel_source", "aneel_news")] == [c for c in calls if c[0] == "cancel_source"]
    assert calls.index(("cancel_source", "aneel_news")) < calls.index(("run_source", "ons_csv"))
    finished = {d["source_id"]: d["error_type"] for n, d in world.events if n == "source.finished"}
    assert {"aneel_news": "timeout", "cvm_avisos": None, "ons_csv": None} == finished
    assert "source.abandoned" not in world.event_names()
    assert elapsed < 10


def test_a_source_deaf_to_cancellation_is_given_up_after_a_bounded_grace() -> None:
    """A stopped source whose thread does not end holds its slot for join_seconds, then is
    reported (once) and the next source starts."""
    watchlist = json.loads(json.dumps(WATCHLIST))
    watchlist["sources"][0]["timeout_seconds"] = 0.1
    world = World(watchlist)
    world.real_time = True
    world.executor.sleep.update({"aneel_news": 1.2, "cvm_avisos": 1.0, "ons_csv": 0.1})
    world.executor.overrun.add("aneel_news")
    world.executor.deaf.add("aneel_news")
    world.send(DAILY)
    policy = attrs.evolve(world.policy, source_join_seconds=0.3)

    result = world.handle(policy=policy)
    for thread in threading.enumerate():
        if thread.name == "source-aneel_news":
            thread.join(timeout=5)

    assert Outcome.ACKED == result.outcome
    names = world.event_names()
    assert 1 == names.count("source.abandoned")
    ons = next(i for i, (n, d) in enumerate(world.events) if d.get("source_id") == "ons_csv")
    assert names.index("source.abandoned") < ons


def test_all_sources_failing_retries_then_dead_letters_with_processing_error() -> None:
    """Nothing usable: retried with backoff, then dead-lettered with a processing_error."""
    world = World(max_attempts=2)
    for sid in ("aneel_news", "cvm_avisos", "ons_csv"):
        world.executor.behaviours[sid] = failing("http_error")
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)
    world.deliver()

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
    journal = world.journal(second.run_id)
    assert ("failed", True) == (
        journal.status.value if journal.status else None,
        journal.dead_lettered,
    )
    assert journal.failure is not None
    assert journal.failure.delivered


def test_storage_down_is_retried_and_then_succeeds() -> None:
    """A transient storage failure retries the delivery; the next attempt publishes."""
    world = World()
    world.store.fail_puts = 1
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)
    world.deliver()

    assert (Outcome.RETRIED, Outcome.ACKED) == (first.outcome, second.outcome)
    assert 1 == len(world.notifier.sent)


def test_a_dependency_known_down_is_not_retried_before_it_can_answer() -> None:
    """An error saying when trying again can help (a breaker's trial) delays the retry past it."""
    world = World()
    world.store.fail_puts = 1
    world.store.fail_retry_after = 90.0  # above RETRY_MAX_SECONDS-style caps and the backoff
    world.send(DAILY)

    first = world.handle()

    assert Outcome.RETRIED == first.outcome
    assert first.delay_seconds is not None
    assert first.delay_seconds >= 90.0


def test_rejected_notification_is_final_and_the_run_stays_published() -> None:
    """A 4xx from the receiver settles the outbox entry as rejected; the run was acked."""
    world = World()
    world.notifier.reject_with = 400
    world.send(DAILY)

    result = world.handle()
    (entry,) = world.deliver()
    later = world.deliver(advance=3600)

    assert Outcome.ACKED == result.outcome
    assert ("rejected", 400) == (entry.state, entry.status_code)
    assert [] == later
    journal = world.journal(RUN_ID)
    assert journal.notification is not None
    assert (True, False, "success") == (
        journal.notification.rejected,
        journal.notification.delivered,
        journal.status.value if journal.status else None,
    )


def test_existing_gold_object_is_adopted_not_replaced() -> None:
    """A Gold already at the key (a crashed earlier attempt) is adopted."""
    world = World()
    key = f"gold/2026-11-24/{RUN_ID}.json"
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


@pytest.mark.parametrize(
    "value",
    [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b'"a\\ud800b"', b'{"\\udfff": 1}'],
)
def test_a_body_that_cannot_be_stored_is_poison_at_once(value: bytes) -> None:
    """A number out of range or a lone surrogate: dead-lettered on the first delivery, no journal."""
    world = World()
    world.send(
        b'{"type": "start_daily_ingest", "date": "2026-11-24", "payload": {"x": ' + value + b"}}"
    )

    result = world.handle()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert world.queue.dead[0][1].startswith("invalid message: ")
    assert ([], {}) == (world.executor.calls, world.store.objects)


def test_invalid_gold_fails_the_run_without_publishing() -> None:
    """Invalid Gold from the executor is permanent: nothing published, processing_error queued."""
    world = World()
    world.executor.gold_error = InvalidGold("invalid Gold document: events missing")
    world.send(DAILY)

    result = world.handle()
    world.deliver()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert [] == [k for k in world.store.objects if k.startswith("gold/")]
    assert ["processing_error"] == [n.event_type for n in world.notifier.sent]


def test_deliveries_before_any_journal_are_not_attempts() -> None:
    """A message delivered past MAX_ATTEMPTS before its run ever started (deliveries a
    store outage turned back, leases that ran out) starts its run: attempts are the
    journal's, so nothing is dead-lettered for deliveries that never ran."""
    world = World(max_attempts=2)
    world.send(DAILY)
    for _ in range(3):
        world.queue.receive(1)
        world.advance(61)

    result = world.handle()

    assert Outcome.ACKED == result.outcome
    assert [] == world.queue.dead
    assert 1 == world.journal(RUN_ID).attempts


def test_a_run_that_keeps_crashing_its_consumer_is_given_up() -> None:
    """Each consumer that takes the journal and dies spends an attempt; then it is dead-lettered."""
    world = World(max_attempts=2, lease_seconds=30)
    world.send(DAILY)
    job = Job.of(parse_message(json.dumps(DAILY).encode()), "m-1")
    for owner in ("dead-1", "dead-2"):
        journals = world.journals()
        journals.owner = owner
        journals.open(job)  # the consumer took the run, then died
        world.advance(31)  # its lease expired

    result = world.handle()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert "gave up after 2 attempts" in (result.reason or "")


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


def test_no_enabled_sources_publishes_empty_gold() -> None:
    """A watchlist with nothing enabled still ends with an empty Gold."""
    world = World({"sources": []})
    world.send(DAILY)

    result = world.handle()

    assert result.summary is not None
    assert (0, Outcome.ACKED) == (result.summary.events_count, result.outcome)


@pytest.mark.parametrize(("sleep", "beats"), [(0.0, 0), (2.6, 2)])
def test_the_heartbeat_renews_the_lease_while_a_long_step_runs(sleep: float, beats: int) -> None:
    """While a long step runs, the journal lease is renewed every third of its length."""
    one_at_a_time = {**WATCHLIST, "global_settings": {"max_concurrent_sources": 1}}
    world = World(one_at_a_time)  # one journal write per source: nothing finishes together
    world.real_time = True
    world.executor.process_sleep = sleep
    policy = IngestPolicy(consumer_id="consumer-a", lease_seconds=3)
    world.send(DAILY)

    result = world.handle(policy=policy)

    journal_puts = sum(1 for k in world.store.put_keys if k.startswith("runs/"))
    baseline = 1 + 3 + 1 + 1 + 1 + 1  # open, 3 sources, processing, gold, notification, finish
    assert Outcome.ACKED == result.outcome
    assert baseline + beats <= journal_puts <= baseline + beats + 1


def test_the_heartbeat_outlives_a_store_outage() -> None:
    """A failed renewal is retried sooner instead of ending the heartbeat; the run completes."""
    world = World()
    world.real_time = True
    world.executor.process_sleep = 2.5
    policy = IngestPolicy(consumer_id="consumer-a", lease_seconds=3)
    world.send(DAILY)

    def outage() -> None:
        time.sleep(0.8)
        world.store.fail_prefixes["runs/"] = 2

    threading.Thread(target=outage, daemon=True).start()
    result = world.handle(policy=policy)

    assert Outcome.ACKED == result.outcome
    assert "lease.renew_failed" in world.event_names()


def test_losing_the_queue_lease_does_not_fail_the_run() -> None:
    """When the queue refuses to extend the lease, the journal lease carries the run to the end."""
    world = World()
    world.real_time = True
    world.executor.process_sleep = 1.5

    def refuse(delivery: object, seconds: float) -> None:
        raise LeaseExpired("lease expired before extended")

    world.queue.extend = refuse  # type: ignore[method-assign]
    world.send(DAILY)

    result = world.handle(policy=IngestPolicy(consumer_id="consumer-a", lease_seconds=3))

    assert Outcome.ACKED == result.outcome
    assert result.summary is not None
    assert "success" == result.summary.status.value
    assert "queue.extend_failed" in world.event_names()


def test_the_delivery_visibility_is_renewed_with_the_lease() -> None:
    """The heartbeat extends the delivery on the queue as it renews the journal lease."""
    world = World()
    world.real_time = True
    world.executor.process_sleep = 1.5
    extended: list[float] = []
    original = world.queue.extend

    def spy(delivery: object, seconds: float) -> None:
        extended.append(seconds)
        original(delivery, seconds)  # type: ignore[arg-type]

    world.queue.extend = spy  # type: ignore[method-assign]
    world.send(DAILY)

    world.handle(policy=IngestPolicy(consumer_id="consumer-a", lease_seconds=3))

    assert extended
    assert {3.0} == set(extended)


def test_a_queue_whose_extend_blocks_never_holds_the_journal_lease_back() -> None:
    """The journal lease is renewed on time while the queue's extend hangs (its client
    retrying a lost server), and the run ends without waiting for the hung extend."""
    world = World()
    world.real_time = True
    world.executor.process_sleep = 2.0
    policy = IngestPolicy(consumer_id="consumer-a", lease_seconds=1.5)  # renewed every 0.5 s
    release = threading.Event()
    extends: list[float] = []

    def hang(delivery: object, seconds: float) -> None:
        extends.append(time.monotonic())
        release.wait(10)

    writes: list[float] = []
    original_put = world.store.put

    def timed_put(key: str, body: bytes, **kwargs: Any) -> Any:
        stored = original_put(key, body, **kwargs)
        if key.startswith("runs/"):
            writes.append(time.monotonic())
        return stored

    world.queue.extend = hang  # type: ignore[method-assign]
    world.store.put = timed_put  # type: ignore[method-assign]
    world.send(DAILY)
    started = time.monotonic()
    try:
        result = world.handle(policy=policy)
    finally:
        release.set()
    took = time.monotonic() - started

    gaps = [later - earlier for earlier, later in itertools.pairwise(writes)]
    assert Outcome.ACKED == result.outcome
    assert extends  # the extend did hang
    assert max(gaps) < policy.lease_seconds, gaps
    assert took < world.executor.process_sleep + policy.lease_seconds, took


def test_journal_of_another_version_is_retried_then_dead_lettered_saying_so() -> None:
    """An unreadable journal is not a crash: retried, then dead-lettered with the reason."""
    world = World(max_attempts=2)
    world.store.put(f"runs/{RUN_ID}.json", b'{"run_id": 7, "written_by": "v9"}')
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)
    world.deliver()

    assert (Outcome.RETRIED, Outcome.DEAD_LETTERED) == (first.outcome, second.outcome)
    reason = world.queue.dead[0][1]
    assert "unreadable_journal" in reason
    assert f"runs/{RUN_ID}.json" in reason
    assert ["processing_error"] == [n.event_type for n in world.notifier.sent]


def test_an_unexpected_exception_is_retried_then_dead_lettered_with_its_reason() -> None:
    """A bug (not a CursorError) in a step: reported with its traceback, retried, dead-lettered."""
    world = World(max_attempts=2)
    world.executor.process_error = OverflowError("int too large to convert to float")
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)

    assert (Outcome.RETRIED, Outcome.DEAD_LETTERED) == (first.outcome, second.outcome)
    assert "unexpected error: OverflowError" in world.queue.dead[0][1]
    crashed = [d for n, d in world.events if n == "run.crashed"]
    assert 2 == len(crashed)
    assert isinstance(crashed[0]["exc_info"], OverflowError)
    assert world.journal(RUN_ID).lease is None


def test_a_published_run_is_never_marked_failed_nor_dead_lettered() -> None:
    """The outbox cannot be written: the message is retried past MAX_ATTEMPTS, never failed."""
    world = World(max_attempts=2)
    world.store.fail_prefixes["outbox/"] = 4
    world.send(DAILY)

    outcomes = []
    delay = 0.0
    for _ in range(5):
        result = world.handle(advance=delay)
        outcomes.append(result.outcome)
        delay = result.delay_seconds or 0
    world.deliver()

    assert [Outcome.RETRIED] * 4 + [Outcome.ACKED] == outcomes
    assert [] == world.queue.dead
    journal = world.journal(RUN_ID)
    assert ("success", None) == (journal.status.value if journal.status else None, journal.failure)
    assert ["ingest_complete"] == [n.event_type for n in world.notifier.sent]
