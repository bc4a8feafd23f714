"""Keyword matching of a source's items: case- and accent-insensitive."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def fold_text(text: str) -> str:
    """Lower-case *text* and strip accents, for keyword matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def matches_keywords(keywords: Iterable[str], *texts: str | None) -> bool:
    """
    Tell whether any keyword occurs in any text (case- and accent-insensitive).

    No keywords means everything matches.
    """
    folded = [fold_text(k) for k in keywords]
    if not folded:
        return True
    haystack = " ".join(fold_text(t) for t in texts if t)
    return any(k in haystack for k in folded)
