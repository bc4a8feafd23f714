"""Webhook signatures: Standard Webhooks (``v1``) and the legacy ``X-Signature``.

Both sign the exact bytes sent. Secrets of the form ``whsec_<base64>`` mean the
decoded bytes for Standard Webhooks; any other value means its UTF-8 bytes.
The legacy scheme always uses the UTF-8 bytes of the configured string.

Verification is strict: the Standard Webhooks scheme is required unless a
receiver opts into legacy-only requests (``accept_legacy=True``: a legacy
signature carries no timestamp, so it can be replayed forever);
``webhook-timestamp`` must be 1-12 ASCII digits within the tolerance; a
``webhook-id`` is 1-256 printable ASCII characters without ``.``;
``webhook-signature`` holds at most 16 entries in at most 4096 characters
(the Worker's ``verify.js`` has the same limits); and anything malformed
raises :class:`SignatureMismatch`, never another exception. An optional
:class:`ReplayCache` refuses a ``webhook-id`` seen again within the
tolerance (:class:`ReplayedWebhook`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from .errors import SignatureMismatch

DEFAULT_TOLERANCE_SECONDS = 300
MAX_SIGNATURE_HEADER = 4096
MAX_SIGNATURES = 16
_WHSEC = "whsec_"
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_WEBHOOK_ID_RE = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,256}")
_HEX_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_WHSEC_BODY_RE = re.compile(r"([A-Za-z0-9+/]*)(={0,2})")


def standard_key(secret: str) -> bytes:
    """
    Return the HMAC key Standard Webhooks uses for *secret*.

    After ``whsec_`` comes standard base64 whose ``=`` padding is optional but
    never longer than the length needs, and which decodes to at least one
    byte; the Worker's ``standardKeyBytes`` accepts exactly the same.

    Raises:
        ValueError: a ``whsec_`` secret that breaks these rules (the message
            does not show the secret).
    """
    if not secret.startswith(_WHSEC):
        return secret.encode("utf-8")
    match = _WHSEC_BODY_RE.fullmatch(secret[len(_WHSEC) :])
    if match is None:
        raise ValueError("a whsec_ secret must be followed by base64")
    data, padding = match.group(1), match.group(2)
    needed = -len(data) % 4
    if needed == 3 or len(padding) > needed:
        raise ValueError("a whsec_ secret must be followed by base64")
    key = base64.b64decode(data + "=" * needed)
    if not key:
        raise ValueError("the whsec_ key is empty")
    return key


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


class ReplayedWebhook(SignatureMismatch):
    """Raised when a verified ``webhook-id`` was already seen within the tolerance.

    A receiver may answer 2xx to it (Standard Webhooks: deduplicate on the id).
    """


class ReplayCache(Protocol):
    """Protocol: remembers ``webhook-id``s seen within the tolerance."""

    def check_and_add(self, webhook_id: str, *, now: float, ttl: float) -> bool:
        """
        Record *webhook_id* for *ttl* seconds from *now*.

        Returns:
            ``False`` when it was already recorded and not yet expired.
        """
        ...


class MemoryReplayCache:
    """
    A bounded in-process :class:`ReplayCache` (thread-safe).

    Args:
        max_entries: most ids kept; the oldest are forgotten first when full.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, webhook_id: str, *, now: float, ttl: float) -> bool:
        """Record *webhook_id*; ``False`` when it was seen and has not expired."""
        with self._lock:
            expiry = self._seen.get(webhook_id)
            if expiry is not None and expiry > now:
                return False
            for key in [k for k, until in self._seen.items() if until <= now]:
                del self._seen[key]
            while len(self._seen) >= self._max:
                del self._seen[next(iter(self._seen))]
            self._seen.pop(webhook_id, None)
            self._seen[webhook_id] = now + ttl
            return True


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, case-insensitively; a non-string value is malformed."""
    lowered = name.lower()
    found = None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == lowered:
            if not isinstance(value, str):
                raise SignatureMismatch(f"{name} is not text")
            if found is not None:
                raise SignatureMismatch(f"{name} is given more than once")
            found = value
    return found


def verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """
    Verify a Standard Webhooks signature; return the ``webhook-id``.

    Raises:
        SignatureMismatch: missing or malformed headers (a timestamp that is
            not 1-12 ASCII digits, an id with ``.``, a ``webhook-signature``
            over 4096 characters or 16 entries), a stale or future
            timestamp (or a *now* that is not a finite number), or no ``v1``
            signature that matches any of *secrets*.
        ValueError: *tolerance_seconds* is not a positive finite number.
    """
    check_tolerance(tolerance_seconds)
    try:
        return _verify_standard(body, headers, secrets, now, tolerance_seconds)
    except SignatureMismatch:
        raise
    except (ValueError, TypeError, UnicodeError, OverflowError, AttributeError):
        raise SignatureMismatch("malformed webhook request") from None


def _verify_standard(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: float | None,
    tolerance_seconds: float,
) -> str:
    if not isinstance(body, bytes | bytearray):
        raise SignatureMismatch("the body must be bytes")
    wid = _header(headers, "webhook-id")
    wts = _header(headers, "webhook-timestamp")
    wsig = _header(headers, "webhook-signature")
    if not wid or not wts or not wsig:
        raise SignatureMismatch("missing webhook-id, webhook-timestamp or webhook-signature")
    if not _WEBHOOK_ID_RE.fullmatch(wid):
        raise SignatureMismatch("webhook-id is malformed")
    if not _TIMESTAMP_RE.fullmatch(wts):
        raise SignatureMismatch("webhook-timestamp must be 1-12 ASCII digits")
    if len(wsig) > MAX_SIGNATURE_HEADER:
        raise SignatureMismatch("webhook-signature is too long")
    entries = [part for part in wsig.split(" ") if part]
    if len(entries) > MAX_SIGNATURES:
        raise SignatureMismatch(f"more than {MAX_SIGNATURES} signatures")
    timestamp = int(wts)
    current = time.time() if now is None else now
    if not abs(current - timestamp) <= tolerance_seconds:  # a NaN never passes
        raise SignatureMismatch("webhook-timestamp is outside the tolerance")
    content = _signed_content(wid, timestamp, bytes(body))
    expected = [_b64_hmac(standard_key(s), content).encode("ascii") for s in secrets]
    for part in entries:
        version, _, sig = part.partition(",")
        if version != "v1" or not sig:
            continue
        given = sig.encode("ascii", "replace")
        if any(hmac.compare_digest(given, e) for e in expected):
            return wid
    raise SignatureMismatch("no matching v1 signature")


def check_tolerance(tolerance_seconds: object) -> None:
    """
    Refuse a tolerance that would weaken the timestamp check.

    Raises:
        ValueError: not a positive finite number (``0``, ``-5``, ``NaN``, ``inf``, ``True``).
    """
    if (
        isinstance(tolerance_seconds, bool)
        or not isinstance(tolerance_seconds, int | float)
        or not math.isfinite(tolerance_seconds)
        or tolerance_seconds <= 0
    ):
        raise ValueError(
            f"tolerance_seconds must be a positive finite number, not {tolerance_seconds!r}"
        )


def verify_legacy(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """
    Verify the legacy ``X-Signature`` hex HMAC-SHA256 of *body*.

    Raises:
        SignatureMismatch: when the header is missing or malformed, or matches no secret.
    """
    try:
        _verify_legacy(body, headers, secrets)
    except SignatureMismatch:
        raise
    except (ValueError, TypeError, UnicodeError, AttributeError):
        raise SignatureMismatch("malformed webhook request") from None


def _verify_legacy(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    if not isinstance(body, bytes | bytearray):
        raise SignatureMismatch("the body must be bytes")
    given = _header(headers, "X-Signature")
    if not given:
        raise SignatureMismatch("missing X-Signature")
    algorithm = _header(headers, "X-Signature-Algorithm")
    if algorithm is not None and algorithm.strip().upper() != "HMAC-SHA256":
        raise SignatureMismatch("unsupported X-Signature-Algorithm")
    given = given.strip()
    if not _HEX_SIGNATURE_RE.fullmatch(given):
        raise SignatureMismatch("X-Signature must be 64 hex digits")
    given_b = given.lower().encode("ascii")
    for secret in secrets:
        digest = hmac.new(secret.encode("utf-8"), bytes(body), hashlib.sha256).hexdigest()
        if hmac.compare_digest(given_b, digest.encode("ascii")):
            return
    raise SignatureMismatch("X-Signature does not match")


def _check_secrets(_instance: object, _attribute: object, secrets: tuple[str, ...]) -> None:
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("a verifier needs at least one non-empty secret")
    for s in secrets:
        standard_key(s)


@attrs.frozen
class WebhookVerifier:
    """
    What a receiver (the Worker, Core, a test) uses to check a webhook.

    Requires the Standard Webhooks scheme, which decides whenever its headers
    are present: the legacy ``X-Signature`` sent beside it is for receivers
    that read only that header, and is keyed with the sender's current secret
    alone, so a sender that rotates before its receiver still verifies. A
    request with only the legacy signature is accepted only with
    ``accept_legacy=True`` (it has no timestamp: anyone who saw it can replay
    it forever). The Worker's verifier applies the same rules.

    Args:
        secrets: every secret that may have signed (rotation: old and new).
        tolerance_seconds: how far ``webhook-timestamp`` may be from now.
        accept_legacy: also accept requests signed with ``X-Signature`` only.
        replay_cache: when given, a ``webhook-id`` seen within the tolerance
            is refused with :class:`ReplayedWebhook`.
    """

    secrets: tuple[str, ...] = attrs.field(repr=False, converter=tuple, validator=_check_secrets)
    tolerance_seconds: float = attrs.field(
        default=DEFAULT_TOLERANCE_SECONDS, validator=lambda _i, _a, v: check_tolerance(v)
    )
    accept_legacy: bool = False
    replay_cache: ReplayCache | None = attrs.field(default=None, repr=False, eq=False)

    def verify(
        self, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> str | None:
        """
        Verify *body* against *headers*.

        Returns:
            The ``webhook-id`` (``None`` for an accepted legacy-only request).

        Raises:
            SignatureMismatch: no acceptable scheme, a present one fails, or
                anything is malformed.
            ReplayedWebhook: the ``webhook-id`` was already seen (with a replay cache).
        """
        try:
            has_standard = any(
                _header(headers, h) is not None
                for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
            )
            has_legacy = _header(headers, "X-Signature") is not None
        except (TypeError, AttributeError):
            raise SignatureMismatch("malformed webhook request") from None
        if not has_standard and not has_legacy:
            raise SignatureMismatch("no signature headers")
        if not has_standard and not self.accept_legacy:
            raise SignatureMismatch(
                "no Standard Webhooks signature (legacy-only requests are not accepted)"
            )
        wid = None
        if has_standard:
            wid = verify_standard(
                body, headers, self.secrets, now=now, tolerance_seconds=self.tolerance_seconds
            )
        else:
            verify_legacy(body, headers, self.secrets)
        if wid is not None and self.replay_cache is not None:
            current = time.time() if now is None else now
            ttl = 2.0 * self.tolerance_seconds
            if not self.replay_cache.check_and_add(wid, now=current, ttl=ttl):
                raise ReplayedWebhook(f"webhook-id {wid} was already seen")
        return wid
