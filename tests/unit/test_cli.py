"""The CLI's surface: help, usage errors, settings errors."""

from __future__ import annotations

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
