"""The CLI's surface: help, usage errors, settings errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from atlasreg_cursor.entrypoints.cli import main


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help names every command."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])

    out = capsys.readouterr().out
    assert 0 == info.value.code
    for command in (
        "run",
        "enqueue",
        "ingest",
        "reprocess",
        "demo",
        "config",
        "runs",
        "dlq",
        "hooks",
        "verify",
        "health",
    ):
        assert f"    {command} " in out


def test_help_imports_no_heavy_library() -> None:
    """``atlasreg-cursor --help`` (the console script's entry point, in a fresh interpreter)
    loads none of scrapy, twisted, structlog or attrs: the CLI imports lazily."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n"
        "from atlasreg_cursor.entrypoints.cli import main\n"
        "sys.argv = ['atlasreg-cursor', '--help']\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert 0 == done.returncode, done.stderr
    assert "usage: atlasreg-cursor" in done.stdout
    heavy = {"scrapy", "twisted", "structlog", "attrs"}
    assert set() == {m for m in loaded if m.split(".")[0] in heavy}
    assert "atlasreg_cursor.entrypoints.cli" in loaded


def test_bad_setting_is_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed setting stops the CLI with exit code 2 and the variable's name."""
    monkeypatch.setenv("MAX_ATTEMPTS", "lots")

    code = main(["--env-file", "/nonexistent", "health"])

    assert 2 == code
    assert "MAX_ATTEMPTS" in capsys.readouterr().err


def test_bad_date_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """enqueue refuses a date that is not a calendar date."""
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path))

    code = main(["--env-file", "/nonexistent", "enqueue", "reprocess", "--date", "2026-02-30"])

    assert 2 == code
    assert "calendar date" in capsys.readouterr().err


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    from atlasreg_cursor import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])

    assert 0 == info.value.code
    assert f"atlasreg-cursor {__version__}" == capsys.readouterr().out.strip()


def test_every_command_has_a_dispatch_entry() -> None:
    """The dispatch table names exactly the commands and actions the parser knows."""
    import argparse

    from atlasreg_cursor.entrypoints.cli import build_parser, dispatch_table

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    keys = set()
    for name, command in sub.choices.items():
        actions = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        keys |= {f"{name} {action}" for action in actions[0].choices} if actions else {name}

    assert keys - {"demo"} == set(dispatch_table())


def _local(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path))
    monkeypatch.setenv("WATCHLIST_FILE", str(tmp_path / "watchlist.json"))
    (tmp_path / "watchlist.json").write_text('{"sources": []}')


def _dead_letter(tmp_path) -> None:
    from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue

    queue = SqliteQueue(tmp_path / "queue.sqlite3")
    queue.send(b"not json")
    (delivery,) = queue.receive(1, 0)
    queue.dead_letter(delivery, "invalid message: not JSON")


