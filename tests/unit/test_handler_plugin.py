"""Third-party handlers found through the ``atlasreg_cursor.handlers`` entry points."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.core.executor import CoreExecutor
from atlasreg_cursor.adapters.core.handlers import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    known_handler_ids,
    registry,
)
from atlasreg_cursor.domain.documents import SourceResult
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import parse_watchlist

PLUGIN_MODULE = '''
"""A tiny handler plugin."""

from atlasreg_cursor.domain.documents import Document, SourceResult


def echo(source, run, core):
    """Return one document named after the source and the run."""
    doc = Document(document_id=f"{source.id}:{run.run_id}", source_id=source.id)
    return SourceResult(source_id=source.id, documents=(doc,), items_count=1)


class Counting:
    """A handler object made by the registry with no arguments."""

    def __call__(self, source, run, core):
        return SourceResult(source_id=source.id, items_count=len(source.raw.get("items", [])))


def broken_import():
    raise RuntimeError("never called")
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install a plugin distribution (dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    dist = site / "atlasreg_echo_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: atlasreg-echo-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{ENTRY_POINT_GROUP}]
            ECHO = atlasreg_echo_plugin:echo
            COUNTING = atlasreg_echo_plugin:Counting
            MISSING = atlasreg_echo_plugin:no_such_name
            DOWNLOAD_CSV = atlasreg_echo_plugin:echo
            """
        )
    )
    (site / "atlasreg_echo_plugin.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("atlasreg_echo_plugin", None)


RUN = RunContext(
    run_id="run_0123456789ab",
    date=dt.date(2026, 11, 24),
    message_type=MessageType.START_DAILY_INGEST,
    identity="m-1",
)


def test_plugin_handlers_are_loaded_and_run(plugin):
    """An entry-point handler runs through the executor like a built-in."""
    handlers = registry()
    watchlist = parse_watchlist(
        {
            "sources": [
                {"id": "echoed", "handler_id": "ECHO"},
                {"id": "counted", "handler_id": "COUNTING", "items": [1, 2, 3]},
            ]
        },
        known_handlers=known_handler_ids(),
    )
    executor = CoreExecutor(
        celery=None, airflow=None, scrapy_project_path=None, local_fallback=None, handlers=handlers
    )

    echoed = executor.run_source(watchlist.sources[0], RUN)
    counted = executor.run_source(watchlist.sources[1], RUN)

    assert () == watchlist.invalid
    assert ["echoed:run_0123456789ab"] == [d.document_id for d in echoed.documents]
    assert SourceResult(source_id="counted", items_count=3) == counted


def test_broken_and_clashing_plugins_are_skipped(plugin):
    """A plugin that fails to load is skipped; a built-in id is never replaced."""
    handlers = registry()

    assert "MISSING" not in handlers
    assert BUILTIN["DOWNLOAD_CSV"] is handlers["DOWNLOAD_CSV"]
    assert {"ECHO", "COUNTING"} <= set(handlers)


def test_known_ids_include_plugins_without_loading_them(plugin):
    """Config validation sees plugin ids by name."""
    ids = known_handler_ids()

    assert {"ECHO", "COUNTING", "MISSING", "AIRFLOW_DAG"} <= ids
    assert "atlasreg_echo_plugin" not in sys.modules


def test_without_plugins_only_builtins(plugin):
    """``extra_entry_points=False`` gives the built-in handlers only."""
    assert set(BUILTIN) == set(registry(extra_entry_points=False))


def test_unknown_handler_is_a_source_failure():
    """A source whose handler is not installed fails clearly."""
    executor = CoreExecutor(
        celery=None, airflow=None, scrapy_project_path=None, local_fallback=None, handlers={}
    )
    source = parse_watchlist(
        {"sources": [{"id": "x", "handler_id": "GHOST"}]}, known_handlers={"GHOST"}
    ).sources[0]

    with pytest.raises(SourceFailed) as info:
        executor.run_source(source, RUN)

    assert "unknown_handler" == info.value.error_type
