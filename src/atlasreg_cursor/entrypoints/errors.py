"""The entry points' own error: a setting is missing, malformed or unknown."""

from __future__ import annotations

from atlasreg_cursor.domain.errors import CursorError


class SettingsError(CursorError):
    """Raised at start-up when a setting is missing or malformed."""


__all__ = ["SettingsError"]
