"""Edge cases of the Worker's checks: timestamps, header shapes, sizes, configuration."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import urllib3
from standardwebhooks.webhooks import Webhook

from atlasreg_cursor.domain.errors import NotificationRejected, SignatureMismatch
from atlasreg_cursor.domain.signing import WebhookSigner, WebhookVerifier
from tests.support.services import missing_service
from tests.support.worker_runtime import (
    BROKEN_SECRET,
    CURRENT_SECRET,
    WORKER_DIR,
    WorkerRuntime,
)
from tests.worker.support import (
    COMPLETE_PATH,
    ERROR_PATH,
    count,
    failure,
    handled,
    logged,
    notifier,
    post,
    published,
    raw_post,
    signed_post,
    standard_headers,
)

pytestmark = pytest.mark.worker

LIMIT = 1024 * 1024  # MAX_BODY_BYTES of hooks.js


# --- signatures and timestamps --------------------------------------------------------


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

    assert (401, "webhook-timestamp is more than 300 s away from now") == (
        answer.status,
        answer.reason,
    )
    with pytest.raises(SignatureMismatch, match="outside the tolerance"):
        WebhookVerifier([CURRENT_SECRET], accept_legacy=True).verify(notification.body, headers)


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
        ("only-v2", "webhook-signature has no well-formed v1 signature"),
        ("v1-not-base64", "webhook-signature has no well-formed v1 signature"),
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
        "v1-not-base64": {
            **standard_headers(CURRENT_SECRET, wid, now, body),
            "webhook-signature": "v1,***",
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


@pytest.mark.parametrize(
    "malformed",
    [
        pytest.param("v1,***", id="not-base64"),
        pytest.param("v1,", id="empty"),
        pytest.param("v1", id="no-comma"),
        pytest.param("v1,AAAA", id="too-short"),
        pytest.param("v1,AAAA,BBBB", id="two-commas"),
    ],
)
def test_malformed_v1_entry_before_a_valid_one_is_accepted(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, malformed: str
) -> None:
    """A malformed entry is skipped, not fatal: the valid entry after it decides, on both sides."""
    notification = failure()
    headers = WebhookSigner(CURRENT_SECRET, legacy=False).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )
    headers["webhook-signature"] = f"{malformed} {headers['webhook-signature']}"

    answer = post(http, worker_runtime.url("main") + ERROR_PATH, notification.body, headers)
    handled(worker_runtime, "hook.processing_error", notification.webhook_id, notification.run_id)

    assert 204 == answer.status
    assert notification.webhook_id == WebhookVerifier([CURRENT_SECRET]).verify(
        notification.body, headers
    )


# --- request shapes -------------------------------------------------------------------


def test_unknown_path_is_404(worker_runtime: WorkerRuntime, http: urllib3.PoolManager) -> None:
    """Paths other than the two hook paths are not found."""
    answer = post(http, worker_runtime.url("main") + "/api/v1/hooks/other", b"{}", {})

    assert 404 == answer.status


def test_wrong_method_is_405(worker_runtime: WorkerRuntime, http: urllib3.PoolManager) -> None:
    """A GET on a hook path says to use POST."""
    answer = post(http, worker_runtime.url("main") + COMPLETE_PATH, b"", {}, method="GET")

    assert (405, "POST") == (answer.status, answer.headers.get("Allow"))


def test_event_type_must_match_the_path(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A signed ``processing_error`` body sent to the ingest-complete path is a 400."""
    notification = attrs.evolve(failure(), path=COMPLETE_PATH)

    with pytest.raises(NotificationRejected) as info:
        notifier(worker_runtime, WebhookSigner(CURRENT_SECRET)).send(notification)
    answer = signed_post(http, worker_runtime.url("main") + COMPLETE_PATH, notification)

    assert 400 == info.value.status_code
    assert (400, 'event_type must be "ingest_complete" on this path') == (
        answer.status,
        answer.reason,
    )
    assert 0 == count(worker_runtime, "hook.processing_error", notification.run_id)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_body_over_one_mib_is_413_from_its_content_length(worker_runtime: WorkerRuntime) -> None:
    """A ``Content-Length`` over the limit is refused before any of the body is sent."""
    answer = raw_post(
        worker_runtime.url("main") + ERROR_PATH, {"Content-Length": str(LIMIT + 1)}, b""
    )

    assert (413, "the body is larger than 1048576 bytes") == (answer.status, answer.reason)


