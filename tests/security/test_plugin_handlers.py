"""Third-party Core handlers never get a ``url_feed`` the guard refuses.

A plugin registered under ``atlasreg_cursor.handlers`` that fetches its
``url_feed`` itself (as a naive plugin would, with urllib) is installed as a
real distribution on ``sys.path``; ``CoreExecutor.run_source`` must vet the
URL before calling it, so the internal server gets no request.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.core.executor import CoreExecutor
from atlasreg_cursor.adapters.core.handlers import ENTRY_POINT_GROUP, registry
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig
from tests.security.netlab import FakeInternet, RecordingServer

pytestmark = pytest.mark.security

PLUGIN = '''
"""A naive plugin: fetches its url_feed itself, with no guard of its own."""

import urllib.request

from atlasreg_cursor.domain.documents import SourceResult

CALLS = []


def fetch(source, run, core):
    CALLS.append(source.url_feed)
    if source.raw.get("fetch"):
        with urllib.request.urlopen(source.url_feed, timeout=5) as answer:
            answer.read()
    return SourceResult(source_id=source.id, items_count=1)
'''
RUN = RunContext(
    run_id="run_9a9a9a9a9a9a",
    date=dt.date(2026, 11, 24),
    message_type=MessageType.START_DAILY_INGEST,
    identity=uuid.uuid4().hex,
)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Install the plugin distribution; yield the list of URLs it was called with."""
    site = tmp_path / "site"
    dist = site / "atlasreg_naive_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: atlasreg-naive-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{ENTRY_POINT_GROUP}]
            NAIVE_FETCH = atlasreg_naive_plugin:fetch
            """
        )
    )
    (site / "atlasreg_naive_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    module = importlib.import_module("atlasreg_naive_plugin")
    yield module.CALLS
    sys.modules.pop("atlasreg_naive_plugin", None)


def test_plugin_handlers_get_only_vetted_url_feeds(
    plugin: list[str], net: FakeInternet, internal: RecordingServer
) -> None:
    """Private, backslash and user-info feeds stop before the plugin; a public one reaches it."""
    net.answer("news.test", ["93.184.215.10"])
    net.answer("rebound.test", ["127.0.0.1"])
    executor = CoreExecutor(
        celery=None,  # type: ignore[arg-type]
        airflow=None,
        scrapy_project_path=None,
        local_fallback=None,
        handlers=registry(),
        resolver=net.resolver,
    )
    port = internal.port
    hostile = [
        f"http://127.0.0.1:{port}/latest/meta-data",
        f"http://rebound.test:{port}/",
        f"http://127.0.0.1:{port}\\@news.test/",
        f"http://user:PASSWORD@127.0.0.1:{port}/",
        "file:///etc/passwd",
    ]

    errors = []
    for n, url in enumerate(hostile):
        source = SourceConfig(
            id=f"h{n}", handler_id="NAIVE_FETCH", url_feed=url, raw={"fetch": True}
        )
        with pytest.raises(SourceFailed) as info:
            executor.run_source(source, RUN)
        errors.append(info.value)
    good = SourceConfig(id="ok", handler_id="NAIVE_FETCH", url_feed="http://news.test/feed")
    result = executor.run_source(good, RUN)

    assert all(e.error_type in {"invalid_url", "forbidden_address"} for e in errors)
    assert not [e for e in errors if "PASSWORD" in str(e)]
    assert ["http://news.test/feed"] == plugin
    assert 1 == result.items_count
