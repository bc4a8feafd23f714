"""The Worker and the Cursor's sender agree: what one signs, the other verifies.

Webhooks come from the project's own ``WebhookNotifier`` over loopback HTTP,
from its ``WebhookSigner``, and from the ``standardwebhooks`` package; the
Worker's ``verify.js`` is also run on chosen inputs (the ``probe`` copy) and
held against the Python ``WebhookVerifier``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import string
import time
from typing import Any

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from atlasreg_cursor.domain.errors import NotificationRejected, SignatureMismatch
from atlasreg_cursor.domain.runs import gold_key
from atlasreg_cursor.domain.signing import WebhookSigner, WebhookVerifier, standard_key
from tests.support.worker_runtime import (
    BROKEN_SECRET,
    CURRENT_SECRET,
    PLAIN_SECRET,
    PREVIOUS_SECRET,
    UNPADDED_SECRET,
    WorkerRuntime,
)
from tests.worker.support import (
    COMPLETE_PATH,
    DAY,
    ERROR_PATH,
    OTHER_SECRET,
    count,
    failure,
    handled,
    logged,
    notifier,
    post,
    published,
)

pytestmark = pytest.mark.worker


# --- the project's own sender ---------------------------------------------------------


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
        pytest.param(WebhookSigner(UNPADDED_SECRET), id="unpadded-whsec-secret"),
        pytest.param(WebhookSigner(UNPADDED_SECRET + "=="), id="same-key-written-padded"),
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


# --- the legacy X-Signature -----------------------------------------------------------


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


# --- the standardwebhooks package as the sender ---------------------------------------


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


# --- any input ------------------------------------------------------------------------


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


# --- verify.js held against the Python verifier ------------------------------------------

NOW = 1_764_000_000
B64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def probe(http: urllib3.PoolManager, worker_runtime: WorkerRuntime, path: str, **args: Any) -> Any:
    """Run ``verify.js`` in the ``probe`` copy of the Worker on *args*."""
    response = http.request(
        "POST",
        worker_runtime.url("probe") + path,
        body=json.dumps(args).encode(),
        headers={"content-type": "application/json"},
        retries=False,
        timeout=30,
    )
    assert 200 == response.status, response.data
    return json.loads(response.data)


def python_key(secret: str) -> dict[str, str]:
    """What ``standard_key`` makes of *secret*, in the probe's terms."""
    try:
        return {"hex": standard_key(secret).hex()}
    except ValueError as error:
        return {"config_error": f"secret #1: {error}"}


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(UNPADDED_SECRET, id="unpadded"),
        pytest.param(UNPADDED_SECRET + "=", id="partly-padded"),
        pytest.param(UNPADDED_SECRET + "==", id="padded"),
        pytest.param(UNPADDED_SECRET + "===", id="over-padded"),
        pytest.param("whsec_YWJj=", id="padding-where-none-is-needed"),
        pytest.param("whsec_YWI==", id="one-pad-too-many"),
        pytest.param("whsec_Y", id="one-char-too-many"),
        pytest.param("whsec_YR==", id="non-zero-trailing-bits"),
        pytest.param("whsec_", id="empty"),
        pytest.param("whsec_=", id="only-padding"),
        pytest.param("whsec_YQ==YQ==", id="padding-inside"),
        pytest.param("whsec_YW-_", id="url-safe-alphabet"),
        pytest.param("whsec_ YQ==", id="space"),
        pytest.param(BROKEN_SECRET, id="not-base64"),
        pytest.param(PLAIN_SECRET, id="plain"),
        pytest.param("WHSEC_YQ==", id="prefix-is-case-sensitive"),
    ],
)
def test_both_verifiers_read_a_whsec_secret_alike(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, secret: str
) -> None:
    """``standard_key`` and ``standardKeyBytes`` give the same key, or both refuse the secret."""
    assert python_key(secret) == probe(http, worker_runtime, "/standard-key", secret=secret)


@settings(max_examples=40, deadline=None)
@given(encoded=st.text(alphabet="AQYWJjgw+/=-_ ", max_size=9))
def test_any_whsec_spelling_is_read_alike(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, encoded: str
) -> None:
    """Over any short spelling after ``whsec_``, the two verifiers agree."""
    secret = "whsec_" + encoded

    assert python_key(secret) == probe(http, worker_runtime, "/standard-key", secret=secret)


@pytest.mark.parametrize(
    ("shape", "accepted"),
    [
        pytest.param("{valid}", True, id="valid"),
        pytest.param("v1,*** {valid}", True, id="malformed-then-valid"),
        pytest.param("{valid} v1,***", True, id="valid-then-malformed"),
        pytest.param("v1a,AAAA v2,{sig} {valid}", True, id="other-versions-then-valid"),
        pytest.param("{valid}  v1,x", True, id="double-space"),
        pytest.param("v1,{unpadded}", False, id="unpadded-signature"),
        pytest.param("v1,{sig}=", False, id="over-padded-signature"),
        pytest.param("v1,{noncanonical}", False, id="non-canonical-last-character"),
        pytest.param("v1,{longer}", False, id="33-bytes"),
        pytest.param("V1,{sig}", False, id="upper-case-version"),
        pytest.param("v1a,{sig}", False, id="v1a"),
        pytest.param("v1,***", False, id="only-malformed"),
        pytest.param("{others15} {valid}", True, id="16-entries-valid-last"),
        pytest.param("{others16} {valid}", False, id="17-entries-valid-last"),
        pytest.param("{valid} v1,{fill}", True, id="4096-characters"),
        pytest.param("{valid} v1,{fill}x", False, id="4097-characters"),
        pytest.param("{valid} v1,{junk}", False, id="valid-then-5000-character-entry"),
    ],
)
def test_both_verifiers_read_v1_entries_alike(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, shape: str, accepted: bool
) -> None:
    """Which ``webhook-signature`` spellings verify is the same in Python and in the Worker."""
    body = failure().body
    headers = WebhookSigner(CURRENT_SECRET, legacy=False).headers("msg_1", body, timestamp=NOW)
    valid = headers["webhook-signature"]
    sig = valid.removeprefix("v1,")
    last = B64_ALPHABET.index(sig[42])  # 32 bytes: its two low bits are padding
    noncanonical = sig[:42] + B64_ALPHABET[last ^ 1] + "="
    longer = base64.b64encode(base64.b64decode(sig) + b"\0").decode()
    many = tuple(f"an older secret {i}" for i in range(15))  # a sender with 16 secrets
    rotating = WebhookSigner(OTHER_SECRET, additional_secrets=many, legacy=False)
    others = rotating.headers("msg_1", body, timestamp=NOW)["webhook-signature"].split(" ")
    headers["webhook-signature"] = shape.format(
        valid=valid,
        sig=sig,
        unpadded=sig.rstrip("="),
        noncanonical=noncanonical,
        longer=longer,
        others15=" ".join(others[:15]),
        others16=" ".join(others),
        fill="x" * (4096 - len(f"{valid} v1,")),
        junk="x" * 5000,
    )
    try:
        WebhookVerifier([CURRENT_SECRET]).verify(body, headers, now=NOW)
        python = True
    except SignatureMismatch:
        python = False

    worker = probe(
        http,
        worker_runtime,
        "/verify",
        secrets=[CURRENT_SECRET],
        headers=headers,
        body=base64.b64encode(body).decode(),
        acceptLegacy=False,
        now=NOW,
    )

    assert (accepted, accepted) == (python, worker["ok"]), worker
    assert base64.b64decode(noncanonical) == base64.b64decode(sig)
