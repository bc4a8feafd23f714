"""The Gold check, the ``webhook-id`` dedupe, and what fails when R2, KV or a handler fails.

The ``failing`` copy of the Worker (``test/failing-worker.mjs``) is the real
Worker with faults switched on by marker objects in the bucket.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
import urllib3

from atlasreg_cursor.domain.errors import NotificationRejected, NotificationUnavailable
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import derive_run_id, gold_key
from atlasreg_cursor.domain.signing import WebhookSigner
from tests.support.services import wait_until
from tests.support.worker_runtime import (
    CURRENT_SECRET,
    WorkerRuntime,
)
from tests.worker.support import (
    COMPLETE_PATH,
    DAY,
    ERROR_PATH,
    complete,
    count,
    failure,
    handled,
    logged,
    make_gold,
    new_run_id,
    notifier,
    post,
    published,
    signed_post,
)

pytestmark = pytest.mark.worker


# --- replays --------------------------------------------------------------------------


def test_replayed_webhook_id_is_handled_once(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """The same notification sent twice gets 204 twice; the handler runs once."""
    notification, _ = published(worker_runtime)
    send = notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send

    first, second = send(notification), send(notification)
    third = post(
        http,
        worker_runtime.url("main") + COMPLETE_PATH,
        notification.body,
        WebhookSigner(CURRENT_SECRET).headers(
            notification.webhook_id, notification.body, timestamp=int(time.time())
        ),
    )
    worker_runtime.wait_for_event(
        lambda e: e["event"] == "hook.duplicate" and e["webhook_id"] == notification.webhook_id
    )

    assert (204, 204, 204) == (first.status_code, second.status_code, third.status)
    assert "true" == third.headers.get("X-Hook-Duplicate")
    assert 1 == count(worker_runtime, "hook.ingest_complete", notification.run_id)


def test_without_hook_seen_a_replay_is_handled_again(worker_runtime: WorkerRuntime) -> None:
    """With no ``HOOK_SEEN`` bound there is no dedupe: the handler must be idempotent."""
    notification = failure()
    send = notifier(worker_runtime, WebhookSigner(CURRENT_SECRET), "legacy").send

    send(notification)
    send(notification)

    assert wait_until(
        lambda: count(worker_runtime, "hook.processing_error", notification.run_id) == 2,
        timeout=30,
    )


# --- the Gold -------------------------------------------------------------------------


def test_gold_hash_mismatch_is_422(worker_runtime: WorkerRuntime) -> None:
    """A webhook whose ``sha256`` is not the stored Gold's is refused, and not retried."""
    notification, gold = published(worker_runtime)
    wrong = complete(notification.run_id, sha256=hashlib.sha256(gold.body + b" ").hexdigest())

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(wrong)
    logged(worker_runtime, "hook.gold_mismatch", run_id=notification.run_id)

    assert 422 == info.value.status_code
    assert 0 == count(worker_runtime, "hook.ingest_complete", notification.run_id)
    assert worker_runtime.kv_get("main", f"webhook-id:{wrong.webhook_id}") is None


def test_changed_gold_object_is_422(worker_runtime: WorkerRuntime) -> None:
    """A Gold object altered in the bucket after the hash was taken is refused."""
    notification, gold = published(worker_runtime)
    worker_runtime.put(gold_key(notification.run_id, DAY), gold.body.replace(b"2.0", b"2.1"))

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(notification)
    mismatch = worker_runtime.wait_for_event(
        lambda e: e["event"] == "hook.gold_mismatch" and e["run_id"] == notification.run_id
    )

    assert 422 == info.value.status_code
    assert gold.sha256 == mismatch["expected"]


def test_missing_gold_is_422(worker_runtime: WorkerRuntime) -> None:
    """A webhook naming a Gold that is not in the bucket is refused."""
    run_id = new_run_id()
    notification = complete(run_id, sha256=make_gold(run_id).sha256)

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(notification)
    missing = logged(worker_runtime, "hook.gold_missing", run_id=run_id)

    assert 422 == info.value.status_code
    assert gold_key(run_id, DAY) == missing["file_path"]
    assert 0 == count(worker_runtime, "hook.ingest_complete", run_id)


