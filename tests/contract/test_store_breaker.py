"""The circuit-breaker store (wired around every store) through the ObjectStore contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlasreg_cursor.adapters.breakers import BreakerBoard, BreakerStore
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.ports.storage import ObjectStore
from tests.contract.storage_contract import StoreContract, StoreFactory


class TestBreakerStore(StoreContract):
    """Wrapping a store in its breaker changes none of the port's promises."""

    PRESIGN_SCHEME = "file"

    @pytest.fixture
    def board(self) -> BreakerBoard:
        """One board per test (in-memory breaker state)."""
        return BreakerBoard(fail_max=3, reset_seconds=60)

    @pytest.fixture
    def store(self, tmp_path: Path, board: BreakerBoard) -> ObjectStore:
        """A directory store behind the storage breaker."""
        return BreakerStore(FileObjectStore(tmp_path / "store"), board)

    @pytest.fixture
    def store_factory(self, tmp_path: Path, board: BreakerBoard) -> StoreFactory:
        """Separate wrapped instances on the same directory, sharing the board."""
        return lambda: BreakerStore(FileObjectStore(tmp_path / "store"), board)
