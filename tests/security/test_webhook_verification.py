"""Forged, replayed and malformed webhooks against the library's WebhookVerifier."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasreg_cursor.domain.errors import SignatureMismatch
from atlasreg_cursor.domain.signing import (
    MemoryReplayCache,
    ReplayedWebhook,
    WebhookSigner,
    WebhookVerifier,
    verify_legacy,
    verify_standard,
)

pytestmark = pytest.mark.security

NOW = 1_764_000_000
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = b'{"event_type":"ingest_complete","run_id":"run_0123456789ab"}'


def signed(**overrides: str) -> dict[str, str]:
    """Both schemes' headers for BODY at NOW, with some replaced."""
    headers = WebhookSigner(SECRET).headers("run_0123456789ab-ingest-complete", BODY, timestamp=NOW)
    headers.update(overrides)
    return headers


def legacy_only() -> dict[str, str]:
    """Only the legacy X-Signature headers."""
    return WebhookSigner(SECRET, standard=False).headers("id", BODY, timestamp=NOW)


def test_both_schemes_verify() -> None:
    """A request as the Cursor sends it verifies and yields its webhook-id."""
    assert "run_0123456789ab-ingest-complete" == WebhookVerifier((SECRET,)).verify(
        BODY, signed(), now=NOW
    )


def test_legacy_only_is_refused_by_default() -> None:
    """X-Signature alone has no timestamp (replayable forever): refused unless opted in."""
    with pytest.raises(SignatureMismatch, match="Standard Webhooks"):
        WebhookVerifier((SECRET,)).verify(BODY, legacy_only(), now=NOW)


def test_legacy_only_with_explicit_opt_in() -> None:
    """``accept_legacy=True`` accepts a correct legacy-only request, and only a correct one."""
    verifier = WebhookVerifier((SECRET,), accept_legacy=True)

    assert verifier.verify(BODY, legacy_only(), now=NOW) is None
    with pytest.raises(SignatureMismatch):
        verifier.verify(BODY + b" ", legacy_only(), now=NOW)


