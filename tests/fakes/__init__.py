"""In-memory test doubles of the ports, for testing the domain (not adapters)."""

from .config import FakeConfigSource
from .executor import FakeExecutor
from .notifier import FakeNotifier
from .queue import FakeQueue
from .store import FakeObjectStore

__all__ = ["FakeConfigSource", "FakeExecutor", "FakeNotifier", "FakeObjectStore", "FakeQueue"]
