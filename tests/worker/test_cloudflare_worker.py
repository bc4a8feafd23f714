"""The Worker of ``integrations/cloudflare-worker`` in workerd, against the real sender.

Webhooks come from the project's own ``WebhookNotifier`` over loopback HTTP
(both sides proven together), from the ``standardwebhooks`` package, and as
hand-made requests for the edge cases; the Gold in the Worker's R2 bucket is
built and hashed by the project's own code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from atlasreg_cursor.adapters.webhook import WebhookNotifier
from atlasreg_cursor.domain.errors import NotificationRejected
from atlasreg_cursor.domain.gold import (
    Company,
    Entity,
    EntityType,
    EventType,
    GoldErrorEntry,
    GoldEvent,
    SerializedGold,
    build_gold,
    serialize_gold,
)
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.notifications import Notification, ingest_complete, processing_error
from atlasreg_cursor.domain.runs import RunStatus, derive_run_id, gold_key
from atlasreg_cursor.domain.signing import WebhookSigner, WebhookVerifier
from tests.support.services import wait_until
from tests.support.worker_runtime import (
    BROKEN_SECRET,
    CURRENT_SECRET,
    PLAIN_SECRET,
    PREVIOUS_SECRET,
    WorkerRuntime,
    worker_runtime,  # noqa: F401
)

pytestmark = pytest.mark.worker

DAY = dt.date(2026, 11, 24)
COMPLETE_PATH = "/api/v1/hooks/ingest-complete"
ERROR_PATH = "/api/v1/hooks/processing-error"
OTHER_SECRET = "whsec_" + base64.b64encode(b"a key the Worker has never seen").decode()


@attrs.frozen
class Answer:
    """What the Worker answered."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def reason(self) -> str:
        """The ``error`` of a JSON error body."""
        reason: str = json.loads(self.body)["error"]
        return reason


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    """One connection pool for the hand-made requests."""
    pool = urllib3.PoolManager(num_pools=4, maxsize=4)
    yield pool
    pool.clear()


def post(
    http: urllib3.PoolManager,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str = "POST",
) -> Answer:
    """Send one request exactly as given."""
    response = http.request(
        method, url, body=body, headers=dict(headers), retries=False, redirect=False, timeout=30
    )
    return Answer(response.status, dict(response.headers), response.data)


def new_run_id() -> str:
    """A run id no other test uses."""
    return derive_run_id(MessageType.START_DAILY_INGEST, uuid.uuid4().hex)


def make_gold(run_id: str) -> SerializedGold:
    """A Gold with one event and one error, serialized and hashed by the project."""
    event = GoldEvent(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, run_id)),
        title="ANEEL multa transmissora",
        summary="Multa de R$ 1,25 milhão por falha na transmissão",
        event_type=EventType.MULTA,
        company=Company(id="c-1", name="Transmissora Exemplo S.A.", cnpj="00.000.000/0001-91"),
        amount=1250000.0,
        date=DAY.isoformat(),
        source="aneel_news",
        source_url="https://www.aneel.gov.br/noticias/1",
        confidence_score=0.93,
        is_critical=True,
        entities=(Entity(type=EntityType.MONEY, text="R$ 1,25 milhão", confidence=0.9),),
        tags=("transmissão",),
    )
    error = GoldErrorEntry(
        source_id="ons_ocorrencias",
        error_type="timeout",
        error_message="no answer in 30 s",
        timestamp="2026-11-24T09:10:00Z",
    )
    document = build_gold(
        run_id=run_id,
        date=DAY,
        generated_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        sources_processed=2,
        documents_count=1,
        events=[event],
        errors=[error],
    )
    return serialize_gold(document)


def complete(run_id: str, *, sha256: str, key: str | None = None) -> Notification:
    """The ``ingest_complete`` notification of *run_id*, as the ingest service builds it."""
    return ingest_complete(
        run_id=run_id,
        status=RunStatus.PARTIAL,
        completed_at=dt.datetime(2026, 11, 24, 9, 31, tzinfo=dt.UTC),
        file_path=key or gold_key(run_id, DAY),
        sha256=sha256,
        documents_count=1,
        errors_count=1,
        metadata={"nota": "transmissão"},
    )


def published(worker_runtime: WorkerRuntime) -> tuple[Notification, SerializedGold]:
    """Put a fresh Gold into R2; return its notification and the Gold."""
    run_id = new_run_id()
    gold = make_gold(run_id)
    worker_runtime.put(gold_key(run_id, DAY), gold.body)
    return complete(run_id, sha256=gold.sha256), gold


