"""The service's recovery paths: duplicates of live runs, the outbox, replays, sweeps, stops."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

import attrs
import pytest

from atlasreg_cursor.domain.codec import converter
from atlasreg_cursor.domain.errors import InvalidGold, StorageUnavailable
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.ingest import (
    IngestPolicy,
    Outcome,
    RunControl,
    Sweeper,
    outbox_key,
    resume_run,
    run_message,
)
from atlasreg_cursor.domain.ingest.outbox import settled_key
from atlasreg_cursor.domain.messages import MessageType, parse_message
from atlasreg_cursor.domain.runs import (
    GoldRecord,
    Lease,
    RunJournal,
    RunStatus,
    derive_run_id,
    journal_key,
)
from tests.fakes.executor import failing
from tests.unit.world import DAILY, World

RUN_ID = derive_run_id(MessageType.START_DAILY_INGEST, "m-1")


def _write_journal(world: World, **fields: Any) -> None:
    """Put a journal of the run in the store, as another consumer would have."""
    key = journal_key(RUN_ID)
    current = world.store.head(key)
    if current is None:
        journal = RunJournal(
            run_id=RUN_ID,
            date=dt.date(2026, 11, 24),
            message_type=MessageType.START_DAILY_INGEST,
            identity="m-1",
            payload={},
            created_at=world.now,
            updated_at=world.now,
            attempts=1,
        )
    else:
        journal = converter.structure(json.loads(world.store.get(key)[0]), RunJournal)
    body = canonical_bytes(converter.unstructure(attrs.evolve(journal, **fields)))
    if current is None:
        world.store.put(key, body, if_none_match=True)
    else:
        world.store.put(key, body, if_match=current.etag)


def _lease(world: World, owner: str, seconds: float) -> Lease:
    return Lease(owner=owner, expires_at=world.now + dt.timedelta(seconds=seconds))


def _published() -> GoldRecord:
    return GoldRecord(
        key=f"gold/2026-11-24/{RUN_ID}.json",
        sha256="0" * 64,
        size=10,
        status=RunStatus.SUCCESS,
        documents_count=1,
        events_count=1,
        errors_count=0,
    )


# --- journals of an earlier version -------------------------------------------------


def test_a_journal_naming_its_identity_message_id_is_resumed() -> None:
    """Journals written before ``identity`` had its name stored it as ``message_id``."""
    world = World()
    _write_journal(world, lease=_lease(world, "crashed-consumer", -1))
    key = journal_key(RUN_ID)
    stored = json.loads(world.store.get(key)[0])
    stored["message_id"] = stored.pop("identity")
    world.store.put(key, canonical_bytes(stored), if_match=world.store.head(key).etag)  # type: ignore[union-attr]
    world.send(DAILY)

    assert Outcome.ACKED == world.handle().outcome
    journal = json.loads(world.store.get(key)[0])
    assert ("m-1", False) == (journal["identity"], "message_id" in journal)


# --- a duplicate of a live run ----------------------------------------------------


def test_duplicate_of_a_live_run_waits_without_spending_attempts() -> None:
    """Deferred more times than MAX_ATTEMPTS while the other run lives: never dead-lettered."""
    world = World(max_attempts=2)
    _write_journal(world, lease=_lease(world, "consumer-b", 90))
    world.send(DAILY)

    outcomes = []
    for _ in range(6):
        result = world.handle()
        outcomes.append(result.outcome)
        world.advance(result.delay_seconds or 0)
        _write_journal(world, lease=_lease(world, "consumer-b", 90))  # it renews

    assert [Outcome.DEFERRED] * 6 == outcomes
    assert ([], []) == (world.queue.dead, world.notifier.sent)
    assert 1 == world.journal(RUN_ID).attempts
    assert 6 == world.queue.entries[0].attempts


def test_duplicate_is_acked_within_one_lease_after_the_live_run_finishes() -> None:
    """The deferral is at most one lease; once the other run is complete, the copy is acked."""
    world = World(lease_seconds=120)
    _write_journal(world, lease=_lease(world, "consumer-b", 300))
    world.send(DAILY)

    first = world.handle()
    _write_journal(world, lease=None, gold=_published(), finished_at=world.now)
    second = world.handle(advance=first.delay_seconds or 0)

    assert (Outcome.DEFERRED, 120.0) == (first.outcome, first.delay_seconds)
    assert Outcome.DUPLICATE == second.outcome
    assert [] == world.queue.entries


def test_a_run_whose_lease_expired_is_taken_over() -> None:
    """A lease that expired (its consumer died) is taken, counting one more attempt."""
    world = World()
    _write_journal(world, lease=_lease(world, "consumer-b", 10))
    world.send(DAILY)

    result = world.handle(advance=11)

    assert Outcome.ACKED == result.outcome
    assert 2 == world.journal(RUN_ID).attempts


def _deferred(world: World, times: int) -> None:
    """Deliver the message *times* times while consumer-b's run lives (each one deferred)."""
    for _ in range(times):
        _write_journal(world, lease=_lease(world, "consumer-b", 90))  # it renews
        result = world.handle()
        assert Outcome.DEFERRED == result.outcome
        world.advance(result.delay_seconds or 0)
    _write_journal(world, lease=_lease(world, "consumer-b", 90))


