"""The in-memory test double of the ObjectStore passes the same contract as the real stores."""

from __future__ import annotations

import pytest

from atlasreg_cursor.ports.storage import ObjectStore
from tests.contract.storage_contract import StoreContract, StoreFactory
from tests.fakes import FakeObjectStore


class TestFakeObjectStore(StoreContract):
    """The fake the unit tests rely on behaves like a store."""

    PRESIGN_SCHEME = "memory"

    @pytest.fixture
    def store(self) -> ObjectStore:
        """A fresh fake."""
        self._fake = FakeObjectStore()
        return self._fake

    @pytest.fixture
    def store_factory(self, store: ObjectStore) -> StoreFactory:
        """The fake is one process-local object: every handle is the same instance."""
        return lambda: store

    def read_presigned(self, url: str) -> bytes:
        """``memory://<key>`` reads the object back from the fake."""
        return self._fake.get(url.removeprefix("memory://"))[0]