def failure(run_id: str | None = None) -> Notification:
    """A ``processing_error`` notification of a fresh run."""
    return processing_error(
        run_id=run_id or new_run_id(),
        error_type="ExecutorUnavailable",
        error_message="Core não respondeu",
        occurred_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        context={"date": DAY.isoformat(), "message_id": "m-1", "attempts": 5},
    )


def notifier(
    worker_runtime: WorkerRuntime, signer: WebhookSigner, worker: str = "main"
) -> WebhookNotifier:
    """The project's notifier pointed at one copy of the Worker, one attempt per send."""
    return WebhookNotifier(worker_runtime.url(worker), signer, timeout=30.0, attempts=1)


def handled(worker_runtime: WorkerRuntime, name: str, webhook_id: str | None, run_id: str) -> Any:
    """Wait for the handler's log event of one webhook."""
    return worker_runtime.wait_for_event(
        lambda e: (
            e["event"] == name and e.get("webhook_id") == webhook_id and e.get("run_id") == run_id
        )
    )


def logged(worker_runtime: WorkerRuntime, name: str, **fields: Any) -> Any:
    """Wait for a Worker log event *name* with these *fields*."""
    return worker_runtime.wait_for_event(
        lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())
    )


def count(worker_runtime: WorkerRuntime, name: str, run_id: str) -> int:
    """How many times the handler *name* ran for *run_id*."""
    return len(worker_runtime.events(lambda e: e["event"] == name and e.get("run_id") == run_id))


def standard_headers(secret: str, webhook_id: str, timestamp: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers computed here (``whsec_`` secrets), for shapes no library sends."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


# --- the project's own sender ------------------------------------------------------------


def test_notifier_ingest_complete_is_accepted(worker_runtime: WorkerRuntime) -> None:
    """Both schemes from WebhookNotifier verify, the Gold checks out, the handler sees it."""
    notification, gold = published(worker_runtime)

    receipt = notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(notification)
    event = handled(
        worker_runtime, "hook.ingest_complete", notification.webhook_id, notification.run_id
    )

    assert 204 == receipt.status_code
    assert gold.sha256 == event["sha256"]
    assert gold.size == event["size"]
    assert gold_key(notification.run_id, DAY) == event["file_path"]
    seen = worker_runtime.kv_get("main", f"webhook-id:{notification.webhook_id}")
    assert seen is not None
    assert notification.run_id == json.loads(seen)["run_id"]


def test_notifier_processing_error_is_accepted(worker_runtime: WorkerRuntime) -> None:
    """A ``processing_error`` webhook reaches its handler; no Gold is needed."""
    notification = failure()

    receipt = notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(notification)
    event = handled(
        worker_runtime, "hook.processing_error", notification.webhook_id, notification.run_id
    )

    assert 204 == receipt.status_code
    assert "ExecutorUnavailable" == event["error_type"]


@pytest.mark.parametrize(
    "signer",
    [
        pytest.param(WebhookSigner(PREVIOUS_SECRET), id="sender-not-yet-rotated"),
        pytest.param(WebhookSigner(CURRENT_SECRET, (PREVIOUS_SECRET,)), id="sender-rotating"),
        pytest.param(WebhookSigner(OTHER_SECRET, (CURRENT_SECRET,)), id="second-signature-matches"),
        pytest.param(WebhookSigner(PLAIN_SECRET), id="plain-secret-utf8-key"),
    ],
)
def test_rotated_secrets_are_accepted(worker_runtime: WorkerRuntime, signer: WebhookSigner) -> None:
    """Any configured secret, ``whsec_`` or plain, verifies; one matching entry is enough."""
    notification = failure()

    receipt = notifier(worker_runtime, signer).send(notification)
    handled(worker_runtime, "hook.processing_error", notification.webhook_id, notification.run_id)

    assert 204 == receipt.status_code


def test_wrong_secret_is_rejected(worker_runtime: WorkerRuntime) -> None:
    """A sender with a secret the Worker does not know gets 401; nothing is handled."""
    notification, _ = published(worker_runtime)

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, WebhookSigner(OTHER_SECRET)).send(notification)
    rejected = logged(worker_runtime, "hook.rejected", webhook_id=notification.webhook_id)

    assert 401 == info.value.status_code
    assert "no v1 signature matches a configured secret" == rejected["reason"]
    assert 0 == count(worker_runtime, "hook.ingest_complete", notification.run_id)


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


