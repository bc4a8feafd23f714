"""Logging: structlog JSON (default) or console, bound with run context.

Never log payloads, tokens or keys. Two processors are the last line of
defence: one masks any value whose key names a secret, the other passes
every string of every event (tracebacks included) through
:func:`~atlasreg_cursor.domain.redaction.redact_text`, so credentials inside
URLs never reach a log line. Standard-library log records (urllib3,
botocore, …) are redacted by a filter on the handler.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from atlasreg_cursor.domain.redaction import redact_text

_SECRET_KEYS = ("token", "secret", "password", "authorization", "api_key", "hmac")
_MAX_DEPTH = 8


def _mask_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_KEYS):
            event[key] = "***"
    return event


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, depth + 1) for v in value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_urls(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hide credentials in URLs in every value of the event."""
    for key in list(event):
        event[key] = _redact_value(event[key])
    return event


class RedactingFilter(logging.Filter):
    """A logging filter that hides credentials in URLs of a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redacted; always keep the record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        record.exc_info = None
        return True


def configure_logging(
    fmt: str = "json", level: str = "INFO", *, stream: TextIO | None = None
) -> None:
    """Configure structlog (and stdlib logging) once for the process."""
    out = stream or sys.stdout
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_urls,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=out, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    for noisy in ("botocore", "urllib3", "celery", "kombu", "scrapy", "twisted"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