def test_dlq_purge_refuses_without_a_terminal_or_yes(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script that forgets --yes deletes nothing (exit 2); with --yes it purges."""
    import io
    import json

    _local(monkeypatch, tmp_path)
    _dead_letter(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    refused = main(["--env-file", "/nonexistent", "dlq", "purge"])
    err = capsys.readouterr().err
    purged = main(["--env-file", "/nonexistent", "dlq", "purge", "--yes"])

    assert 2 == refused
    assert "--yes" in err
    assert 0 == purged
    assert {"purged": 1} == json.loads(capsys.readouterr().out)


def test_dlq_purge_asks_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    """On a terminal, anything but yes keeps the dead letters."""
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    _local(monkeypatch, tmp_path)
    _dead_letter(tmp_path)
    monkeypatch.setattr("sys.stdin", Tty("n\n"))

    code = main(["--env-file", "/nonexistent", "dlq", "purge"])

    assert 1 == code
    assert "delete 1 dead letters for good? [y/N]" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", Tty("yes\n"))
    assert 0 == main(["--env-file", "/nonexistent", "dlq", "purge"])


def test_dlq_list_as_a_table(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    """-o table prints aligned columns with a header for people."""
    _local(monkeypatch, tmp_path)
    _dead_letter(tmp_path)
    capsys.readouterr()

    code = main(["--env-file", "/nonexistent", "dlq", "list", "-o", "table"])

    lines = capsys.readouterr().out.splitlines()
    assert 0 == code
    assert ["QUEUE_MESSAGE_ID", "ATTEMPTS", "DEAD_AT", "REASON"] == lines[0].split()
    assert lines[1].endswith("invalid message: not JSON")


def test_health_as_a_table(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    """health -o table shows one line per check."""
    _local(monkeypatch, tmp_path)

    code = main(["--env-file", "/nonexistent", "health", "-o", "table"])

    lines = capsys.readouterr().out.splitlines()
    assert 0 == code
    assert ["queue", "config", "storage"] == [line.split()[0] for line in lines[1:]]
    assert all(line.split()[1] == "yes" for line in lines[1:])


class _WritableConfig:
    """A config source ``config push`` stores through (it has ``put_value``)."""

    def __init__(self) -> None:
        self.stored: bytes | None = None

    def load(self) -> object:
        raise AssertionError("push does not read the watchlist")

    def put_value(self, key: str, value: bytes) -> None:
        self.stored = value


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "show", "run_000000000000"],  # fails: no such run
        ["runs", "list"],
        ["verify", "gold/none.json"],  # fails: no such object
        ["config", "show"],
        ["config", "show", "--broken-watchlist"],  # fails: the watchlist is not JSON
        ["config", "validate"],
        ["config", "push", "--writable"],
        ["schedule", "show"],
        ["health"],
        ["health", "--broken-watchlist"],  # a failing check
        ["dlq", "list"],
        ["hooks", "list"],
        ["enqueue", "reprocess", "--date", "2026-11-24"],
    ],
    ids=" ".join,
)
def test_every_command_closes_its_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path, argv: list[str]
) -> None:
    """Whatever the outcome, each App a command builds is closed before it returns."""
    from atlasreg_cursor.entrypoints import backends
    from atlasreg_cursor.entrypoints.bootstrap import App

    _local(monkeypatch, tmp_path)
    built: list[App] = []
    closed: list[App] = []
    init, close = App.__init__, App.close

    def tracked_init(self: App, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        built.append(self)

    def tracked_close(self: App) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(App, "__init__", tracked_init)
    monkeypatch.setattr(App, "close", tracked_close)
    if "--broken-watchlist" in argv:
        argv = [a for a in argv if a != "--broken-watchlist"]
        (tmp_path / "watchlist.json").write_text("{not json")
    if "--writable" in argv:
        source = _WritableConfig()
        monkeypatch.setitem(
            backends.CONFIGS,
            "memory",
            backends.ConfigBackend(build=lambda s, app: source, writable=True),  # type: ignore[arg-type, return-value]
        )
        monkeypatch.setenv("CONFIG_BACKEND", "memory")
        argv = [*argv[:-1], str(tmp_path / "watchlist.json")]

    main(["--env-file", "/nonexistent", *argv])

    assert 1 <= len(built)
    assert [id(app) for app in built] == [id(app) for app in closed]


def test_config_validate_and_push_warn_about_fields_that_do_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt field and a source schedule without SCHEDULE: warnings, still valid, installed."""
    import json

    _local(monkeypatch, tmp_path)
    monkeypatch.delenv("SCHEDULE", raising=False)
    path = tmp_path / "new.json"
    path.write_text(
        json.dumps(
            {
                "sources": [
                    {"id": "weekly", "handler_id": "CUSTOM_SCRAPER", "schedule": "0 6 * * 1"}
                ],
                "global_settings": {"alert_on_zero_result": True},
            }
        )
    )

    validated = main(["--env-file", "/nonexistent", "config", "validate", str(path)])
    out = capsys.readouterr().out
    pushed = main(["--env-file", "/nonexistent", "config", "push", str(path)])
    err = capsys.readouterr().err

    assert (0, 0) == (validated, pushed)
    for text in (out, err):
        assert (
            "warning: watchlist global_settings.alert_on_zero_result: not a field the Cursor"
            " reads (kept, ignored); did you mean 'alert_on_zero_results'?"
        ) in text
        assert "warning: sources weekly have a schedule, but SCHEDULE is not set" in text
    assert path.read_bytes() == (tmp_path / "watchlist.json").read_bytes()
    monkeypatch.setenv("SCHEDULE", "0 6 * * *")
    assert 0 == main(["--env-file", "/nonexistent", "config", "validate"])
    assert "SCHEDULE" not in capsys.readouterr().out


def _journal_and_webhook(tmp_path) -> str:
    """A finished run's journal and its webhook waiting in the outbox, in the local store."""
    import datetime as dt

    from atlasreg_cursor.adapters.local.file_store import FileObjectStore
    from atlasreg_cursor.domain import notifications as notes
    from atlasreg_cursor.domain.codec import converter
    from atlasreg_cursor.domain.hashing import canonical_bytes
    from atlasreg_cursor.domain.ingest import Outbox
    from atlasreg_cursor.domain.messages import MessageType
    from atlasreg_cursor.domain.runs import RunJournal, RunStatus, journal_key

    store = FileObjectStore(tmp_path / "store")
    now = dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC)
    run_id = "run_00000000abcd"
    journal = RunJournal(
        run_id=run_id,
        date=now.date(),
        message_type=MessageType.START_DAILY_INGEST,
        identity="m-1",
        created_at=now,
        updated_at=now,
        status=RunStatus.SUCCESS,
        finished_at=now,
    )
    store.put(journal_key(run_id), canonical_bytes(converter.unstructure(journal)))
    record = notes.ingest_complete(
        run_id=run_id,
        status=RunStatus.SUCCESS,
        completed_at=now,
        file_path=f"gold/2026-11-24/{run_id}.json",
        sha256="0" * 64,
        documents_count=1,
        errors_count=0,
    ).to_record()
    Outbox(store, clock=lambda: now).add(run_id, record)
    return run_id


def test_runs_and_hooks_list_as_tables(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    """-o table on runs list and hooks list: a header, then one aligned row per item."""
    _local(monkeypatch, tmp_path)
    run_id = _journal_and_webhook(tmp_path)
    capsys.readouterr()

    runs = main(["--env-file", "/nonexistent", "runs", "list", "-o", "table"])
    runs_lines = capsys.readouterr().out.splitlines()
    hooks = main(["--env-file", "/nonexistent", "hooks", "list", "-o", "table"])
    hooks_lines = capsys.readouterr().out.splitlines()

    assert (0, 0) == (runs, hooks)
    assert ["RUN_ID", "DATE", "TYPE", "STATUS", "UPDATED_AT"] == runs_lines[0].split()
    assert [run_id, "2026-11-24", "start_daily_ingest", "success"] == runs_lines[1].split()[:4]
    assert 2 == len(runs_lines)
    assert [
        "RUN_ID",
        "EVENT_TYPE",
        "STATE",
        "ATTEMPTS",
        "NEXT_ATTEMPT_AT",
        "LAST_ERROR",
    ] == hooks_lines[0].split()
    assert [run_id, "ingest_complete", "pending", "0"] == hooks_lines[1].split()[:4]
    assert hooks_lines[1].split()[-1] == "-"  # no error yet
    assert 2 == len(hooks_lines)