def test_missing_gold_then_published_is_accepted(worker_runtime: WorkerRuntime) -> None:
    """A refused webhook-id is not remembered: once the Gold is there, a resend is handled."""
    run_id = new_run_id()
    gold = make_gold(run_id)
    notification = complete(run_id, sha256=gold.sha256)
    send = notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send
    with pytest.raises(NotificationRejected):
        send(notification)

    worker_runtime.put(gold_key(run_id, DAY), gold.body)
    receipt = send(notification)

    assert 204 == receipt.status_code
    handled(worker_runtime, "hook.ingest_complete", notification.webhook_id, run_id)


@pytest.mark.parametrize(
    "shape",
    [
        "other-run",
        "not-a-calendar-date",
        "other-prefix",
        "journal",
        "extra-suffix",
        "dot-segments",
        "leading-slash",
        "upper-case-run-id",
    ],
)
def test_file_path_must_be_a_gold_key_of_the_run(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, shape: str
) -> None:
    """A ``file_path`` that is not this run's Gold key is a 422, even when the object exists."""
    run_id = new_run_id()
    gold = make_gold(run_id)
    key = {
        "other-run": gold_key(new_run_id(), DAY),
        "not-a-calendar-date": f"gold/2026-02-30/{run_id}.json",
        "other-prefix": f"silver/{DAY}/{run_id}.json",
        "journal": f"runs/{run_id}.json",
        "extra-suffix": gold_key(run_id, DAY) + ".bak",
        "dot-segments": f"gold/{DAY}/../{DAY}/{run_id}.json",
        "leading-slash": "/" + gold_key(run_id, DAY),
        "upper-case-run-id": f"gold/{DAY}/{run_id.upper()}.json",
    }[shape]
    worker_runtime.put(key, gold.body)
    notification = complete(run_id, sha256=gold.sha256, key=key)

    answer = signed_post(http, worker_runtime.url("main") + COMPLETE_PATH, notification)
    refused = logged(worker_runtime, "hook.gold_key_refused", run_id=run_id)

    assert 422 == answer.status
    assert answer.reason.startswith("result.file_path must be gold/<YYYY-MM-DD>/<run_id>.json")
    assert key == refused["file_path"]
    assert 0 == count(worker_runtime, "hook.ingest_complete", run_id)


