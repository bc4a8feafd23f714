"""Canonical JSON bytes and SHA-256: the bytes hashed are the bytes stored."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def canonical_bytes(value: Any) -> bytes:
    """
    Serialize *value* as UTF-8 JSON with sorted keys and compact separators.

    Raises:
        ValueError: for NaN or infinite floats, which JSON cannot carry.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of *data*."""
    return hashlib.sha256(data).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Tell whether *value* is a lowercase 64-hex digest."""
    return bool(_SHA256_RE.fullmatch(value))
