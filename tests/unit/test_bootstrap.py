"""The composition root: one table of backend names, ports built on first use, all closed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import atlasreg_cursor.entrypoints
from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from atlasreg_cursor.entrypoints.backends import BACKENDS
from atlasreg_cursor.entrypoints.bootstrap import App, build
from atlasreg_cursor.entrypoints.settings import MODE_DEFAULTS, SettingsError, load_settings
from tests.fakes import FakeConfigSource, FakeExecutor, FakeNotifier, FakeObjectStore, FakeQueue

ENTRYPOINTS = Path(atlasreg_cursor.entrypoints.__file__).parent


def _settings(tmp_path: Path, **env: str) -> Any:
    return load_settings({"CURSOR_HOME": str(tmp_path), **env}, env_file=None)


def test_every_mode_names_backends_of_the_tables() -> None:
    """MODE_DEFAULTS only names backends the factory tables know."""
    for mode, backends in MODE_DEFAULTS.items():
        for port, backend in backends.items():
            assert backend in BACKENDS[port], f"MODE={mode} {port}={backend}"


@pytest.mark.parametrize("port", sorted(BACKENDS))
def test_an_unknown_backend_is_refused_with_the_table_names(port: str) -> None:
    """*_BACKEND accepts exactly the names of its port's table."""
    with pytest.raises(SettingsError) as info:
        load_settings({f"{port.upper()}_BACKEND": "nonesuch"}, env_file=None)

    assert f"{port.upper()}_BACKEND: 'nonesuch' is not one of {', '.join(BACKENDS[port])}" in str(
        info.value
    )


def test_a_port_is_built_only_when_used(tmp_path: Path) -> None:
    """Reading the watchlist opens no queue (no SQLite file appears)."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "news_watchlist_config.json").write_text('{"sources": []}')
    app = build(_settings(tmp_path))

    assert [] == list(app.config.load().sources)
    app.close()

    assert not (tmp_path / "queue.sqlite3").exists()


def test_each_port_is_built_once_across_threads(tmp_path: Path) -> None:
    """Threads asking for the queue at once all get the same adapter."""
    app = build(_settings(tmp_path))
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(app.queue)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert 8 == len(seen)
    assert all(queue is seen[0] for queue in seen)
    assert isinstance(seen[0], SqliteQueue)
    app.close()


def test_dead_letters_is_the_queue_when_it_keeps_them(tmp_path: Path) -> None:
    """SQLite keeps its dead letters; a queue without the DeadLetterBox methods gives None."""
    app = build(_settings(tmp_path))
    fake = build(_settings(tmp_path), queue=FakeQueue(visibility_timeout=60))

    assert app.dead_letters is app.queue
    assert fake.dead_letters is None
    app.close()


class _Closing:
    def __init__(self, log: list[str], name: str, *, fails: bool = False) -> None:
        self._log, self._name, self._fails = log, name, fails

    def close(self) -> None:
        self._log.append(self._name)
        if self._fails:
            raise RuntimeError(f"{self._name} would not close")


def test_close_closes_every_port_built_or_handed_in_and_only_those(tmp_path: Path) -> None:
    """Built ports are closed (one failing does not stop the others); unbuilt ones are not."""
    closed: list[str] = []
    app = build(
        _settings(tmp_path),
        queue=_Closing(closed, "queue", fails=True),  # type: ignore[arg-type]
        storage=_Closing(closed, "storage"),  # type: ignore[arg-type]
        notifier=_Closing(closed, "notifier"),  # type: ignore[arg-type]
        executor=_Closing(closed, "executor"),  # type: ignore[arg-type]
        config=_Closing(closed, "config"),  # type: ignore[arg-type]
    )
    for port in ("queue", "storage", "executor"):
        getattr(app, port)

    with pytest.raises(RuntimeError, match="queue would not close"):
        app.close()

    assert ["executor", "queue", "storage"] == closed


def test_handed_in_adapters_are_used_as_they_are(tmp_path: Path) -> None:
    """Overrides are not wrapped in breakers; built ports are."""
    store, notifier, executor = FakeObjectStore(), FakeNotifier(), FakeExecutor()
    config = FakeConfigSource({"sources": []})
    app = build(
        _settings(tmp_path), storage=store, notifier=notifier, executor=executor, config=config
    )
    built: App = build(_settings(tmp_path))

    assert (store, notifier, executor, config) == (
        app.storage,
        app.notifier,
        app.executor,
        app.config,
    )
    assert "BreakerStore" == type(built.storage).__name__
    assert "BreakerExecutor" == type(built.executor).__name__
    built.close()


def test_local_mode_imports_no_remote_library(tmp_path: Path) -> None:
    """Building the local App and using every port imports neither botocore nor Celery.

    (redis is imported: pybreaker, under the circuit breakers, imports it.)
    """
    code = (
        "import sys;"
        "from atlasreg_cursor.entrypoints.bootstrap import build;"
        "from atlasreg_cursor.entrypoints.settings import load_settings;"
        f"app = build(load_settings({{'CURSOR_HOME': {str(tmp_path)!r}}}, env_file=None));"
        "app.queue.stats(); list(app.storage.list('gold/')); app.notifier; app.executor;"
        "app.close();"
        "print(','.join(sorted(m for m in sys.modules"
        " if m.split('.')[0] in {'botocore', 'boto3', 'celery', 'kombu'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "" == out.stdout.strip()


@pytest.mark.parametrize(
    "path",
    [ENTRYPOINTS / "demo.py", *sorted((ENTRYPOINTS / "commands").glob("*.py"))],
    ids=lambda p: p.relative_to(ENTRYPOINTS).as_posix(),
)
def test_commands_and_the_demo_never_import_the_cli(path: Path) -> None:
    """Output helpers and exit codes come from output.py; cli.py only parses and dispatches."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}

    assert not {m for m in imported if m.endswith("cli")}