@pytest.mark.parametrize(
    "fault",
    [StorageUnavailable("the store is away"), OverflowError("a crash reading the journal")],
    ids=["store-away", "crash"],
)
def test_a_fault_opening_the_journal_of_a_long_deferred_copy_never_fails_the_live_run(
    fault: Exception,
) -> None:
    """Deferred past MAX_ATTEMPTS, then the journal cannot be opened once: no dead letter."""
    world = World(max_attempts=2)
    world.send(DAILY)
    _deferred(world, 4)
    world.store.fail_gets.append(fault)

    result = world.handle()
    world.deliver()

    assert result.outcome in {Outcome.RETRIED, Outcome.DEFERRED}
    assert ([], [], []) == (world.queue.dead, world.notifier.sent, world.outbox_entries())
    journal = world.journal(RUN_ID)
    assert (None, "consumer-b") == (journal.status, journal.lease.owner if journal.lease else None)


def test_an_unreadable_journal_whose_gold_is_published_sends_no_processing_error() -> None:
    """The Gold is in the store: dead-lettered for the journal, but never reported failed."""
    world = World(max_attempts=2)
    world.store.put(journal_key(RUN_ID), b"\x00 not a journal")
    world.store.put(_published().key, b"{}")
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)
    world.deliver()

    assert (Outcome.RETRIED, Outcome.DEAD_LETTERED) == (first.outcome, second.outcome)
    assert "its Gold is published" in world.queue.dead[0][1]
    assert ([], []) == (world.notifier.sent, world.outbox_entries())


def test_a_run_whose_gold_is_in_the_store_is_never_failed() -> None:
    """The journal lags its Gold (a crash between the two writes): retried, never failed."""
    world = World(max_attempts=2)
    for source in ("aneel_news", "cvm_avisos", "ons_csv"):
        world.executor.behaviours[source] = failing("network_error")
    world.store.put(_published().key, b"{}")
    world.send(DAILY)

    first = world.handle()
    second = world.handle(advance=first.delay_seconds or 0)
    world.deliver()

    assert (Outcome.RETRIED, Outcome.RETRIED) == (first.outcome, second.outcome)
    assert ([], [], []) == (world.queue.dead, world.notifier.sent, world.outbox_entries())
    assert "run.published_not_failed" in world.event_names()
    assert world.journal(RUN_ID).status is None


def test_at_the_queues_last_delivery_the_duplicate_hands_the_run_to_its_journal() -> None:
    """Cloudflare would retire the message at max_retries: the duplicate is acked, not lost."""
    world = World()
    _write_journal(world, lease=_lease(world, "consumer-b", 90))
    world.send(DAILY)
    policy = IngestPolicy(consumer_id="consumer-a", lease_seconds=120, queue_max_deliveries=2)

    first = world.handle(policy=policy)
    world.advance(first.delay_seconds or 0)
    _write_journal(world, lease=_lease(world, "consumer-b", 90))  # still alive
    second = world.handle(policy=policy)

    assert (Outcome.DEFERRED, Outcome.DUPLICATE) == (first.outcome, second.outcome)
    assert "run.handed_to_journal" in world.event_names()
    assert [] == world.queue.dead


# --- the outbox ------------------------------------------------------------------


