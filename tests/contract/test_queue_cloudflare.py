"""The MessageQueue contract on the Cloudflare emulator: ``CloudflareQueue``, plus its own rules."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from atlasreg_cursor.adapters.cloudflare._http import CloudflareClient
from atlasreg_cursor.adapters.cloudflare.queue import CloudflareQueue, decode_body
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.domain.errors import (
    QueueConfigurationError,
    QueueError,
    QueueUnavailable,
)
from atlasreg_cursor.ports.queue import Delivery, MessageQueue
from tests.contract.queue_contract import QueueContract, QueueFactory, receive_until
from tests.emulator.cloudflare import CloudflareEmulator, cloudflare_emulator  # noqa: F401

pytestmark = pytest.mark.cloudflare


def make_client(emulator: CloudflareEmulator, **kwargs: object) -> CloudflareClient:
    """A client for the emulator's account."""
    return CloudflareClient(
        api_endpoint=emulator.url,
        token=emulator.token,
        account_id=emulator.account_id,
        timeout=5.0,
        **kwargs,  # type: ignore[arg-type]
    )


def make_queue(emulator: CloudflareEmulator, queue_id: str, **kwargs: object) -> CloudflareQueue:
    """A consumer with short polls, as the contract's timings expect."""
    options: dict[str, object] = {"batch_size": 100, "poll_min": 0.1, "poll_max": 0.5}
    options.update(kwargs)
    return CloudflareQueue(make_client(emulator), queue_id=queue_id, **options)  # type: ignore[arg-type]


class TestCloudflareQueue(QueueContract):
    """Each test gets a fresh queue (and a DLQ queue) on a fresh emulator."""

    DETECTS_LATE_ACK = False
    SUPPORTS_EXTEND = False
    SEND_RETURNS_ID = False
    BINARY_BODIES = False
    DEAD_LETTER_BOX = False
    STATS_REPORTED = frozenset()
    MAX_BATCH = 100
    MIN_VISIBILITY = 1.0
    REDELIVERY_SLACK = 2.0

    @pytest.fixture
    def queue_factory(
        self, cloudflare_emulator: CloudflareEmulator, tmp_path: Path
    ) -> Iterator[QueueFactory]:
        """Consumers with their own clients on one fresh queue (retries up to 100)."""
        dlq = cloudflare_emulator.create_queue()
        queue_id = cloudflare_emulator.create_queue(max_retries=100)
        store = FileObjectStore(tmp_path / "store")
        made: list[CloudflareQueue] = []

        def make(visibility_timeout: float) -> MessageQueue:
            queue = make_queue(
                cloudflare_emulator,
                queue_id,
                dlq_queue_id=dlq,
                dead_letter_store=store,
                visibility_timeout=visibility_timeout,
            )
            made.append(queue)
            return queue

        yield make
        for queue in made:
            queue.close()


# --- Cloudflare-specific behaviour ------------------------------------------------


@pytest.fixture
def emulator(cloudflare_emulator: CloudflareEmulator) -> CloudflareEmulator:
    """The per-test emulator under a short name."""
    return cloudflare_emulator


def test_pull_request_uses_visibility_timeout_ms(emulator: CloudflareEmulator) -> None:
    """A pull sends ``batch_size`` and ``visibility_timeout_ms`` (the schema's name)."""
    queue_id = emulator.create_queue()
    queue = make_queue(emulator, queue_id, visibility_timeout=90.0, batch_size=7)

    queue.receive(3, wait_seconds=0)

    [pull] = emulator.exchanges("/messages/pull")
    assert {"batch_size": 3, "visibility_timeout_ms": 90_000} == pull.request_json()


@pytest.mark.parametrize("shape", ["object", "list"])
@pytest.mark.parametrize("encoding", ["base64", "plain"])
def test_json_bodies_decoded_in_every_observed_form(
    emulator: CloudflareEmulator, shape: str, encoding: str
) -> None:
    """Base64 and plain JSON bodies, in object and list pull results, give the same bytes."""
    emulator.pull_result_shape = shape  # type: ignore[assignment]
    emulator.json_body_encoding = encoding  # type: ignore[assignment]
    queue_id = emulator.create_queue()
    message = {"type": "start_daily_ingest", "date": "2026-11-24", "payload": {}}
    emulator.inject_message(queue_id, message)
    queue = make_queue(emulator, queue_id)

    [delivery] = queue.receive(1, wait_seconds=0)

    assert message == json.loads(delivery.body)
    assert delivery.identity_from_queue is True
    assert emulator.messages(queue_id)[0].id == delivery.queue_message_id
    assert 1 == delivery.attempts


