"""Webhook signatures: Standard Webhooks (``v1``) and the legacy ``X-Signature``.

Both sign the exact bytes sent. Secrets of the form ``whsec_<base64>`` mean the
decoded bytes for Standard Webhooks; any other value means its UTF-8 bytes.
The legacy scheme always uses the UTF-8 bytes of the configured string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

import attrs

from .errors import SignatureMismatch

DEFAULT_TOLERANCE_SECONDS = 300
_WHSEC = "whsec_"


def standard_key(secret: str) -> bytes:
    """Return the HMAC key Standard Webhooks uses for *secret*."""
    if secret.startswith(_WHSEC):
        encoded = secret[len(_WHSEC) :]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be followed by base64") from None
    return secret.encode("utf-8")


def _b64_hmac(key: bytes, content: bytes) -> str:
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def _signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


@attrs.frozen
class WebhookSigner:
    """
    Produce signature headers for a body.

    Args:
        secret: the primary secret (``HOOK_HMAC_SECRET``).
        additional_secrets: extra secrets during a rotation; one more ``v1,``
            signature each.
        standard: send the Standard Webhooks headers.
        legacy: send ``X-Signature`` / ``X-Signature-Algorithm``.
    """

    secret: str = attrs.field(repr=False)
    additional_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    standard: bool = True
    legacy: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.secret:
            raise ValueError("the webhook secret must not be empty")
        for s in (self.secret, *self.additional_secrets):
            standard_key(s)

    def headers(self, webhook_id: str, body: bytes, *, timestamp: int) -> dict[str, str]:
        """Return the signature headers for *body* sent at *timestamp*."""
        if "." in webhook_id:
            raise ValueError("a webhook id must not contain '.'")
        out: dict[str, str] = {}
        if self.standard:
            content = _signed_content(webhook_id, timestamp, body)
            sigs = [
                "v1," + _b64_hmac(standard_key(s), content)
                for s in (self.secret, *self.additional_secrets)
            ]
            out["webhook-id"] = webhook_id
            out["webhook-timestamp"] = str(timestamp)
            out["webhook-signature"] = " ".join(sigs)
        if self.legacy:
            digest = hmac.new(self.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            out["X-Signature"] = digest
            out["X-Signature-Algorithm"] = "HMAC-SHA256"
        return out


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """
    Verify a Standard Webhooks signature; return the ``webhook-id``.

    Raises:
        SignatureMismatch: missing headers, stale or future timestamp, or no
            ``v1`` signature that matches any of *secrets*.
    """
    wid = _header(headers, "webhook-id")
    wts = _header(headers, "webhook-timestamp")
    wsig = _header(headers, "webhook-signature")
    if not wid or not wts or not wsig:
        raise SignatureMismatch("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(wts)
    except ValueError:
        raise SignatureMismatch("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureMismatch("webhook-timestamp is outside the tolerance")
    content = _signed_content(wid, timestamp, body)
    expected = [_b64_hmac(standard_key(s), content).encode("ascii") for s in secrets]
    for part in wsig.split(" "):
        version, _, sig = part.partition(",")
        if version != "v1" or not sig:
            continue
        given = sig.encode("ascii", "replace")
        if any(hmac.compare_digest(given, e) for e in expected):
            return wid
    raise SignatureMismatch("no matching v1 signature")


def verify_legacy(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """
    Verify the legacy ``X-Signature`` hex HMAC-SHA256 of *body*.

    Raises:
        SignatureMismatch: when the header is missing or matches no secret.
    """
    given = _header(headers, "X-Signature")
    if not given:
        raise SignatureMismatch("missing X-Signature")
    algorithm = _header(headers, "X-Signature-Algorithm")
    if algorithm is not None and algorithm.upper() != "HMAC-SHA256":
        raise SignatureMismatch(f"unsupported X-Signature-Algorithm {algorithm!r}")
    given_b = given.strip().lower().encode("ascii", "replace")
    for secret in secrets:
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(given_b, digest.encode("ascii")):
            return
    raise SignatureMismatch("X-Signature does not match")


@attrs.frozen
class WebhookVerifier:
    """
    What a receiver (the Worker, Core, a test) uses to check a webhook.

    Accepts a request when every scheme present in the headers verifies and
    at least one scheme is present.
    """

    secrets: tuple[str, ...] = attrs.field(repr=False)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        """
        Verify *body* against *headers*.

        Raises:
            SignatureMismatch: when no scheme is present or any present one fails.
        """
        has_standard = _header(headers, "webhook-signature") is not None
        has_legacy = _header(headers, "X-Signature") is not None
        if not has_standard and not has_legacy:
            raise SignatureMismatch("no signature headers")
        if has_standard:
            verify_standard(
                body, headers, self.secrets, now=now, tolerance_seconds=self.tolerance_seconds
            )
        if has_legacy:
            verify_legacy(body, headers, self.secrets)
