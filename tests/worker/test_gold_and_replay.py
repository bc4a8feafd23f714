"""The Gold check and the ``webhook-id`` dedupe."""

from __future__ import annotations

import hashlib
import time

import pytest
import urllib3

from atlasreg_cursor.domain.errors import NotificationRejected
from atlasreg_cursor.domain.runs import gold_key
from atlasreg_cursor.domain.signing import WebhookSigner
from tests.support.services import wait_until
from tests.support.worker_runtime import (
    CURRENT_SECRET,
    WorkerRuntime,
)
from tests.worker.support import (
    COMPLETE_PATH,
    DAY,
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
