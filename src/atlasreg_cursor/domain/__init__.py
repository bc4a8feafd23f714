"""The pure domain: messages, sources, runs, Gold, hashing, signing, ingest.

Imports no I/O library and nothing from adapters or entrypoints.
"""

from .documents import Document, ProcessingResult, SourceResult
from .errors import *  # noqa: F403 (the error family is the public API)
from .errors import __all__ as _errors_all
from .gold import GoldDocument, GoldErrorEntry, GoldEvent, parse_gold, serialize_gold
from .hashing import canonical_bytes, sha256_hex
from .messages import MessageType, QueueMessage, encode_message, parse_message
from .notifications import Notification
from .runs import RunJournal, RunStatus, derive_run_id, gold_key, validate_date, validate_run_id
from .signing import (
    MemoryReplayCache,
    ReplayedWebhook,
    WebhookSigner,
    WebhookVerifier,
    verify_legacy,
    verify_standard,
)
from .sources import SourceConfig, WatchlistConfig, parse_watchlist

__all__ = [
    "MemoryReplayCache",
    "ReplayedWebhook",
    *_errors_all,
    "Document",
    "GoldDocument",
    "GoldErrorEntry",
    "GoldEvent",
    "MessageType",
    "Notification",
    "ProcessingResult",
    "QueueMessage",
    "RunJournal",
    "RunStatus",
    "SourceConfig",
    "SourceResult",
    "WatchlistConfig",
    "WebhookSigner",
    "WebhookVerifier",
    "canonical_bytes",
    "derive_run_id",
    "encode_message",
    "gold_key",
    "parse_gold",
    "parse_message",
    "parse_watchlist",
    "serialize_gold",
    "sha256_hex",
    "validate_date",
    "validate_run_id",
    "verify_legacy",
    "verify_standard",
]