def test_a_receiver_down_past_the_retry_budget_still_gets_every_notification() -> None:
    """The run is acked at once; the outbox retries with capped backoff; one stable webhook-id."""
    world = World(max_attempts=2)
    world.notifier.fail_next = 12
    world.send(DAILY)

    result = world.handle()
    waits = []
    for _ in range(12):
        (entry,) = world.deliver(advance=61)
        waits.append(
            (entry.next_attempt_at - world.now).total_seconds() if entry.next_attempt_at else 0
        )
    (final,) = world.deliver(advance=61)

    assert Outcome.ACKED == result.outcome
    assert [] == world.queue.entries
    assert [10.0, 20.0, 40.0, 60.0] == waits[:4]
    assert {60.0} == set(waits[3:])
    assert ("delivered", 13) == (final.state, final.attempts)
    (note,) = world.notifier.sent
    assert f"{RUN_ID}-ingest-complete" == note.webhook_id
    assert "processing_error" not in [n.event_type for n in world.notifier.sent]
    assert world.journal(RUN_ID).status is RunStatus.SUCCESS


def test_a_settled_entry_is_filed_and_resend_brings_it_back() -> None:
    """Delivered: filed under settled/ (still listed by hooks list); resent: pending, sent again."""
    world = World()
    world.send(DAILY)
    world.handle()
    world.deliver()
    webhook_id = f"{RUN_ID}-ingest-complete"

    filed = [(key, entry.state) for key, entry in world.outbox().entries()]
    key, again = world.outbox().resend(settled_key(RUN_ID, webhook_id)) or ("", None)
    pending = [k for k in world.store.objects if k.startswith("outbox/")]
    resent = world.deliver()

    assert [(settled_key(RUN_ID, webhook_id), "delivered")] == filed
    assert (outbox_key(RUN_ID, webhook_id), "pending") == (key, again.state if again else None)
    assert [outbox_key(RUN_ID, webhook_id)] == pending
    assert ["delivered"] == [entry.state for entry in resent]
    assert [webhook_id] * 2 == [n.webhook_id for n in world.notifier.sent]
    assert [settled_key(RUN_ID, webhook_id)] == [
        k for k in world.store.objects if k.startswith("outbox/")
    ]


def test_entries_of_the_earlier_layout_are_delivered_and_filed() -> None:
    """outbox/<run_id>/…: a pending one is delivered, a settled one filed, then neither is scanned."""
    world = World()
    world.send(DAILY)
    world.handle()
    (key,) = [k for k in world.store.objects if k.startswith("outbox/")]
    old_pending = f"outbox/{RUN_ID}/{RUN_ID}-ingest-complete.json"
    world.store.put(old_pending, world.store.objects.pop(key)[0])
    other = derive_run_id(MessageType.START_DAILY_INGEST, "m-2")
    body = json.loads(world.store.objects[old_pending][0])
    settled = {
        **body,
        "run_id": other,
        "webhook_id": f"{other}-ingest-complete",
        "state": "delivered",
    }
    world.store.put(f"outbox/{other}/{other}-ingest-complete.json", canonical_bytes(settled))

    delivered = world.deliver()
    again = world.outbox().due()

    assert ["delivered"] == [entry.state for entry in delivered]
    assert [] == again
    assert [
        settled_key(other, f"{other}-ingest-complete"),
        settled_key(RUN_ID, body["webhook_id"]),
    ] == [k for k in sorted(world.store.objects) if k.startswith("outbox/")]
    assert world.journal(RUN_ID).notification.delivered  # type: ignore[union-attr]


def test_a_notification_older_than_the_maximum_age_expires() -> None:
    """Past NOTIFY_MAX_AGE_HOURS the outbox gives up on the entry, and says so."""
    world = World()
    world.notifier.fail_next = 1000
    world.send(DAILY)
    world.handle()
    world.deliver()

    expired = world.deliver(advance=3601)

    assert ["expired"] == [e.state for e in expired]
    assert "notification.expired" in world.event_names()
    assert [] == world.deliver(advance=3600)


def test_a_notification_claimed_by_another_daemon_is_not_sent_twice() -> None:
    """The claim is a conditional write: of two deliverers on one entry, one sends."""
    world = World()
    world.send(DAILY)
    world.handle()
    outbox_a, outbox_b = world.outbox(), world.outbox()
    (key,) = outbox_a.due()
    (same,) = outbox_b.due()

    first = outbox_a.attempt(key, world.notifier, on_event=lambda n, d: None)
    second = outbox_b.attempt(same, world.notifier, on_event=lambda n, d: None)

    assert first is not None
    assert "delivered" == first.state
    assert second is None
    assert 1 == len(world.notifier.sent)