# --- the legacy X-Signature --------------------------------------------------------------


def test_legacy_only_is_refused_by_default(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """Without ``ACCEPT_LEGACY_SIGNATURE``, a request with only ``X-Signature`` gets 401."""
    notification = failure()
    signer = WebhookSigner(CURRENT_SECRET, standard=False)

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, signer).send(notification)
    same = post(
        http,
        worker_runtime.url("main") + ERROR_PATH,
        notification.body,
        signer.headers(notification.webhook_id, notification.body, timestamp=int(time.time())),
    )

    assert (401, 401) == (info.value.status_code, same.status)
    assert "ACCEPT_LEGACY_SIGNATURE is not" in same.reason
    assert 0 == count(worker_runtime, "hook.processing_error", notification.run_id)


def test_legacy_only_is_accepted_when_enabled(worker_runtime: WorkerRuntime) -> None:
    """With ``ACCEPT_LEGACY_SIGNATURE="true"`` the legacy hex HMAC alone is enough."""
    notification, gold = published(worker_runtime)
    signer = WebhookSigner(CURRENT_SECRET, standard=False)

    receipt = notifier(worker_runtime, signer, "legacy").send(notification)
    event = handled(worker_runtime, "hook.ingest_complete", None, notification.run_id)

    assert 204 == receipt.status_code
    assert gold.sha256 == event["sha256"]


@pytest.mark.parametrize(
    ("secret", "status"),
    [
        pytest.param(PREVIOUS_SECRET, 204, id="additional-secret-utf8"),
        pytest.param(OTHER_SECRET, 401, id="unknown-secret"),
    ],
)
def test_legacy_uses_utf8_bytes_of_each_secret(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, secret: str, status: int
) -> None:
    """The legacy key is the UTF-8 of the whole configured string, ``whsec_`` included."""
    notification = failure()
    headers = WebhookSigner(secret, standard=False).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )

    answer = post(http, worker_runtime.url("legacy") + ERROR_PATH, notification.body, headers)

    assert status == answer.status


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"X-Signature-Algorithm": "HMAC-SHA1"}, "X-Signature-Algorithm must be HMAC-SHA256"),
        ({"X-Signature": "abc"}, "X-Signature must be 64 hex digits"),
    ],
)
def test_legacy_header_shapes(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, change: dict[str, str], reason: str
) -> None:
    """A legacy request with another algorithm or a malformed digest is refused with a reason."""
    notification = failure()
    headers = WebhookSigner(CURRENT_SECRET, standard=False).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )

    answer = post(
        http, worker_runtime.url("legacy") + ERROR_PATH, notification.body, {**headers, **change}
    )

    assert (401, reason) == (answer.status, answer.reason)


def test_standard_headers_decide_when_present(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A bad ``v1`` signature is not rescued by a good ``X-Signature``, even with legacy on."""
    notification = failure()
    headers = WebhookSigner(CURRENT_SECRET).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )
    headers["webhook-signature"] = "v1," + base64.b64encode(b"\0" * 32).decode()

    answer = post(http, worker_runtime.url("legacy") + ERROR_PATH, notification.body, headers)

    assert 401 == answer.status
    assert "no v1 signature matches" in answer.reason


def test_a_sender_rotating_first_is_accepted_by_both_verifiers(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A new secret on the sender only: v1 matches by its second entry, and the
    X-Signature (keyed with the new secret alone) does not decide; the Worker and
    the Python verifier agree."""
    notification = failure()
    headers = WebhookSigner(OTHER_SECRET, (CURRENT_SECRET,)).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )
    assert "X-Signature" in headers

    answer = post(http, worker_runtime.url("main") + ERROR_PATH, notification.body, headers)

    assert 204 == answer.status
    assert notification.webhook_id == WebhookVerifier([CURRENT_SECRET]).verify(
        notification.body, headers
    )


# --- the standardwebhooks package as the sender ------------------------------------------


