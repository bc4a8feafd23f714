"""Object key validation shared by every ObjectStore adapter.

A key is a ``/``-separated relative path: not empty, at most 1024 UTF-8
bytes, no leading ``/``, no empty, ``.`` or ``..`` segment, no backslash and
no control character. The same rule holds on disk and in a bucket, so a key
that works in ``local`` mode works on R2 too. Reads no settings.
"""

from __future__ import annotations

import unicodedata

from atlasreg_cursor.domain.errors import InvalidKey

MAX_KEY_BYTES = 1024


def validate_key(key: str) -> str:
    """
    Check an object key and return it unchanged.

    Args:
        key: the object key.

    Returns:
        The key.

    Raises:
        InvalidKey: when the key is empty, too long, absolute, has an empty,
            ``.`` or ``..`` segment, a backslash or a control character.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    if key.startswith("/"):
        raise InvalidKey(f"object key must be relative: {key[:80]!r}")
    if "\\" in key:
        raise InvalidKey(f"object key must not contain a backslash: {key[:80]!r}")
    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in key):
        raise InvalidKey(f"object key must not contain control characters: {key[:80]!r}")
    for segment in key.split("/"):
        if segment in {"", ".", ".."}:
            raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key[:80]!r}")
    return key
