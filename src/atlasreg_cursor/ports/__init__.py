"""Ports: one ``typing.Protocol`` per outside dependency, with value types."""

from .config import ConfigSource
from .executor import Document, Executor, ProcessingResult, RunContext, SourceResult
from .notifier import Notifier, Receipt
from .queue import DeadLetter, DeadLetterBox, Delivery, MessageQueue, QueueStats
from .storage import ConditionalWriteProbe, ObjectStore, StoredObject

__all__ = [
    "ConditionalWriteProbe",
    "ConfigSource",
    "DeadLetter",
    "DeadLetterBox",
    "Delivery",
    "Document",
    "Executor",
    "MessageQueue",
    "Notifier",
    "ObjectStore",
    "ProcessingResult",
    "QueueStats",
    "Receipt",
    "RunContext",
    "SourceResult",
    "StoredObject",
]