def test_standardwebhooks_signature_is_accepted(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A request signed by the reference library verifies in the Worker."""
    notification, _ = published(worker_runtime)
    now = dt.datetime.now(tz=dt.UTC)
    signature = Webhook(CURRENT_SECRET).sign(
        notification.webhook_id, now, notification.body.decode()
    )
    headers = {
        "webhook-id": notification.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": f"v1a,bm90IGVkMjU1MTk= {signature}",
        "content-type": "application/json",
    }

    answer = post(http, worker_runtime.url("main") + COMPLETE_PATH, notification.body, headers)

    assert 204 == answer.status
    handled(worker_runtime, "hook.ingest_complete", notification.webhook_id, notification.run_id)


def test_tampered_body_is_rejected(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """One changed byte after signing gets 401 and is not handled."""
    notification, _ = published(worker_runtime)
    now = dt.datetime.now(tz=dt.UTC)
    signature = Webhook(CURRENT_SECRET).sign(
        notification.webhook_id, now, notification.body.decode()
    )
    headers = {
        "webhook-id": notification.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    tampered = notification.body.replace(b'"partial"', b'"success"')

    answer = post(http, worker_runtime.url("main") + COMPLETE_PATH, tampered, headers)
    logged(worker_runtime, "hook.rejected", webhook_id=notification.webhook_id)

    assert tampered != notification.body
    assert (401, "no v1 signature matches a configured secret") == (answer.status, answer.reason)
    assert 0 == count(worker_runtime, "hook.ingest_complete", notification.run_id)


@pytest.mark.parametrize(
    ("offset", "status"),
    [
        pytest.param(-400, 401, id="stale"),
        pytest.param(+400, 401, id="future"),
        pytest.param(-240, 204, id="old-but-within-tolerance"),
    ],
)
def test_timestamp_tolerance(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, offset: int, status: int
) -> None:
    """Timestamps more than 300 s from now are refused, in either direction."""
    notification = failure()
    moment = dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=offset)
    headers = {
        "webhook-id": notification.webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(CURRENT_SECRET).sign(
            notification.webhook_id, moment, notification.body.decode()
        ),
    }

    answer = post(http, worker_runtime.url("main") + ERROR_PATH, notification.body, headers)

    assert status == answer.status
    if status == 401:
        assert "more than 300 s away from now" in answer.reason


def test_stale_timestamp_from_the_signer_is_rejected(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """The exact headers WebhookSigner makes for a delivery 10 minutes ago get 401."""
    notification = failure()
    headers = WebhookSigner(CURRENT_SECRET).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time()) - 600
    )

    answer = post(http, worker_runtime.url("legacy") + ERROR_PATH, notification.body, headers)

    assert 401 == answer.status


# --- request shapes ----------------------------------------------------------------------


def test_unsigned_request_is_rejected(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A request with no signature headers gets 401 with the reason."""
    notification = failure()

    answer = post(http, worker_runtime.url("main") + ERROR_PATH, notification.body, {})

    assert 401 == answer.status
    assert answer.reason.startswith("no signature headers")


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("missing-id", "missing webhook-id, webhook-timestamp or webhook-signature"),
        ("dot-in-id", "webhook-id must be"),
        ("13-digits", "webhook-timestamp must be 1-12 ASCII digits"),
        ("sign", "webhook-timestamp must be 1-12 ASCII digits"),
        ("decimal", "webhook-timestamp must be 1-12 ASCII digits"),
        ("arabic-digits", "webhook-timestamp must be 1-12 ASCII digits"),
        ("only-v2", "webhook-signature has no v1 signature"),
        ("too-many", "more than 16 signatures"),
    ],
)
def test_malformed_standard_headers(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, shape: str, reason: str
) -> None:
    """Correctly signed requests with malformed headers are refused with a clear reason."""
    body = failure().body
    now = str(int(time.time()))
    wid = "msg_" + uuid.uuid4().hex
    arabic = "".join(chr(0x0660 + int(d)) for d in now)  # ARABIC-INDIC digits
    headers: dict[str, str] = {
        "missing-id": {
            k: v
            for k, v in standard_headers(CURRENT_SECRET, wid, now, body).items()
            if k != "webhook-id"
        },
        "dot-in-id": standard_headers(CURRENT_SECRET, wid + ".x", now, body),
        "13-digits": standard_headers(CURRENT_SECRET, wid, "000" + now, body),
        "sign": standard_headers(CURRENT_SECRET, wid, "+" + now, body),
        "decimal": standard_headers(CURRENT_SECRET, wid, now + ".0", body),
        "arabic-digits": standard_headers(CURRENT_SECRET, wid, arabic, body),
        "only-v2": {
            **standard_headers(CURRENT_SECRET, wid, now, body),
            "webhook-signature": "v2,AAAA",
        },
        "too-many": {
            **standard_headers(CURRENT_SECRET, wid, now, body),
            "webhook-signature": " ".join(["v1,AAAA"] * 17),
        },
    }[shape]
    encoded = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}

    answer = post(http, worker_runtime.url("main") + ERROR_PATH, body, encoded)

    assert 401 == answer.status
    assert answer.reason.startswith(reason)


