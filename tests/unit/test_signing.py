"""Webhook signing and verification, checked against the standardwebhooks package."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from atlasreg_cursor.domain.errors import SignatureMismatch
from atlasreg_cursor.domain.signing import (
    WebhookSigner,
    WebhookVerifier,
    standard_key,
    verify_legacy,
    verify_standard,
)

NOW = 1_764_000_000
secrets = st.one_of(
    st.binary(min_size=24, max_size=64).map(lambda b: "whsec_" + base64.b64encode(b).decode()),
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=8, max_size=40
    ).filter(lambda s: not s.startswith("whsec_")),
)
webhook_ids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)


@given(st.binary(max_size=300), secrets, webhook_ids)
def test_sign_then_verify_round_trips(body: bytes, secret: str, wid: str) -> None:
    """What the signer signs, the verifier accepts (both schemes)."""
    headers = WebhookSigner(secret).headers(wid, body, timestamp=NOW)

    WebhookVerifier((secret,)).verify(body, headers, now=NOW)

    assert wid == verify_standard(body, headers, [secret], now=NOW)


@given(st.binary(min_size=1, max_size=200), secrets, webhook_ids, st.data())
def test_any_changed_body_byte_fails(
    body: bytes, secret: str, wid: str, data: st.DataObject
) -> None:
    """Flipping any byte of the body breaks both signatures."""
    headers = WebhookSigner(secret).headers(wid, body, timestamp=NOW)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    changed = bytearray(body)
    changed[index] ^= 0x01

    with pytest.raises(SignatureMismatch):
        verify_standard(bytes(changed), headers, [secret], now=NOW)
    with pytest.raises(SignatureMismatch):
        verify_legacy(bytes(changed), headers, [secret])


@given(st.binary(max_size=100), secrets, webhook_ids, webhook_ids)
def test_changed_id_fails(body: bytes, secret: str, wid: str, other: str) -> None:
    """The webhook-id is part of what is signed."""
    assume(wid != other)
    headers = WebhookSigner(secret).headers(wid, body, timestamp=NOW)
    headers["webhook-id"] = other

    with pytest.raises(SignatureMismatch):
        verify_standard(body, headers, [secret], now=NOW)


@given(st.integers(min_value=301, max_value=10**6), st.booleans())
def test_stale_or_future_timestamps_fail(skew: int, future: bool) -> None:
    """Timestamps more than five minutes away are rejected."""
    body = b'{"a":1}'
    stamp = NOW + skew if future else NOW - skew
    headers = WebhookSigner("s3cr3t-value").headers("id1", body, timestamp=stamp)

    with pytest.raises(SignatureMismatch, match="tolerance"):
        verify_standard(body, headers, ["s3cr3t-value"], now=NOW)


def test_wrong_secret_fails() -> None:
    """A signature made with another secret does not verify."""
    headers = WebhookSigner("right-secret").headers("id1", b"{}", timestamp=NOW)

    with pytest.raises(SignatureMismatch):
        WebhookVerifier(("wrong-secret",)).verify(b"{}", headers, now=NOW)


def test_no_headers_fails() -> None:
    """A request with no signature at all is rejected."""
    with pytest.raises(SignatureMismatch, match="no signature"):
        WebhookVerifier(("s",)).verify(b"{}", {}, now=NOW)


@given(st.text(max_size=200).map(str.encode), secrets, webhook_ids)
def test_standardwebhooks_package_accepts_our_signature(body: bytes, secret: str, wid: str) -> None:
    """The reference implementation verifies what we sign."""
    assume(secret.startswith("whsec_"))
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = WebhookSigner(secret, legacy=False).headers(wid, body, timestamp=now)

    assert Webhook(secret).verify(body, headers, json_parse=False) is None


def test_rotation_gives_one_signature_per_secret() -> None:
    """Each additional secret adds a v1 signature that verifies on its own."""
    old, new = (
        "whsec_" + base64.b64encode(b"o" * 32).decode(),
        "whsec_" + base64.b64encode(b"n" * 32).decode(),
    )
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = WebhookSigner(new, additional_secrets=(old,)).headers("rot-1", b"{}", timestamp=now)

    assert 2 == len(headers["webhook-signature"].split(" "))
    assert {} == Webhook(old).verify(b"{}", headers)
    assert {} == Webhook(new).verify(b"{}", headers)


@pytest.mark.parametrize(("older", "accepted"), [(14, True), (15, False)])
def test_at_most_16_signatures_are_read(older: int, accepted: bool) -> None:
    """A header of 17 entries is refused even when its last one matches (as the Worker does)."""
    rotating = WebhookSigner("sender", additional_secrets=tuple(f"old {i}" for i in range(older)))
    headers = rotating.headers("many-1", b"{}", timestamp=NOW)
    headers["webhook-signature"] += (
        " " + WebhookSigner("receiver").headers("many-1", b"{}", timestamp=NOW)["webhook-signature"]
    )

    try:
        verify_standard(b"{}", headers, ["receiver"], now=NOW)
        verified = True
    except SignatureMismatch:
        verified = False

    assert accepted == verified


def test_signature_header_over_4096_characters_is_refused() -> None:
    """A matching entry followed by 5000 characters of junk is refused (as the Worker does)."""
    headers = WebhookSigner("k", legacy=False).headers("long-1", b"{}", timestamp=NOW)
    headers["webhook-signature"] += " v1," + "x" * 5000

    with pytest.raises(SignatureMismatch, match="too long"):
        verify_standard(b"{}", headers, ["k"], now=NOW)


def test_package_signature_verifies_with_ours() -> None:
    """Our verifier accepts what the reference implementation signs."""
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    moment = dt.datetime.fromtimestamp(NOW, dt.UTC)
    sig = Webhook(secret).sign("msg_1", moment, '{"x":1}')

    assert "msg_1" == verify_standard(
        b'{"x":1}',
        {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": sig},
        [secret],
        now=NOW,
    )


def test_legacy_uses_utf8_bytes_of_the_configured_string() -> None:
    """X-Signature is the hex HMAC with the string's UTF-8 bytes, even for whsec_ secrets."""
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    headers = WebhookSigner(secret).headers("id", b"body", timestamp=NOW)

    expected = hmac.new(secret.encode(), b"body", hashlib.sha256).hexdigest()
    assert expected == headers["X-Signature"]
    assert "HMAC-SHA256" == headers["X-Signature-Algorithm"]