def test_chunked_body_over_one_mib_is_413(worker_runtime: WorkerRuntime) -> None:
    """
    A body with no length is refused once it passes the limit, without waiting for its end.

    The chunks total one byte over the limit; neither the line ending of the
    last one nor the closing chunk is sent, so the Worker reads everything
    sent before it answers.
    """
    frames = [b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(b" " * LIMIT, 64 * 1024)]
    sent = b"".join(frames) + b"1\r\n "

    answer = raw_post(
        worker_runtime.url("main") + ERROR_PATH, {"Transfer-Encoding": "chunked"}, sent
    )

    assert (413, "the body is larger than 1048576 bytes") == (answer.status, answer.reason)


def test_chunked_body_within_the_limit_is_verified_whole(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A signed body sent in small chunks, with no length, is put back together and accepted."""
    notification = failure()
    headers = WebhookSigner(CURRENT_SECRET).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )

    answer = post(
        http,
        worker_runtime.url("main") + ERROR_PATH,
        _chunks(notification.body, 7),
        headers,
        chunked=True,
    )

    assert 204 == answer.status
    handled(worker_runtime, "hook.processing_error", notification.webhook_id, notification.run_id)


# --- configuration --------------------------------------------------------------------


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


def test_missing_secret_is_500(worker_runtime: WorkerRuntime, http: urllib3.PoolManager) -> None:
    """With no ``HOOK_HMAC_SECRET`` nothing can be verified: 500, so the Cursor retries."""
    notification = failure()

    answer = signed_post(http, worker_runtime.url("unconfigured") + ERROR_PATH, notification)

    assert (500, "the Worker is misconfigured: HOOK_HMAC_SECRET is not set") == (
        answer.status,
        answer.reason,
    )
    assert 0 == count(worker_runtime, "hook.processing_error", notification.run_id)


@pytest.mark.parametrize(
    ("worker", "status"),
    [
        pytest.param("main", 401, id="toml-false"),
        pytest.param("legacy", 204, id="string-true"),
        pytest.param("legacy-toml", 204, id="toml-true"),
    ],
)
def test_accept_legacy_signature_as_toml_or_string(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager, worker: str, status: int
) -> None:
    """``ACCEPT_LEGACY_SIGNATURE`` is read as wrangler delivers it: a boolean or a string."""
    notification = failure()
    vars_ = tomllib.loads((WORKER_DIR / "wrangler.toml").read_text())["vars"]

    answer = signed_post(
        http,
        worker_runtime.url(worker) + ERROR_PATH,
        notification,
        WebhookSigner(CURRENT_SECRET, standard=False),
    )

    assert vars_["ACCEPT_LEGACY_SIGNATURE"] is False
    assert status == answer.status
    if status == 204:
        handled(worker_runtime, "hook.processing_error", None, notification.run_id)
    else:
        assert "ACCEPT_LEGACY_SIGNATURE is not" in answer.reason


def test_accept_legacy_signature_of_another_value_is_500(
    worker_runtime: WorkerRuntime, http: urllib3.PoolManager
) -> None:
    """A value that is neither true nor false is a configuration error, for every request."""
    notification = failure()

    answers = [
        signed_post(http, worker_runtime.url("legacy-invalid") + ERROR_PATH, notification, signer)
        for signer in (WebhookSigner(CURRENT_SECRET), WebhookSigner(CURRENT_SECRET, standard=False))
    ]

    expected = 'the Worker is misconfigured: ACCEPT_LEGACY_SIGNATURE must be true or false (or "true" / "false")'
    assert [(500, expected)] * 2 == [(a.status, a.reason) for a in answers]
    assert not any("yes" in a.body.decode() for a in answers)
    assert 0 == count(worker_runtime, "hook.processing_error", notification.run_id)


# --- the file teams edit --------------------------------------------------------------


def test_hooks_need_only_the_two_handlers_from_handlers_js(tmp_path: Path) -> None:
    """``src/`` still loads when ``handlers.js`` is replaced by one that exports only
    ``onIngestComplete`` and ``onProcessingError``, as a team may write it."""
    node = shutil.which("node")
    if node is None:
        missing_service("node (the Worker's modules are loaded by it)")
    for module in (WORKER_DIR / "src").glob("*.js"):
        shutil.copy(module, tmp_path / module.name)
    (tmp_path / "handlers.js").write_text(
        "export async function onIngestComplete() {}\n"
        "export async function onProcessingError() {}\n"
    )
    (tmp_path / "package.json").write_text('{"type": "module"}')
    script = "const m = await import('./index.js'); console.log(typeof m.default.fetch);"

    loaded = subprocess.run(
        [str(node), "--input-type=module", "-e", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert (0, "function") == (loaded.returncode, loaded.stdout.strip()), loaded.stderr