@pytest.mark.parametrize(
    ("signed_as", "status"),
    [
        pytest.param("integer", 204, id="signed-as-integer-like-the-reference-libraries"),
        pytest.param("header", 401, id="signed-as-sent"),
    ],
)
def test_timestamp_with_leading_zeros(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, signed_as: str, status: int
) -> None:
    """Leading zeros are still 1-12 ASCII digits; the timestamp is signed as a plain integer."""
    notification = failure()
    now = int(time.time())
    header = f"00{now}"
    headers = standard_headers(
        CURRENT_SECRET,
        notification.webhook_id,
        str(now) if signed_as == "integer" else header,
        notification.body,
    )
    reference = Webhook(CURRENT_SECRET).sign(
        notification.webhook_id, dt.datetime.fromtimestamp(now, dt.UTC), notification.body.decode()
    )

    answer = post(
        http,
        worker_runtime.url("main") + ERROR_PATH,
        notification.body,
        {**headers, "webhook-timestamp": header},
    )

    assert (reference == headers["webhook-signature"]) == (signed_as == "integer")
    assert status == answer.status


def test_unknown_path_is_404(worker_runtime: WorkerRuntime, http: urllib3.PoolManager) -> None:
    """Paths other than the two hook paths are not found."""
    answer = post(http, worker_runtime.url("main") + "/api/v1/hooks/other", b"{}", {})

    assert 404 == answer.status


def test_wrong_method_is_405(worker_runtime: WorkerRuntime, http: urllib3.PoolManager) -> None:
    """A GET on a hook path says to use POST."""
    answer = post(http, worker_runtime.url("main") + COMPLETE_PATH, b"", {}, method="GET")

    assert (405, "POST") == (answer.status, answer.headers.get("Allow"))


def test_event_type_must_match_the_path(worker_runtime: WorkerRuntime) -> None:
    """A signed ``processing_error`` body sent to the ingest-complete path is a 400."""
    notification = attrs.evolve(failure(), path=COMPLETE_PATH)

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(notification)

    assert 400 == info.value.status_code


def test_body_over_one_mib_is_413(worker_runtime: WorkerRuntime, http: urllib3.PoolManager) -> None:
    """An oversized body is refused before it is verified."""
    answer = post(http, worker_runtime.url("main") + ERROR_PATH, b" " * (1024 * 1024 + 1), {})

    assert 413 == answer.status


def test_misconfigured_secret_is_500_without_the_secret(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A ``whsec_`` secret that is not base64 is a 500 (retried) that does not show it."""
    notification = failure()
    headers = WebhookSigner(CURRENT_SECRET).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )

    answer = post(
        http, worker_runtime.url("misconfigured") + ERROR_PATH, notification.body, headers
    )

    assert 500 == answer.status
    assert "must be followed by base64" in answer.reason
    assert BROKEN_SECRET not in answer.body.decode()
    assert not worker_runtime.events(lambda e: BROKEN_SECRET in json.dumps(e))


_ID_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=".")


@settings(max_examples=25, deadline=None)
@given(
    body=st.binary(max_size=256),
    webhook_id=st.text(_ID_CHARS, min_size=1, max_size=40),
    position=st.integers(min_value=0),
)
def test_signer_and_worker_agree_on_any_bytes(
    worker_runtime: WorkerRuntime,
    http: urllib3.PoolManager,
    body: bytes,
    webhook_id: str,
    position: int,
) -> None:
    """Any body the signer signs verifies in the Worker (400: not a hook body); one flipped bit fails."""
    headers = WebhookSigner(CURRENT_SECRET, (PREVIOUS_SECRET,)).headers(
        webhook_id, body, timestamp=int(time.time())
    )
    flipped = bytearray(body or b"\0")
    flipped[position % len(flipped)] ^= 0x01
    url = worker_runtime.url("main") + ERROR_PATH

    signed = post(http, url, body, headers)
    tampered = post(http, url, bytes(flipped) if body else b"x", headers)

    assert 400 == signed.status
    assert 401 == tampered.status