@pytest.mark.parametrize(
    ("body", "metadata", "expected"),
    [
        (base64.b64encode(b'{"a":1}').decode(), {"CF-Content-Type": "json"}, b'{"a":1}'),
        ('{"a":1}', {"CF-Content-Type": "json"}, b'{"a":1}'),
        ("1234", {"CF-Content-Type": "json"}, b"1234"),
        ("aGVsbG8=", {"CF-Content-Type": "text"}, b"aGVsbG8="),
        (base64.b64encode(b"\x00\xff").decode(), {"CF-Content-Type": "bytes"}, b"\x00\xff"),
        ("not base64!", {"CF-Content-Type": "bytes"}, b"not base64!"),
        ("/w8AAA==", {"CF-Content-Type": "v8"}, b"/w8AAA=="),
        ("{not json", {"CF-Content-Type": "json"}, b"{not json"),
        (base64.b64encode(b'{"a":1}').decode(), None, b'{"a":1}'),
        ('{"a":1}', "opaque", b'{"a":1}'),
    ],
    ids=[
        "json-base64",
        "json-plain",
        "json-b64-lookalike",
        "text",
        "bytes",
        "bytes-broken",
        "v8",
        "json-broken",
        "metadata-null",
        "metadata-string",
    ],
)
def test_decode_body(body: str, metadata: object, expected: bytes) -> None:
    """Bodies are decoded by content type, defensively; unusable ones stay raw."""
    assert expected == decode_body(body, metadata)


def test_poison_bodies_are_delivered_raw_and_dead_lettered(emulator: CloudflareEmulator) -> None:
    """A v8 or broken body is delivered as its raw text and can be dead-lettered with a reason."""
    dlq = emulator.create_queue()
    queue_id = emulator.create_queue()
    emulator.inject_message(queue_id, b"\xff\x0fv8-structured-clone", content_type="v8")
    queue = make_queue(emulator, queue_id, dlq_queue_id=dlq)

    [delivery] = queue.receive(1, wait_seconds=0)
    queue.dead_letter(delivery, "not JSON: v8 body")

    expected_raw = base64.b64encode(b"\xff\x0fv8-structured-clone")
    [letter] = emulator.messages(dlq)
    assert expected_raw == delivery.body
    assert "json" == letter.content_type
    assert {
        "body": expected_raw.decode(),
        "body_encoding": "text",
        "reason": "not JSON: v8 body",
        "message_id": delivery.queue_message_id,
        "attempts": 1,
        "queue_id": queue_id,
    } == {k: v for k, v in letter.body.items() if k != "dead_at"}
    assert [] == emulator.messages(queue_id)
    assert [delivery.queue_message_id] == emulator.acked(queue_id)


def test_dead_letter_keeps_json_bodies_as_json(emulator: CloudflareEmulator) -> None:
    """A JSON body is published to the DLQ as JSON, not as an escaped string."""
    dlq = emulator.create_queue()
    queue_id = emulator.create_queue()
    emulator.inject_message(queue_id, {"type": "nope", "date": "2026-11-24"})
    queue = make_queue(emulator, queue_id, dlq_queue_id=dlq)

    [delivery] = queue.receive(1, wait_seconds=0)
    queue.dead_letter(delivery, "unknown type 'nope'")

    [letter] = emulator.messages(dlq)
    assert {"type": "nope", "date": "2026-11-24"} == letter.body["body"]
    assert "json" == letter.body["body_encoding"]


def test_dead_letter_without_dlq_goes_to_the_store(
    emulator: CloudflareEmulator, tmp_path: Path
) -> None:
    """With no DLQ queue, the dead letter is written to the store and the message acked."""
    store = FileObjectStore(tmp_path / "store")
    queue_id = emulator.create_queue()
    emulator.inject_message(queue_id, "garbage", content_type="text")
    queue = make_queue(emulator, queue_id, dead_letter_store=store)

    [delivery] = queue.receive(1, wait_seconds=0)
    queue.dead_letter(delivery, "not JSON")

    [stored] = list(store.list("dead-letters/"))
    [record] = list(store.list("dead-letter-records/"))
    data, _ = store.get(stored.key)
    assert stored.key.endswith(f"/{delivery.queue_message_id}.json")
    assert "garbage" == json.loads(data)["body"]
    assert "not JSON" == json.loads(data)["reason"]
    assert "sent" == json.loads(store.get(record.key)[0])["state"]
    assert [delivery.queue_message_id] == emulator.acked(queue_id)


