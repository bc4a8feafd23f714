"""atlasreg-cursor: queue-to-object-storage ingest orchestrator for AtlasReg.

The names here are what AtlasReg Core imports: message, Gold and signature
types, and the webhook verifier.
"""

from typing import Any

from .domain import (
    GoldDocument,
    MemoryReplayCache,
    MessageType,
    QueueMessage,
    ReplayedWebhook,
    SignatureMismatch,
    WebhookSigner,
    WebhookVerifier,
    encode_message,
    parse_gold,
    parse_message,
    serialize_gold,
)


def __getattr__(name: str) -> Any:
    """Compute ``__version__`` lazily, so importing the package stays light."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("atlasreg-cursor")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0"
    raise AttributeError(name)


__all__ = [
    "GoldDocument",
    "MemoryReplayCache",
    "MessageType",
    "QueueMessage",
    "ReplayedWebhook",
    "SignatureMismatch",
    "WebhookSigner",
    "WebhookVerifier",
    "__version__",
    "encode_message",
    "parse_gold",
    "parse_message",
    "serialize_gold",
]
