"""validate_key: the object key rule every store shares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasreg_cursor.adapters._keys import MAX_KEY_BYTES, validate_key
from atlasreg_cursor.domain.errors import InvalidKey

segments = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in {".", ".."})


@given(st.lists(segments, min_size=1, max_size=6))
def test_valid_keys_pass_unchanged(parts: list[str]) -> None:
    """Relative keys of ordinary segments are returned as they are."""
    key = "/".join(parts)

    assert key == validate_key(key)


@pytest.mark.parametrize(
    "key",
    ["", "/a", "a/", "a//b", "./a", "a/..", "a\\b", "a\tb", "a\x7fb", "\ud800", "é" * 513],
)
def test_invalid_keys_raise(key: str) -> None:
    """Empty, absolute, dotted, backslashed, control and over-long keys are refused."""
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_limit_is_in_utf8_bytes() -> None:
    """The length limit counts UTF-8 bytes, not characters."""
    assert "é" * (MAX_KEY_BYTES // 2) == validate_key("é" * (MAX_KEY_BYTES // 2))