def test_retry_delay_is_capped_and_whole(emulator: CloudflareEmulator) -> None:
    """Retry delays go out as whole seconds, at most 12 hours; no delay is omitted."""
    queue_id = emulator.create_queue(max_retries=10)
    for n in range(3):
        emulator.inject_message(queue_id, {"n": n})
    queue = make_queue(emulator, queue_id)
    first, second, third = queue.receive(3, wait_seconds=0)

    queue.retry(first, 10**6)
    queue.retry(second, 1.2)
    queue.retry(third, 0)

    retries = [e.request_json()["retries"][0] for e in emulator.exchanges("/messages/ack")]
    assert [43_200, 2, None] == [r.get("delay_seconds") for r in retries]


def test_late_ack_is_accepted(emulator: CloudflareEmulator) -> None:
    """As on Cloudflare, an ack after the lease expired and moved on still succeeds."""
    queue_id = emulator.create_queue(max_retries=10)
    emulator.inject_message(queue_id, {"n": 1})
    slow = make_queue(emulator, queue_id, visibility_timeout=0.3)
    fast = make_queue(emulator, queue_id, visibility_timeout=60)
    [stale] = slow.receive(1, wait_seconds=0)
    [fresh] = receive_until(fast, 1, timeout=3)

    slow.ack(stale)

    assert 2 == fresh.attempts
    assert [] == emulator.messages(queue_id)


def test_max_retries_moves_to_the_configured_dlq(emulator: CloudflareEmulator) -> None:
    """After ``max_retries`` attempts the emulated queue hands the message to its DLQ."""
    dlq = emulator.create_queue()
    queue_id = emulator.create_queue(max_retries=2, dead_letter_queue=dlq)
    emulator.inject_message(queue_id, {"n": 1})
    queue = make_queue(emulator, queue_id)

    [first] = queue.receive(1, wait_seconds=0)
    queue.retry(first, 0)
    [second] = queue.receive(1, wait_seconds=0)
    queue.retry(second, 0)
    after = queue.receive(1, wait_seconds=0)

    assert [] == after
    assert [{"n": 1}] == [m.body for m in emulator.messages(dlq)]


def test_receive_backs_off_between_empty_pulls(emulator: CloudflareEmulator) -> None:
    """Waiting on an empty queue pulls a few times with growing pauses, not in a tight loop."""
    queue_id = emulator.create_queue()
    queue = make_queue(emulator, queue_id, poll_min=0.1, poll_max=0.4)

    start = time.monotonic()
    got = queue.receive(1, wait_seconds=1.5)
    elapsed = time.monotonic() - start

    pulls = len(emulator.exchanges("/messages/pull"))
    assert [] == got
    assert 1.4 <= elapsed < 2.5
    # 0.1 + 0.2 + 0.4 + 0.4 + 0.4 ≈ 1.5 s: six pulls, give or take one.
    assert 4 <= pulls <= 8


def test_send_json_when_lossless_else_text(emulator: CloudflareEmulator) -> None:
    """Compact JSON goes out as ``json``; anything else as ``text``; binary is refused."""
    queue_id = emulator.create_queue()
    queue = make_queue(emulator, queue_id)

    queue.send(b'{"date":"2026-11-24","type":"reprocess"}')
    queue.send(b'{"date": "2026-11-24"}')
    with pytest.raises(QueueError, match="UTF-8"):
        queue.send(b"\xff\xfe")

    sent = [e.request_json() for e in emulator.exchanges("/messages")]
    assert [
        {"body": {"date": "2026-11-24", "type": "reprocess"}, "content_type": "json"},
        {"body": '{"date": "2026-11-24"}', "content_type": "text"},
    ] == sent