@pytest.mark.parametrize(
    "timestamp",
    [
        f"+{NOW}",
        f" {NOW} ",
        f"{NOW}\n",
        f"0{NOW}",
        "9" * 400,
        "1e9",
        f"{NOW}.0",
        "-1",
        "\uff11\uff17\uff16\uff14",  # full-width digits: int() would accept them
        "\u0663",  # ARABIC-INDIC DIGIT THREE
        "",
        "0x10",
    ],
)
def test_malformed_timestamps_are_signature_mismatch(timestamp: str) -> None:
    """Only 1-12 ASCII digits; even a correctly signed odd spelling is refused, never a crash."""
    body = BODY
    headers = signed()
    # re-sign with the odd spelling so only the format can make it fail
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    content = f"{headers['webhook-id']}.{timestamp}.".encode() + body
    sig = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    headers.update({"webhook-timestamp": timestamp, "webhook-signature": f"v1,{sig}"})

    with pytest.raises(SignatureMismatch):
        WebhookVerifier((SECRET,)).verify(body, headers, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-id": "a.b", "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"},
        {"webhook-id": "x" * 300, "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"},
        {"webhook-id": "id", "webhook-timestamp": str(NOW), "webhook-signature": "v1," * 5000},
        {"webhook-id": "id", "webhook-timestamp": str(NOW)},
        {"webhook-signature": "v1,AAAA"},
        {"X-Signature": "zz" * 32},
        {"X-Signature": "ab"},
        {"webhook-id": 5, "webhook-timestamp": NOW, "webhook-signature": None},
        {"webhook-id": "id", "WEBHOOK-ID": "id2", "webhook-timestamp": str(NOW)},
    ],
)
def test_malformed_headers_are_signature_mismatch(headers: dict[str, object]) -> None:
    """Malformed headers of any kind raise SignatureMismatch and nothing else."""
    with pytest.raises(SignatureMismatch):
        WebhookVerifier((SECRET,), accept_legacy=True).verify(BODY, headers, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_now_never_skips_the_tolerance_check(now: float) -> None:
    """``abs(now - ts) > tolerance`` is False for NaN: the check is ``not abs(...) <= tolerance``."""
    with pytest.raises(SignatureMismatch, match="tolerance"):
        verify_standard(BODY, signed(), (SECRET,), now=now)
    with pytest.raises(SignatureMismatch):
        WebhookVerifier((SECRET,)).verify(BODY, signed(), now=now)


@pytest.mark.parametrize("tolerance", [0, -300, float("nan"), float("inf"), True, "300", None])
def test_the_tolerance_must_be_a_positive_finite_number(tolerance: object) -> None:
    """A tolerance that would widen (or disable) the window is refused up front."""
    with pytest.raises(ValueError, match="tolerance_seconds"):
        verify_standard(BODY, signed(), (SECRET,), now=NOW, tolerance_seconds=tolerance)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance_seconds"):
        WebhookVerifier((SECRET,), tolerance_seconds=tolerance)  # type: ignore[arg-type]


def test_forged_with_another_secret_fails() -> None:
    """A stolen-but-rotated-out secret no longer verifies once removed from the list."""
    old = "whsec_" + base64.b64encode(b"o" * 32).decode()
    headers = WebhookSigner(old).headers("id1", BODY, timestamp=NOW)

    assert "id1" == WebhookVerifier((SECRET, old)).verify(BODY, headers, now=NOW)
    with pytest.raises(SignatureMismatch):
        WebhookVerifier((SECRET,)).verify(BODY, headers, now=NOW)


def test_standard_headers_decide_when_present() -> None:
    """Beside Standard headers the X-Signature is not what is checked, either way."""
    verifier = WebhookVerifier((SECRET,), accept_legacy=True)
    good_legacy = legacy_only()["X-Signature"]

    assert "run_0123456789ab-ingest-complete" == verifier.verify(
        BODY, signed(**{"X-Signature": "0" * 64}), now=NOW
    )
    with pytest.raises(SignatureMismatch):
        verifier.verify(
            BODY,
            signed(**{"webhook-signature": "v1,AAAA", "X-Signature": good_legacy}),
            now=NOW,
        )


def test_replay_cache_refuses_a_seen_webhook_id_within_the_tolerance() -> None:
    """The same webhook-id twice within the tolerance: the second is a ReplayedWebhook."""
    verifier = WebhookVerifier((SECRET,), replay_cache=MemoryReplayCache())

    verifier.verify(BODY, signed(), now=NOW)
    with pytest.raises(ReplayedWebhook):
        verifier.verify(BODY, signed(), now=NOW + 10)


def test_replay_cache_forgets_after_the_window() -> None:
    """An id is remembered for twice the tolerance; a fresh signature later passes again."""
    cache = MemoryReplayCache()
    verifier = WebhookVerifier((SECRET,), replay_cache=cache)
    verifier.verify(BODY, signed(), now=NOW)
    later = NOW + 2 * 300 + 1
    fresh = WebhookSigner(SECRET).headers("run_0123456789ab-ingest-complete", BODY, timestamp=later)

    assert "run_0123456789ab-ingest-complete" == verifier.verify(BODY, fresh, now=later)
    assert 1 == len(cache)


def test_forged_requests_do_not_fill_the_replay_cache() -> None:
    """Only verified ids are recorded, so forgeries cannot block a real delivery."""
    cache = MemoryReplayCache()
    verifier = WebhookVerifier((SECRET,), replay_cache=cache)
    with pytest.raises(SignatureMismatch):
        verifier.verify(BODY + b"x", signed(), now=NOW)

    assert 0 == len(cache)
    assert verifier.verify(BODY, signed(), now=NOW)


def test_replay_cache_is_bounded() -> None:
    """The cache never holds more than max_entries ids."""
    cache = MemoryReplayCache(max_entries=3)
    for n in range(10):
        assert cache.check_and_add(f"id{n}", now=NOW, ttl=600)

    assert 3 == len(cache)


header_values = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"v1,[A-Za-z0-9+/=]{0,60}( v1,[A-Za-z0-9+/=]{0,60})?", fullmatch=True),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
header_names = st.sampled_from(
    ["webhook-id", "webhook-timestamp", "webhook-signature", "X-Signature", "X-Signature-Algorithm"]
)


@given(
    st.binary(max_size=200),
    st.dictionaries(header_names, header_values, max_size=5),
    st.booleans(),
)
def test_any_request_is_verified_or_signature_mismatch(
    body: bytes, headers: dict[str, str], legacy: bool
) -> None:
    """Whatever arrives, the verifier accepts it or raises SignatureMismatch, nothing else."""
    try:
        WebhookVerifier((SECRET,), accept_legacy=legacy).verify(body, headers, now=NOW)
    except SignatureMismatch:
        return
    raise AssertionError("a random request verified")


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6))
def test_scheme_functions_only_raise_signature_mismatch(headers: dict[str, str]) -> None:
    """verify_standard and verify_legacy raise SignatureMismatch on anything they cannot read."""
    for check in (
        lambda: verify_standard(BODY, headers, [SECRET], now=NOW),
        lambda: verify_legacy(BODY, headers, [SECRET]),
    ):
        with pytest.raises(SignatureMismatch):
            check()