class _WritableFakeConfig(FakeConfigSource):
    """A config source that stores what ``config push`` gives it."""

    def put_value(self, key: str, value: bytes) -> None:
        self.raw = value


def test_a_new_backend_is_one_table_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records added to the tables are accepted, built and their capabilities obeyed."""
    from atlasreg_cursor.adapters.core import handlers
    from atlasreg_cursor.entrypoints import backends
    from atlasreg_cursor.entrypoints.cli import main
    from atlasreg_cursor.entrypoints.startup import startup_checks

    config = _WritableFakeConfig({"sources": []})
    monkeypatch.setitem(
        backends.QUEUES,
        "memory",
        backends.QueueBackend(
            build=lambda s, app: FakeQueue(visibility_timeout=s.visibility_seconds),
            extends_leases=False,
            shares_breakers_through_redis=True,
            delivery_limit=lambda s: 2,
        ),
    )
    monkeypatch.setitem(
        backends.CONFIGS,
        "memory",
        backends.ConfigBackend(build=lambda s, app: config, writable=True),
    )
    monkeypatch.setitem(
        backends.EXECUTORS,
        "memory",
        backends.ExecutorBackend(build=lambda s, app: FakeExecutor(), handler_plugins=True),
    )
    monkeypatch.setitem(
        backends.NOTIFIERS,
        "memory",
        backends.NotifierBackend(
            build=lambda s, app: FakeNotifier(),
            requires=("hook_hmac_secret",),
            default_when=lambda s: True,
        ),
    )
    monkeypatch.delitem(backends.NOTIFIERS, "outbox")
    env = {"QUEUE_BACKEND": "memory", "CONFIG_BACKEND": "memory", "EXECUTOR_BACKEND": "memory"}
    with pytest.raises(SettingsError, match="HOOK_HMAC_SECRET: required by the memory notifier"):
        _settings(tmp_path, **env)
    settings = _settings(tmp_path, **env, HOOK_HMAC_SECRET="s3cret-hook-key-1")

    assert "memory" == settings.backend("notifier")  # its default_when holds
    assert (1800.0, True) == (settings.visibility_seconds, settings.sweeps)
    monkeypatch.setattr(handlers, "known_handler_ids", lambda: ["PLUGIN_HANDLER"])
    assert frozenset({"PLUGIN_HANDLER"}) == backends.known_handlers(settings)
    app = build(settings)
    try:
        assert isinstance(app.queue, FakeQueue)
        assert 2 == app.policy.queue_max_deliveries
        assert any("max_retries=2" in w for w in startup_checks(app))
        assert "FakeNotifier" == type(app.notifier).__name__  # not behind the webhook breaker
        assert app.breakers.shared
    finally:
        app.close()

    watchlist = tmp_path / "pushed.json"
    watchlist.write_text('{"sources": []}')
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path))
    for name, value in {**env, "HOOK_HMAC_SECRET": "s3cret-hook-key-1"}.items():
        monkeypatch.setenv(name, value)
    assert 0 == main(["--env-file", "/nonexistent", "config", "push", str(watchlist)])
    assert b'{"sources": []}' == config.raw  # stored through the source, not a file
    assert not settings.watchlist_path.exists()
    capsys.readouterr()
    assert 0 == main(["--env-file", "/nonexistent", "config", "show"])
    shown = json.loads(capsys.readouterr().out)
    assert {
        "queue": "memory",
        "config": "memory",
        "storage": "file",
        "notifier": "memory",
        "executor": "memory",
    } == shown["backends"]


def _backend_name_comparisons(path: Path) -> list[str]:
    """``settings.backend(...)`` compared with a literal name, as ``file:line``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        reads_backend = any(
            isinstance(side, ast.Call)
            and isinstance(side.func, ast.Attribute)
            and side.func.attr == "backend"
            for side in sides
        )
        literal = any(isinstance(side, ast.Constant | ast.Tuple | ast.Set) for side in sides)
        if reads_backend and literal:
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_decides_by_a_backend_name() -> None:
    """Behaviour follows the records' capabilities: no ``backend(port) == "name"`` anywhere."""
    package = ENTRYPOINTS.parent
    found = [
        hit for path in sorted(package.rglob("*.py")) for hit in _backend_name_comparisons(path)
    ]

    assert [] == found