def test_a_foreground_run_delivers_its_notification_before_returning() -> None:
    """`ingest` waits for its notification; if the receiver is down it stays in the outbox."""
    world = World()
    world.notifier.fail_next = 1
    message = parse_message(json.dumps(DAILY).encode())

    summary = run_message(
        message,
        identity="m-1",
        config=world.config,
        executor=world.executor,
        storage=world.store,
        notifier=world.notifier,
        policy=world.policy,
        clock=world.clock,
        monotonic=time.monotonic,
        on_event=lambda n, d: None,
        outbox_policy=world.outbox_policy,
    )
    later = world.deliver(advance=11)

    assert (False, RunStatus.SUCCESS) == (summary.notified, summary.status)
    assert ["delivered"] == [e.state for e in later]
    assert world.journal(RUN_ID).notification is not None


# --- dead letters and replays -------------------------------------------------------


def test_a_replayed_dead_letter_really_runs_again() -> None:
    """The failed journal starts a new round: published this time, a new failure webhook-id."""
    world = World()
    world.executor.gold_error = InvalidGold("invalid Gold document: events missing")
    world.send(DAILY)
    failed = world.handle()
    world.deliver()
    world.executor.gold_error = None
    ((body, _),) = world.queue.dead
    world.send(body)  # what `dlq replay` does: the same body back with fresh attempts

    replayed = world.handle()
    world.deliver()

    journal = world.journal(RUN_ID)
    assert (Outcome.DEAD_LETTERED, Outcome.ACKED) == (failed.outcome, replayed.outcome)
    assert (2, 1, RunStatus.SUCCESS) == (journal.round, journal.attempts, journal.status)
    assert journal.gold is not None
    assert ["processing_error", "ingest_complete"] == [n.event_type for n in world.notifier.sent]


def test_a_run_failed_by_a_sweep_dead_letters_its_message_when_it_comes() -> None:
    """A failed journal whose message was never dead-lettered: the message is, with the error."""
    world = World()
    _write_journal(
        world,
        status=RunStatus.FAILED,
        finished_at=world.now,
        error="max_attempts_exceeded: gave up after 3 attempts",
    )
    world.send(DAILY)

    result = world.handle()

    assert Outcome.DEAD_LETTERED == result.outcome
    assert "gave up after 3 attempts" in world.queue.dead[0][1]
    assert world.journal(RUN_ID).dead_lettered


# --- sweeping runs from their journals ----------------------------------------------------


def test_an_orphaned_run_is_swept_and_finished_without_its_message() -> None:
    """A journal whose lease expired while held is resumed from the journal alone."""
    world = World()
    _write_journal(
        world, lease=_lease(world, "dead-consumer", 30), payload={"sources": ["ons_csv"]}
    )
    sweeper = Sweeper(world.journals(), overdue_seconds=60, clock=world.clock)
    early = sweeper.stranded()
    world.advance(31)

    stranded = sweeper.stranded()
    result = resume_run(
        RUN_ID,
        config=world.config,
        executor=world.executor,
        storage=world.store,
        policy=world.policy,
        clock=world.clock,
        monotonic=time.monotonic,
        on_event=lambda n, d: world.events.append((n, dict(d))),
    )
    world.deliver()

    assert ([], [RUN_ID]) == (early, stranded)
    assert Outcome.ACKED == result.outcome
    assert [("run_source", "ons_csv")] == [c for c in world.executor.calls if c[0] == "run_source"]
    assert ["ingest_complete"] == [n.event_type for n in world.notifier.sent]
    assert [] == sweeper.stranded()
    world.send(DAILY)
    assert Outcome.DUPLICATE == world.handle().outcome  # the message, when it comes back


def test_the_sweep_leaves_live_runs_and_released_runs_to_their_messages() -> None:
    """Held with a live lease, or released for a retry not yet overdue: not swept."""
    world = World()
    _write_journal(world, lease=_lease(world, "alive", 30))
    sweeper = Sweeper(world.journals(), overdue_seconds=60, clock=world.clock)
    live = sweeper.stranded()
    _write_journal(world, lease=None, retry_at=world.now + dt.timedelta(seconds=10))
    world.advance(40)
    waiting = sweeper.stranded()
    world.advance(40)

    overdue = sweeper.stranded()

    assert ([], [], [RUN_ID]) == (live, waiting, overdue)


# --- stopping at once ----------------------------------------------------------------------


