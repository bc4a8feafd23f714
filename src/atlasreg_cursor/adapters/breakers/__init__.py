"""Circuit breakers, one per dependency, on pybreaker.

:mod:`.board` holds the breakers (:class:`BreakerBoard`, shared through
Redis when there is one) and their fail-fast errors; :mod:`.wrappers` the
port adapters that put a breaker in front of the storage, the webhook
notifier and each source host of the executor.
"""

from .board import (
    SOURCE_HOST_ERRORS,
    STATE_CODES,
    Breaker,
    BreakerBoard,
    CircuitOpen,
    ExecutorCircuitOpen,
    NotifierCircuitOpen,
    SourceCircuitOpen,
    StorageCircuitOpen,
    source_dependency,
    source_host_failure,
)
from .wrappers import BreakerExecutor, BreakerNotifier, BreakerStore

__all__ = [
    "SOURCE_HOST_ERRORS",
    "STATE_CODES",
    "Breaker",
    "BreakerBoard",
    "BreakerExecutor",
    "BreakerNotifier",
    "BreakerStore",
    "CircuitOpen",
    "ExecutorCircuitOpen",
    "NotifierCircuitOpen",
    "SourceCircuitOpen",
    "StorageCircuitOpen",
    "source_dependency",
    "source_host_failure",
]