def test_oversized_message_is_a_queue_error(emulator: CloudflareEmulator) -> None:
    """A body over 128 KB is refused by the API and reported as ``QueueError``."""
    queue_id = emulator.create_queue()
    queue = make_queue(emulator, queue_id)

    with pytest.raises(QueueError, match="10204"):
        queue.send(b"x" * 130_000)


def test_stats_report_the_backlog_of_the_last_pull(emulator: CloudflareEmulator) -> None:
    """``ready`` is the last pull's backlog; other counts are unknown."""
    queue_id = emulator.create_queue()
    for n in range(4):
        emulator.inject_message(queue_id, {"n": n})
    queue = make_queue(emulator, queue_id)
    before = queue.stats()

    queue.receive(1, wait_seconds=0)

    assert before.ready is None
    assert (4, None, None, None) == (
        queue.stats().ready,
        queue.stats().in_flight,
        queue.stats().delayed,
        queue.stats().dead,
    )


def test_unknown_queue_is_a_configuration_error(emulator: CloudflareEmulator) -> None:
    """A queue id that does not exist names CF_QUEUE_ID."""
    queue = make_queue(emulator, "f" * 32)

    with pytest.raises(QueueConfigurationError, match="CF_QUEUE_ID"):
        queue.receive(1, wait_seconds=0)


def test_malformed_dlq_id_names_the_dlq_setting(emulator: CloudflareEmulator) -> None:
    """A malformed dead-letter queue id is a configuration error naming CF_DLQ_QUEUE_ID."""
    queue_id = emulator.create_queue()
    emulator.inject_message(queue_id, {"n": 1})
    queue = make_queue(emulator, queue_id, dlq_queue_id="not-a-queue-id")
    [delivery] = queue.receive(1, wait_seconds=0)

    with pytest.raises(QueueConfigurationError, match="CF_DLQ_QUEUE_ID"):
        queue.dead_letter(delivery, "bad")

    assert 1 == len(emulator.messages(queue_id))


def test_wrong_token_is_a_configuration_error(emulator: CloudflareEmulator) -> None:
    """A token the API refuses (403) is fatal, names CF_API_TOKEN, and is not retried."""
    queue_id = emulator.create_queue()
    client = CloudflareClient(
        api_endpoint=emulator.url, token="wrong-token", account_id=emulator.account_id
    )
    queue = CloudflareQueue(client, queue_id=queue_id)

    with pytest.raises(QueueConfigurationError, match="CF_API_TOKEN") as info:
        queue.receive(1, wait_seconds=0)

    assert "wrong-token" not in str(info.value)
    assert 1 == len(emulator.exchanges("/messages/pull"))


def test_outage_is_queue_unavailable(emulator: CloudflareEmulator) -> None:
    """Persistent 5xx answers become ``QueueUnavailable`` after the retries."""
    queue_id = emulator.create_queue()
    emulator.fail_next(None, status=503)
    queue = make_queue(emulator, queue_id)

    with pytest.raises(QueueUnavailable):
        queue.receive(1, wait_seconds=0)

    assert 3 == len(emulator.exchanges("/messages/pull"))


def test_receive_recovers_from_a_rate_limit(emulator: CloudflareEmulator) -> None:
    """A 429 on pull is retried and the message still arrives."""
    queue_id = emulator.create_queue()
    emulator.inject_message(queue_id, {"n": 1})
    emulator.fail_next(1, status=429, retry_after=0, path_contains="/messages/pull")
    queue = make_queue(emulator, queue_id)

    with capture_logs() as logs:
        [delivery] = queue.receive(1, wait_seconds=0)

    assert {"n": 1} == json.loads(delivery.body)
    assert [429, 200] == [e.status for e in emulator.exchanges("/messages/pull")]
    assert not any(emulator.token in str(entry) for entry in logs)


# --- lost replies: the API did what was asked, the answer never came ----------------
#
# The emulator applies the request, then drops the connection before the reply.
# The client sends a request again by itself after a broken connection (up to
# three attempts in tests), except a dead letter's publish; the service may run
# an operation again after QueueUnavailable.


@pytest.fixture
def store(tmp_path: Path) -> FileObjectStore:
    """The object store the queue keeps its dead letters' records in."""
    return FileObjectStore(tmp_path / "store")


