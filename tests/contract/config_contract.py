"""The ConfigSource contract (architecture §2a, §6), run against every config adapter.

A test module plugs an adapter in by subclassing :class:`ConfigContract` and
overriding the ``config_env`` fixture, which returns an object of the
:class:`ConfigEnv` shape::

    class TestFileConfigSource(ConfigContract):
        @pytest.fixture
        def config_env(self, tmp_path):
            return FileConfigEnv(tmp_path / "watchlist.json")

Fixture shape (``ConfigEnv``):
    ``write(raw)`` stores the raw watchlist bytes where the adapter reads them;
    ``delete()`` removes them (the next fetch finds nothing);
    ``make_unavailable()`` makes every later fetch fail transiently until
    ``make_available()``; ``source(ttl_seconds=..., clock=...)`` builds the
    adapter reading from there, with the given TTL and monotonic clock. The
    location starts empty; the fixture cleans up afterwards.

Capabilities: none; every ConfigSource caches and falls back the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from atlasreg_cursor.domain.errors import (
    ConfigNotFound,
    ConfigUnavailable,
    InvalidConfig,
)
from atlasreg_cursor.ports.config import ConfigSource

TTL = 300.0

WATCHLIST: dict[str, Any] = {
    "sources": [
        {
            "id": "aneel_news",
            "name": "ANEEL - Notícias",
            "handler_id": "SCRAPY_NEWSROOM_PLAYER",
            "spider_id": "aneel_news",
            "url_feed": "https://www.gov.br/aneel/pt-br/assuntos/noticias",
            "enabled": True,
            "player_id": "aneel",
            "timeout_seconds": 600,
            "keywords": ["transmissão", "outorga"],
            "selectors": {"item": "article", "title": "h2 a::text"},
        },
        {
            "id": "ons_ocorrencias",
            "handler_id": "DOWNLOAD_CSV",
            "url_feed": "https://example.org/ocorrencias.csv",
            "enabled": True,
            "csv": {"delimiter": ";", "fields": {"title": "descricao", "url": "link"}},
        },
        {"id": "sigel", "handler_id": "AIRFLOW_DAG", "dag_id": "sigel_daily", "enabled": False},
    ],
    "global_settings": {"max_concurrent_sources": 3, "processing_timeout_minutes": 20},
}


def encode(doc: Any) -> bytes:
    """Watchlist JSON bytes."""
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def with_ids(*ids: str) -> bytes:
    """A valid watchlist whose sources have these ids."""
    sources = [
        {"id": sid, "handler_id": "DOWNLOAD_CSV", "url_feed": f"https://example.org/{sid}.csv"}
        for sid in ids
    ]
    return encode({"sources": sources})


class ConfigEnv(Protocol):
    """Where a contract test writes the watchlist and how it builds the source."""

    def write(self, raw: bytes) -> None: ...

    def delete(self) -> None: ...

    def make_unavailable(self) -> None: ...

    def make_available(self) -> None: ...

    def source(self, *, ttl_seconds: float, clock: Callable[[], float]) -> ConfigSource: ...


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def ids(source: ConfigSource) -> list[str]:
    """The ids of the valid sources *source* loads."""
    return [s.id for s in source.load().sources]


class ConfigContract:
    """Checks every ConfigSource adapter must pass."""

    @pytest.fixture
    def config_env(self) -> ConfigEnv:
        """Return the adapter's ``ConfigEnv``."""
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> ManualClock:
        """A clock the test moves."""
        return ManualClock()

    @pytest.fixture
    def source(self, config_env: ConfigEnv, clock: ManualClock) -> ConfigSource:
        """The adapter with the default TTL and the manual clock."""
        return config_env.source(ttl_seconds=TTL, clock=clock)

    def test_valid_config_loads(self, config_env: ConfigEnv, source: ConfigSource) -> None:
        """A valid watchlist loads with its sources and global settings."""
        config_env.write(encode(WATCHLIST))

        config = source.load()

        assert ["aneel_news", "ons_ocorrencias", "sigel"] == [s.id for s in config.sources]
        assert ["aneel_news", "ons_ocorrencias"] == [s.id for s in config.enabled_sources()]
        assert ("transmissão", "outorga") == config.sources[0].keywords
        assert 3 == config.global_settings.max_concurrent_sources
        assert () == config.invalid

    def test_invalid_sources_reported_and_skipped(
        self, config_env: ConfigEnv, source: ConfigSource
    ) -> None:
        """Bad sources are reported with a reason; the good ones still load."""
        doc = {
            "sources": [
                {"id": "good", "handler_id": "DOWNLOAD_CSV", "url_feed": "https://a.example/x"},
                {"handler_id": "DOWNLOAD_CSV", "url_feed": "https://a.example/y"},
                {"id": "bad_handler", "handler_id": "NOPE", "url_feed": "https://a.example/z"},
                {"id": "bad_url", "handler_id": "DOWNLOAD_CSV", "url_feed": "ftp://a.example/"},
                {"id": "good", "handler_id": "DOWNLOAD_CSV", "url_feed": "https://a.example/w"},
            ]
        }
        config_env.write(encode(doc))

        config = source.load()

        assert ["good"] == [s.id for s in config.sources]
        assert [1, 2, 3, 4] == [bad.index for bad in config.invalid]
        assert [None, "bad_handler", "bad_url", "good"] == [b.source_id for b in config.invalid]
        assert all(bad.reason for bad in config.invalid)

    def test_unknown_keys_tolerated(self, config_env: ConfigEnv, source: ConfigSource) -> None:
        """Fields this version does not know are kept out of the way, not fatal."""
        doc = json.loads(encode(WATCHLIST))
        doc["added_by_worker"] = {"x": 1}
        doc["sources"][0]["new_field"] = [1, 2, 3]
        doc["global_settings"]["future_setting"] = True
        config_env.write(encode(doc))

        config = source.load()

        assert ["aneel_news", "ons_ocorrencias", "sigel"] == [s.id for s in config.sources]
        assert () == config.invalid

    def test_cached_within_ttl(
        self, config_env: ConfigEnv, source: ConfigSource, clock: ManualClock
    ) -> None:
        """A new value is not seen before the TTL passes, and is seen after."""
        config_env.write(with_ids("first"))
        before = ids(source)
        config_env.write(with_ids("second"))
        clock.advance(TTL / 2)
        cached = ids(source)
        clock.advance(TTL / 2 + 1)

        after = ids(source)

        assert ["first"] == before
        assert ["first"] == cached
        assert ["second"] == after

    def test_fetch_failure_serves_last_good(
        self, config_env: ConfigEnv, source: ConfigSource, clock: ManualClock
    ) -> None:
        """When the fetch fails after the TTL, the last good config is served."""
        config_env.write(with_ids("kept"))
        ids(source)
        config_env.make_unavailable()
        clock.advance(TTL + 1)

        stale = ids(source)
        config_env.make_available()
        config_env.write(with_ids("fresh"))
        clock.advance(TTL + 1)
        recovered = ids(source)

        assert ["kept"] == stale
        assert ["fresh"] == recovered

    def test_fetch_failure_with_nothing_cached_raises(
        self, config_env: ConfigEnv, source: ConfigSource
    ) -> None:
        """With no good copy, an unavailable backend is ``ConfigUnavailable``."""
        config_env.write(with_ids("x"))
        config_env.make_unavailable()

        with pytest.raises(ConfigUnavailable):
            source.load()

    def test_missing_with_nothing_cached_raises(self, source: ConfigSource) -> None:
        """With no good copy, a missing config is ``ConfigNotFound``."""
        with pytest.raises(ConfigNotFound):
            source.load()

    def test_deleted_after_good_serves_last_good(
        self, config_env: ConfigEnv, source: ConfigSource, clock: ManualClock
    ) -> None:
        """A config deleted after a good load keeps serving the last good copy."""
        config_env.write(with_ids("kept"))
        ids(source)
        config_env.delete()
        clock.advance(TTL + 1)

        assert ["kept"] == ids(source)

    @pytest.mark.parametrize(
        "raw",
        [b"{not json", b"[]", b'{"sources": 3}', b"\xff\xfe"],
        ids=["broken-json", "array", "sources-not-list", "not-utf8"],
    )
    def test_unusable_after_good_serves_last_good(
        self, config_env: ConfigEnv, source: ConfigSource, clock: ManualClock, raw: bytes
    ) -> None:
        """An unusable document after a good load keeps the last good copy."""
        config_env.write(with_ids("kept"))
        ids(source)
        config_env.write(raw)
        clock.advance(TTL + 1)

        assert ["kept"] == ids(source)

    def test_unusable_with_nothing_cached_raises(
        self, config_env: ConfigEnv, source: ConfigSource
    ) -> None:
        """An unusable first document is ``InvalidConfig``."""
        config_env.write(b"{not json")

        with pytest.raises(InvalidConfig):
            source.load()
