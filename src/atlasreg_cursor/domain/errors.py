"""Error hierarchy: one root, domain errors, and one family per port.

Every family says whether its members are transient (worth retrying through
the queue) with the ``transient`` class attribute; callers branch on it.
"""

from __future__ import annotations

from typing import ClassVar

from .redaction import redact_text


class CursorError(Exception):
    """Raised for anything atlasreg-cursor itself detects.

    Its message never carries credentials: text arguments pass through
    :func:`~atlasreg_cursor.domain.redaction.redact_text`, so a URL with
    ``user:password@`` or ``?api_key=`` is hidden wherever the error is shown
    (logs, Gold ``errors``, journals, notifications).

    ``retry_after_seconds``, when set on a transient error, says that trying
    again sooner cannot help (a circuit breaker cooling down): the delivery is
    retried no earlier than that.
    """

    transient: ClassVar[bool] = False
    retry_after_seconds: float | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


# --- domain errors -------------------------------------------------------


class InvalidMessage(CursorError):
    """Raised when a queue body is not a valid job message (a poison message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = redact_text(reason)


class InvalidRunId(CursorError):
    """Raised when a run id or date fails validation before a key is built."""


class InvalidConfig(CursorError):
    """Raised when a watchlist document as a whole cannot be used."""


class InvalidGold(CursorError):
    """Raised when a Gold document does not match schema 2.0."""


class SignatureMismatch(CursorError):
    """Raised when a webhook signature does not verify."""


class InvalidSchedule(CursorError):
    """Raised when a cron expression or a time zone name cannot be used."""


# --- queue port ----------------------------------------------------------


class QueueError(CursorError):
    """Raised by a message queue adapter."""


class QueueUnavailable(QueueError):
    """Raised when the queue backend cannot be reached; retry later."""

    transient = True


class LeaseExpired(QueueError):
    """Raised when acking or changing a delivery whose lease has expired."""


class QueueConfigurationError(QueueError):
    """Raised when the queue is misconfigured (bad credentials, unknown queue)."""


# --- config port ---------------------------------------------------------


class ConfigError(CursorError):
    """Raised by a config source."""


class ConfigUnavailable(ConfigError):
    """Raised when the config cannot be fetched and no good copy is cached."""

    transient = True


class ConfigNotFound(ConfigError):
    """Raised when the config key or file does not exist."""


# --- storage port --------------------------------------------------------


class StorageError(CursorError):
    """Raised by an object store adapter."""


class StorageUnavailable(StorageError):
    """Raised when the object store cannot be reached; retry later."""

    transient = True


class PreconditionFailed(StorageError):
    """Raised when ``if_none_match`` or ``if_match`` does not hold."""


class ObjectNotFound(StorageError):
    """Raised when ``get`` names a key that does not exist."""


class InvalidKey(StorageError):
    """Raised when a key is empty, too long or escapes the store's root."""


class IntegrityError(StorageError):
    """Raised when the bytes stored do not match the SHA-256 given."""


class UnsupportedFeature(StorageError):
    """Raised when a backend is asked for something it does not offer."""


# --- notifier port -------------------------------------------------------


class NotifierError(CursorError):
    """Raised by a notifier adapter."""


class NotificationRejected(NotifierError):
    """Raised when the receiver answers 4xx other than 408/429: not retried."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class NotificationUnavailable(NotifierError):
    """Raised when every attempt failed with 5xx, 408, 429 or a network error."""

    transient = True


# --- executor port -------------------------------------------------------


class ExecutorError(CursorError):
    """Raised by an executor adapter."""


class ExecutorUnavailable(ExecutorError):
    """Raised when Core (broker, Airflow, …) cannot be reached; retry later."""

    transient = True


class SourceFailed(ExecutorError):
    """Raised when one source's handler fails; the other sources go on.

    ``error_type`` is the short machine-readable kind written into Gold
    ``errors`` (``timeout``, ``http_error``, ``handler_error``, …).
    """

    def __init__(self, message: str, *, error_type: str = "handler_error") -> None:
        super().__init__(message)
        self.error_type = error_type


class HandlerNotAvailable(SourceFailed):
    """Raised when a source's handler has no meaning in the current mode."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_type="handler_not_available")


class ProcessingFailed(ExecutorError):
    """Raised when AI processing or Gold generation fails for the whole run."""


__all__ = [
    "ConfigError",
    "ConfigNotFound",
    "ConfigUnavailable",
    "CursorError",
    "ExecutorError",
    "ExecutorUnavailable",
    "HandlerNotAvailable",
    "IntegrityError",
    "InvalidConfig",
    "InvalidGold",
    "InvalidKey",
    "InvalidMessage",
    "InvalidRunId",
    "InvalidSchedule",
    "LeaseExpired",
    "NotificationRejected",
    "NotificationUnavailable",
    "NotifierError",
    "ObjectNotFound",
    "PreconditionFailed",
    "ProcessingFailed",
    "QueueConfigurationError",
    "QueueError",
    "QueueUnavailable",
    "SignatureMismatch",
    "SourceFailed",
    "StorageError",
    "StorageUnavailable",
    "UnsupportedFeature",
]