def test_lost_pull_reply_hides_its_messages_until_the_visibility_timeout(
    emulator: CloudflareEmulator,
) -> None:
    """The pull sent again gets the next message; the lost one is back after the visibility."""
    queue_id = emulator.create_queue(max_retries=10)
    first = emulator.inject_message(queue_id, {"n": 1})
    second = emulator.inject_message(queue_id, {"n": 2})
    queue = make_queue(emulator, queue_id, visibility_timeout=1.0, batch_size=1)
    rule = emulator.drop_reply_next(path_contains="/messages/pull")

    [got] = queue.receive(1, wait_seconds=0)
    hidden = queue.receive(1, wait_seconds=0)
    started = time.monotonic()
    [back] = receive_until(queue, 1, timeout=5)
    waited = time.monotonic() - started

    assert 1 == rule.dropped
    assert (second, []) == (got.queue_message_id, hidden)
    assert (first, 2) == (back.queue_message_id, back.attempts)
    assert 0.5 <= waited < 3.0  # what was left of its 1 s visibility, give or take a poll
    queue.ack(got)
    queue.ack(back)
    assert [] == emulator.messages(queue_id)


@pytest.mark.parametrize("lost", [1, 3], ids=["sent-again", "given-up-then-re-run"])
def test_ack_after_a_lost_reply_is_done_once_and_nothing_comes_back(
    emulator: CloudflareEmulator, lost: int
) -> None:
    """An ack repeated (by the client, or by the caller after QueueUnavailable) changes nothing."""
    queue_id = emulator.create_queue(max_retries=10)
    emulator.inject_message(queue_id, {"n": 1})
    queue = make_queue(emulator, queue_id)
    [delivery] = queue.receive(1, wait_seconds=0)
    emulator.drop_reply_next(lost, path_contains="/messages/ack")

    if lost == 3:
        with pytest.raises(QueueUnavailable):
            queue.ack(delivery)
    queue.ack(delivery)
    queue.retry(delivery, 0)  # even a retry naming the acked lease brings nothing back
    emulator.expire_leases(queue_id)

    assert [delivery.queue_message_id] == emulator.acked(queue_id)
    assert [] == emulator.messages(queue_id)
    assert [] == queue.receive(1, wait_seconds=0)
    assert all(e.status == 200 for e in emulator.exchanges("/messages/ack"))


def test_retry_after_a_lost_reply_puts_the_message_back_once(emulator: CloudflareEmulator) -> None:
    """A retry sent again after its reply was lost leaves one message, one attempt more."""
    queue_id = emulator.create_queue(max_retries=10)
    emulator.inject_message(queue_id, {"n": 1})
    queue = make_queue(emulator, queue_id)
    [delivery] = queue.receive(1, wait_seconds=0)
    rule = emulator.drop_reply_next(path_contains="/messages/ack")

    queue.retry(delivery, 0)
    [again] = queue.receive(10, wait_seconds=0)

    assert 1 == rule.dropped
    assert 2 == len(emulator.exchanges("/messages/ack"))
    assert (delivery.queue_message_id, 2) == (again.queue_message_id, again.attempts)
    assert 1 == len(emulator.messages(queue_id))


def _dead_letter_setup(
    emulator: CloudflareEmulator, store: FileObjectStore
) -> tuple[str, str, CloudflareQueue, Delivery]:
    dlq = emulator.create_queue()
    queue_id = emulator.create_queue(max_retries=10)
    emulator.inject_message(queue_id, {"type": "nope", "date": "2026-11-24"})
    queue = make_queue(emulator, queue_id, dlq_queue_id=dlq, dead_letter_store=store)
    [delivery] = queue.receive(1, wait_seconds=0)
    return dlq, queue_id, queue, delivery


def _record_state(store: FileObjectStore) -> str:
    [record] = list(store.list("dead-letter-records/"))
    state: str = json.loads(store.get(record.key)[0])["state"]
    return state


