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