def test_reprocessed_gold_key_is_accepted(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """The ``_reprocessed`` Gold of a reprocess run is a Gold key too."""
    run_id = derive_run_id(MessageType.REPROCESS, uuid.uuid4().hex)
    gold = make_gold(run_id)
    key = gold_key(run_id, DAY, reprocessed=True)
    worker_runtime.put(key, gold.body)
    notification = complete(run_id, sha256=gold.sha256, key=key)

    answer = signed_post(http, worker_runtime.url("main") + COMPLETE_PATH, notification)
    event = handled(worker_runtime, "hook.ingest_complete", notification.webhook_id, run_id)

    assert 204 == answer.status
    assert key == event["file_path"]


# --- failures on the Worker's side (the ``failing`` copy) --------------------------------

FAILING = "failing"


def fault(worker_runtime: WorkerRuntime, kind: str, name: str) -> str:
    """Switch a fault of ``test/failing-worker.mjs`` on; return its marker key."""
    marker = f"faults/{kind}/{name}"
    worker_runtime.put(marker, b"on")
    return marker


def seen(worker_runtime: WorkerRuntime, webhook_id: str) -> str | None:
    """What the ``failing`` copy's ``HOOK_SEEN`` holds for *webhook_id*."""
    return worker_runtime.kv_get(FAILING, f"webhook-id:{webhook_id}")


@pytest.mark.parametrize("event_type", ["ingest_complete", "processing_error"])
def test_failing_handler_is_500_and_the_resend_is_handled_once(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, event_type: str
) -> None:
    """A handler that throws answers 500 (the Cursor retries) and leaves the webhook-id
    unmarked; once it works, the resend is handled, and a further one is a duplicate."""
    if event_type == "ingest_complete":
        notification, _ = published(worker_runtime)
    else:
        notification = failure()
    marker = fault(worker_runtime, "handler", notification.run_id)
    url = worker_runtime.url(FAILING) + notification.path
    send = notifier(worker_runtime, WebhookSigner(CURRENT_SECRET), FAILING).send

    failed = signed_post(http, url, notification)
    with pytest.raises(NotificationUnavailable):
        send(notification)
    logged_failure = logged(
        worker_runtime, "hook.handler_failed", webhook_id=notification.webhook_id
    )
    unmarked = seen(worker_runtime, notification.webhook_id)
    worker_runtime.delete(marker)
    receipts = [send(notification), send(notification)]
    logged(worker_runtime, "hook.duplicate", webhook_id=notification.webhook_id)

    assert (500, "the webhook handler failed; it will be retried") == (failed.status, failed.reason)
    assert "injected handler failure" in logged_failure["error"]
    assert unmarked is None
    assert [204, 204] == [r.status_code for r in receipts]
    assert 1 == count(worker_runtime, f"hook.{event_type}", notification.run_id)
    assert seen(worker_runtime, notification.webhook_id) is not None


@pytest.mark.parametrize(
    "kind", [pytest.param("r2-get", id="get-throws"), pytest.param("r2-body", id="body-breaks")]
)
def test_r2_failure_is_503_and_the_resend_is_handled_once(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, kind: str
) -> None:
    """R2 failing, at once or while the Gold streams, is a 503; the resend is handled once,
    and the handler reads the Gold (``gold.json()``) only then."""
    notification, gold = published(worker_runtime)
    marker = fault(worker_runtime, kind, gold_key(notification.run_id, DAY))
    url = worker_runtime.url(FAILING) + COMPLETE_PATH

    failed = signed_post(http, url, notification)
    unmarked = seen(worker_runtime, notification.webhook_id)
    worker_runtime.delete(marker)
    resent = signed_post(http, url, notification)
    read = logged(worker_runtime, "test.gold_read", run_id=notification.run_id)
    # logged after test.gold_read: wait for it too before counting it
    handled(worker_runtime, "hook.ingest_complete", notification.webhook_id, notification.run_id)

    assert 503 == failed.status
    assert failed.reason.startswith("R2 is not answering: Error: injected R2")
    assert unmarked is None
    assert 204 == resent.status
    assert (notification.run_id, gold.size) == (read["gold_run_id"], read["bytes"])
    assert 1 == count(worker_runtime, "hook.ingest_complete", notification.run_id)


def test_gold_is_hashed_as_its_body_streams(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """The Gold check reads the R2 object's body stream, not a buffered copy: an object whose
    ``arrayBuffer()`` and ``text()`` throw on the first read is checked and accepted."""
    notification, gold = published(worker_runtime)
    key = gold_key(notification.run_id, DAY)
    fault(worker_runtime, "r2-buffer", key)
    url = worker_runtime.url(FAILING) + COMPLETE_PATH

    answer = signed_post(http, url, notification)
    logged(worker_runtime, "test.stream_only", file_path=key)  # the fault was on

    assert 204 == answer.status, answer.body
    read = logged(worker_runtime, "test.gold_read", run_id=notification.run_id)
    event = handled(
        worker_runtime, "hook.ingest_complete", notification.webhook_id, notification.run_id
    )
    assert (notification.run_id, gold.size) == (read["gold_run_id"], read["bytes"])
    assert (gold.sha256, gold.size) == (event["sha256"], event["size"])


def test_kv_failure_is_503_and_nothing_is_handled(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """``HOOK_SEEN`` failing is a 503 before the handler runs; the resend is handled once."""
    notification = failure()
    marker = fault(worker_runtime, "kv", notification.webhook_id)
    url = worker_runtime.url(FAILING) + ERROR_PATH

    failed = signed_post(http, url, notification)
    worker_runtime.delete(marker)
    resent = signed_post(http, url, notification)
    handled(worker_runtime, "hook.processing_error", notification.webhook_id, notification.run_id)

    assert 503 == failed.status
    assert failed.reason.startswith("HOOK_SEEN is not answering: Error: injected KV failure")
    assert 204 == resent.status
    assert 1 == count(worker_runtime, "hook.processing_error", notification.run_id)


def test_gold_replaced_before_the_handler_reads_it(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """``gold.json()`` reads the bytes that were checked or fails: a Gold replaced in R2
    after the check fails the handler (500), and the resend finds the mismatch (422)."""
    notification, _ = published(worker_runtime)
    fault(worker_runtime, "gold-changes", notification.run_id)
    url = worker_runtime.url(FAILING) + COMPLETE_PATH

    changed = signed_post(http, url, notification)
    failed = logged(worker_runtime, "hook.handler_failed", webhook_id=notification.webhook_id)
    resent = signed_post(http, url, notification)

    assert 500 == changed.status
    assert "changed after it was checked" in failed["error"]
    assert 422 == resent.status
    assert "the webhook says" in resent.reason
    assert seen(worker_runtime, notification.webhook_id) is None
    assert 0 == count(worker_runtime, "hook.ingest_complete", notification.run_id)
