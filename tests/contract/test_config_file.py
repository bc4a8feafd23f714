"""FileConfigSource through the ConfigSource contract, plus file-only checks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from atlasreg_cursor.adapters.local.file_config import FileConfigSource
from atlasreg_cursor.domain.errors import ConfigNotFound
from atlasreg_cursor.ports.config import ConfigSource
from tests.contract.config_contract import ConfigContract, ConfigEnv, ManualClock, with_ids


class FileConfigEnv:
    """A watchlist file; "unavailable" means a directory stands where the file was."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: bytes | None = None

    def write(self, raw: bytes) -> None:
        if self.path.is_dir():
            self._saved = raw
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        tmp.replace(self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)

    def make_unavailable(self) -> None:
        self._saved = self.path.read_bytes() if self.path.is_file() else None
        self.path.unlink(missing_ok=True)
        self.path.mkdir()

    def make_available(self) -> None:
        shutil.rmtree(self.path)
        if self._saved is not None:
            self.path.write_bytes(self._saved)

    def source(self, *, ttl_seconds: float, clock: Callable[[], float]) -> ConfigSource:
        return FileConfigSource(self.path, ttl_seconds=ttl_seconds, clock=clock)


class TestFileConfigSource(ConfigContract):
    """The JSON-file config honours the whole contract."""

    @pytest.fixture
    def config_env(self, tmp_path: Path) -> ConfigEnv:
        """A watchlist path in a fresh directory."""
        return FileConfigEnv(tmp_path / "config" / "news_watchlist_config.json")

    @pytest.fixture(autouse=True)
    def _config_dir(self, tmp_path: Path) -> None:
        (tmp_path / "config").mkdir()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """``ConfigNotFound`` says which file is missing."""
    path = tmp_path / "nope.json"

    with pytest.raises(ConfigNotFound, match=r"nope\.json"):
        FileConfigSource(path).load()


def test_stale_serving_is_logged(tmp_path: Path) -> None:
    """Serving the last good copy logs ``config.stale`` with the origin."""
    path = tmp_path / "w.json"
    path.write_bytes(with_ids("a"))
    clock = ManualClock()
    source = FileConfigSource(path, ttl_seconds=10, clock=clock)
    source.load()
    path.write_bytes(b"{broken")
    clock.advance(11)

    with capture_logs() as logs:
        config = source.load()

    assert ["a"] == [s.id for s in config.sources]
    [stale] = [e for e in logs if e["event"] == "config.stale"]
    assert str(path) == stale["origin"]
    assert 11 == stale["stale_seconds"]


def test_invalidate_rereads(tmp_path: Path) -> None:
    """``invalidate`` makes the next load reread the file within the TTL."""
    path = tmp_path / "w.json"
    path.write_bytes(with_ids("a"))
    source = FileConfigSource(path, ttl_seconds=300, clock=ManualClock())
    source.load()
    path.write_bytes(with_ids("b"))

    source.invalidate()

    assert ["b"] == [s.id for s in source.load().sources]