def test_secret_is_not_in_repr() -> None:
    """The signer's repr never shows a secret."""
    assert "topsecret" not in repr(WebhookSigner("topsecret", additional_secrets=("topsecret2",)))


def test_package_rejects_tampered_body() -> None:
    """Independent check: the reference implementation rejects a changed body."""
    secret = "whsec_" + base64.b64encode(b"z" * 32).decode()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = WebhookSigner(secret).headers("id9", b'{"a":1}', timestamp=now)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        pytest.param("YQ", b"a", id="unpadded"),
        pytest.param("YQ=", b"a", id="partly-padded"),
        pytest.param("YQ==", b"a", id="padded"),
        pytest.param("YWI", b"ab", id="unpadded-two-bytes"),
        pytest.param("YWJj", b"abc", id="no-padding-needed"),
    ],
)
def test_whsec_padding_is_optional(encoded: str, key: bytes) -> None:
    """The bytes after ``whsec_`` are base64 whose padding may be left off."""
    assert key == standard_key("whsec_" + encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("YQ===", id="over-padded"),
        pytest.param("YWI==", id="one-pad-too-many"),
        pytest.param("YWJj=", id="padding-where-none-is-needed"),
        pytest.param("Y", id="one-char-too-many"),
        pytest.param("", id="empty-key"),
        pytest.param("=", id="only-padding"),
        pytest.param("YW-_", id="url-safe-alphabet"),
        pytest.param("YQ==\n", id="newline"),
    ],
)
def test_whsec_secret_that_is_not_such_base64_is_refused(encoded: str) -> None:
    """Excess padding, a dangling character, another alphabet or no key bytes: ValueError."""
    with pytest.raises(ValueError, match="whsec_"):
        standard_key("whsec_" + encoded)