def test_dead_letter_publish_reply_lost_then_re_run_gives_one_letter(
    emulator: CloudflareEmulator, store: FileObjectStore
) -> None:
    """The publish landed unanswered: not sent again, and a re-run publishes no second letter."""
    dlq, queue_id, queue, delivery = _dead_letter_setup(emulator, store)
    rule = emulator.drop_reply_next(path_contains=f"/queues/{dlq}/messages", method="POST")

    with pytest.raises(QueueUnavailable, match="not sent again"):
        queue.dead_letter(delivery, "unknown type 'nope'")
    assert "unconfirmed" == _record_state(store)
    with capture_logs() as logs:
        queue.dead_letter(delivery, "unknown type 'nope'")

    assert 1 == rule.dropped
    assert 1 == len(emulator.exchanges(f"/queues/{dlq}/messages"))
    [letter] = emulator.messages(dlq)
    assert ("unknown type 'nope'", delivery.queue_message_id) == (
        letter.body["reason"],
        letter.body["message_id"],
    )
    assert [delivery.queue_message_id] == emulator.acked(queue_id)
    assert "queue.dead_letter_unconfirmed" in [entry["event"] for entry in logs]


def test_dead_letter_whose_ack_failed_is_not_published_again(
    emulator: CloudflareEmulator, store: FileObjectStore
) -> None:
    """Published, then the ack's replies were all lost: the re-run only acks."""
    dlq, queue_id, queue, delivery = _dead_letter_setup(emulator, store)
    emulator.drop_reply_next(3, path_contains="/messages/ack")

    with pytest.raises(QueueUnavailable):
        queue.dead_letter(delivery, "bad")
    queue.dead_letter(delivery, "bad")

    assert "sent" == _record_state(store)
    assert 1 == len(emulator.messages(dlq))
    assert [delivery.queue_message_id] == emulator.acked(queue_id)


def test_dead_letter_redelivered_after_its_ack_was_lost_is_not_published_again(
    emulator: CloudflareEmulator, store: FileObjectStore
) -> None:
    """The record is keyed by Cloudflare's message id: a new lease of the same message finds it."""
    dlq, queue_id, queue, delivery = _dead_letter_setup(emulator, store)
    emulator.fail_next(3, status=503, path_contains="/messages/ack")  # the ack never lands
    with pytest.raises(QueueUnavailable):
        queue.dead_letter(delivery, "bad")
    emulator.expire_leases(queue_id)
    [again] = queue.receive(1, wait_seconds=0)

    queue.dead_letter(again, "bad")

    assert again.lease_token != delivery.lease_token
    assert 1 == len(emulator.messages(dlq))
    assert [delivery.queue_message_id] == emulator.acked(queue_id)


def test_dead_letter_refused_by_the_api_is_published_on_the_re_run(
    emulator: CloudflareEmulator, store: FileObjectStore
) -> None:
    """A publish the API answered with errors did not land: the re-run publishes it."""
    dlq, queue_id, queue, delivery = _dead_letter_setup(emulator, store)
    emulator.fail_next(3, status=503, path_contains=f"/queues/{dlq}/messages")

    with pytest.raises(QueueUnavailable):
        queue.dead_letter(delivery, "bad")
    assert "pending" == _record_state(store)
    queue.dead_letter(delivery, "bad")

    assert "sent" == _record_state(store)
    assert 1 == len(emulator.messages(dlq))
    assert [delivery.queue_message_id] == emulator.acked(queue_id)


def test_dead_letter_to_the_store_re_run_writes_one_letter(
    emulator: CloudflareEmulator, store: FileObjectStore
) -> None:
    """Without a DLQ queue the letter goes to the store, under the same key on a re-run."""
    queue_id = emulator.create_queue(max_retries=10)
    emulator.inject_message(queue_id, "garbage", content_type="text")
    queue = make_queue(emulator, queue_id, dead_letter_store=store)
    [delivery] = queue.receive(1, wait_seconds=0)
    emulator.drop_reply_next(3, path_contains="/messages/ack")

    with pytest.raises(QueueUnavailable):
        queue.dead_letter(delivery, "not JSON")
    queue.dead_letter(delivery, "not JSON")

    assert 1 == len(list(store.list("dead-letters/")))
    assert [delivery.queue_message_id] == emulator.acked(queue_id)


def test_send_after_a_lost_reply_lands_twice_with_one_body(emulator: CloudflareEmulator) -> None:
    """The publish API has no idempotency key: two copies, one body, so one message_id and one run."""
    queue_id = emulator.create_queue()
    queue = make_queue(emulator, queue_id)
    emulator.drop_reply_next(path_contains=f"/queues/{queue_id}/messages", method="POST")
    body = b'{"date":"2026-11-24","message_id":"m-1","type":"start_daily_ingest"}'

    queue.send(body)

    assert [body, body] == [m.raw() for m in emulator.messages(queue_id)]
