"""atlasreg-cursor: queue-to-object-storage ingest orchestrator for AtlasReg.

The names here are what AtlasReg Core imports: message, Gold and signature
types, and the webhook verifier. They are loaded on first use, so the
command line (``atlasreg-cursor --help``) does not pay for the domain.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: ``--help`` stays light
if TYPE_CHECKING:
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
    """Load the domain's names and compute ``__version__`` lazily."""
    if name in __all__ and name != "__version__":
        from . import domain

        value = getattr(domain, name)
        globals()[name] = value
        return value
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