def test_a_stop_request_gives_the_lease_and_the_delivery_back_at_once() -> None:
    """RunControl.abort from another thread: the run stops, its lease is released, its message back."""
    world = World()
    world.real_time = True
    world.executor.sleep["aneel_news"] = 30.0
    world.send(DAILY)
    earlier = set(threading.enumerate())
    control = RunControl()
    results = []
    worker = threading.Thread(target=lambda: results.append(world.handle(control=control)))
    worker.start()
    deadline = time.monotonic() + 5
    while not any(c == ("run_source", "aneel_news") for c in world.executor.calls):
        assert time.monotonic() < deadline
        time.sleep(0.01)

    released = control.abort()
    worker.join(timeout=10)

    assert RUN_ID == released
    assert [Outcome.RELEASED] == [r.outcome for r in results]
    journal = world.journal(RUN_ID)
    assert (None, None) == (journal.lease, journal.finished_at)
    assert 1 == world.queue.stats().ready
    assert [] == [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("source-") and t not in earlier  # not another test's
    ]


def test_a_run_released_at_a_stop_is_swept_if_its_message_is_gone() -> None:
    """Released by a second signal after its message was acked (handed to its journal):
    the journal says the run is due again, so a sweep resumes it once overdue."""
    world = World()
    world.real_time = True
    world.executor.sleep["aneel_news"] = 30.0
    world.send(DAILY)
    control = RunControl()
    worker = threading.Thread(target=lambda: world.handle(control=control))
    worker.start()
    deadline = time.monotonic() + 5
    while not any(c == ("run_source", "aneel_news") for c in world.executor.calls):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    control.abort()
    worker.join(timeout=10)
    world.queue.entries.clear()  # the message is gone: only the journal carries the run
    world.now, world.real_time = dt.datetime.now(dt.UTC), False
    sweeper = Sweeper(world.journals(), overdue_seconds=60, clock=world.clock)
    world.advance(40)
    waiting = sweeper.stranded()
    world.advance(40)

    overdue = sweeper.stranded()

    assert world.journal(RUN_ID).retry_at is not None
    assert ([], [RUN_ID]) == (waiting, overdue)


def test_a_journal_finished_before_the_outbox_gets_its_unsent_notification_queued() -> None:
    """A run completed by an earlier version with its webhook undelivered: a redelivery queues it."""
    from atlasreg_cursor.domain.runs import NotificationRecord

    world = World()
    record = NotificationRecord(
        event_type="ingest_complete",
        webhook_id=f"{RUN_ID}-ingest-complete",
        path="/api/v1/hooks/ingest-complete",
        body='{"run_id": "x"}',
    )
    _write_journal(world, gold=_published(), notification=record, finished_at=world.now)
    world.send(DAILY)

    result = world.handle()
    world.deliver()

    assert Outcome.DUPLICATE == result.outcome
    assert [record.webhook_id] == [n.webhook_id for n in world.notifier.sent]


def test_a_foreground_run_that_fails_for_good_sends_its_processing_error() -> None:
    """`ingest` of a run with invalid Gold: RunFailed, the failure delivered, the journal failed."""
    import pytest

    from atlasreg_cursor.domain.ingest import RunFailed

    world = World()
    world.executor.gold_error = InvalidGold("invalid Gold document: events missing")
    message = parse_message(json.dumps(DAILY).encode())

    with pytest.raises(RunFailed):
        run_message(
            message,
            identity="m-1",
            config=world.config,
            executor=world.executor,
            storage=world.store,
            notifier=world.notifier,
            policy=world.policy,
            clock=world.clock,
            monotonic=time.monotonic,
            on_event=lambda n, d: None,
        )

    journal = world.journal(RUN_ID)
    assert ["processing_error"] == [n.event_type for n in world.notifier.sent]
    assert (RunStatus.FAILED, None) == (journal.status, journal.gold)
    assert journal.failure is not None
    assert journal.failure.delivered


def test_a_store_outage_before_the_first_journal_spends_no_attempt() -> None:
    """Deliveries the store turned back before any journal existed are not attempts:
    once it is back, the run starts (attempt 1), no dead letter, no processing_error."""
    world = World(max_attempts=2)
    world.send(DAILY)
    outcomes = []
    for _ in range(4):  # the store is away: the journal cannot be opened
        world.store.fail_gets.append(StorageUnavailable("the store is away"))
        result = world.handle()
        outcomes.append(result.outcome)
        world.advance(result.delay_seconds or 0)

    result = world.handle()  # the store is back
    world.deliver()

    assert [Outcome.RETRIED] * 4 == outcomes
    assert Outcome.ACKED == result.outcome
    assert [] == world.queue.dead
    assert 1 == world.journal(RUN_ID).attempts
    assert ["ingest_complete"] == [n.event_type for n in world.notifier.sent]
