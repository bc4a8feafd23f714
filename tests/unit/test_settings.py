"""Settings: environment and .env, typed errors naming the variable, secrets redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlasreg_cursor.entrypoints.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_mode() -> None:
    """No settings at all give the local mode with the outbox notifier."""
    settings = load_settings({}, env_file=None)

    assert ("sqlite", "file", "file", "outbox", "local") == tuple(
        settings.backend(p) for p in ("queue", "config", "storage", "notifier", "executor")
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("standalone", ("redis", "file", "minio", "core")),
        ("cloudflare", ("cloudflare", "kv", "r2", "core")),
    ],
)
def test_modes_pick_adapter_sets(mode: str, expected: tuple[str, ...]) -> None:
    """MODE picks a whole adapter set."""
    settings = load_settings({"MODE": mode}, env_file=None)

    assert expected == tuple(
        settings.backend(p) for p in ("queue", "config", "storage", "executor")
    )


def test_per_port_override_wins() -> None:
    """QUEUE_BACKEND overrides what MODE implies."""
    assert "sqlite" == load_settings(
        {"MODE": "standalone", "QUEUE_BACKEND": "sqlite"}, env_file=None
    ).backend("queue")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MAX_ATTEMPTS": "many"}, "MAX_ATTEMPTS"),
        ({"MODE": "cloud"}, "MODE"),
        ({"MINIO_SECURE": "perhaps"}, "MINIO_SECURE"),
        ({"QUEUE_BACKEND": "kafka"}, "QUEUE_BACKEND"),
        ({"VISIBILITY_TIMEOUT_SECONDS": "0"}, "VISIBILITY_TIMEOUT_SECONDS"),
        ({"HOOK_ENDPOINT": "http://127.0.0.1:1"}, "HOOK_HMAC_SECRET"),
        ({"HOOK_ENDPOINT": "ftp://x", "HOOK_HMAC_SECRET": "s"}, "HOOK_ENDPOINT"),
        ({"AIRFLOW_API_URL": "ftp://x"}, "AIRFLOW_API_URL: must be an http"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    """A bad value is a startup error that names the variable."""
    with pytest.raises(SettingsError, match=variable):
        load_settings(env, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    """.env fills in; the environment overrides it."""
    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nexport QUEUE_NAME="from-file"\nMAX_ATTEMPTS=7\n')

    settings = load_settings({"MAX_ATTEMPTS": "9"}, env_file=env_file)

    assert ("from-file", 9) == (settings.queue_name, settings.max_attempts)


def test_secrets_never_show() -> None:
    """Tokens and passwords are absent from repr and the redacted view."""
    settings = load_settings(
        {
            "CF_API_TOKEN": "tok-zq9x-1",
            "HOOK_HMAC_SECRET": "hook-zq9x-2",
            "REDIS_URL": "redis://:pw-zq9x-3@127.0.0.1:6379/2",
            "AIRFLOW_PASSWORD": "air-zq9x-4",
        },
        env_file=None,
    )

    shown = repr(settings) + str(settings.redacted())
    assert "zq9x" not in shown
    assert "redis://:***@127.0.0.1:6379/2" == settings.redacted()["REDIS_URL"]


def test_bad_secret_value_does_not_echo_it() -> None:
    """Even a malformed secret is not printed in the error."""
    from atlasreg_cursor.entrypoints.bootstrap import build_signer

    settings = load_settings({"HOOK_HMAC_SECRET": "whsec_%%%notbase64%%%"}, env_file=None)

    with pytest.raises(SettingsError, match="HOOK_HMAC_SECRET") as info:
        build_signer(settings)

    assert "notbase64" not in str(info.value)


def test_env_example_documents_every_setting() -> None:
    """.env.example names every setting, and loads as valid settings."""
    import re

    import attrs

    from atlasreg_cursor.entrypoints.settings import Settings

    example = Path(__file__).resolve().parents[2] / ".env.example"
    text = example.read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))

    assert {f.name.upper() for f in attrs.fields(Settings)} - named == set()
    assert "local" == load_settings({}, env_file=example).mode


def test_env_file_reads_like_compose(tmp_path: Path) -> None:
    """Inline comments, quotes, export and ${VAR}, as Docker Compose reads a .env."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "MODE=local # the default\n"
        "export QUEUE_NAME='jobs # not a comment'\n"
        'LOG_LEVEL="WARNING"\n'
        "CURSOR_HOME=/srv/cursor\n"
        "WATCHLIST_FILE=${CURSOR_HOME}/watchlist.json\n"
        "# a comment line\n\n"
    )

    settings = load_settings({}, env_file=env_file)

    assert ("local", "jobs # not a comment", "WARNING") == (
        settings.mode,
        settings.queue_name,
        settings.log_level,
    )
    assert Path("/srv/cursor/watchlist.json") == settings.watchlist_path


@pytest.mark.parametrize("given", ["info", "Info", " warning ", "ERROR"])
def test_log_level_is_taken_in_any_case(given: str, tmp_path: Path) -> None:
    """LOG_LEVEL=info works as INFO does, from the environment and from a .env file."""
    env_file = tmp_path / ".env"
    env_file.write_text(f'LOG_LEVEL="{given}"\n')

    from_env = load_settings({"LOG_LEVEL": given}, env_file=None).log_level
    from_file = load_settings({}, env_file=env_file).log_level

    assert (given.strip().upper(), given.strip().upper()) == (from_env, from_file)


def test_a_broken_env_line_names_its_line_not_its_text(tmp_path: Path) -> None:
    """A line that is not KEY=VALUE is refused by number; a secret on it is not echoed."""
    env_file = tmp_path / ".env"
    env_file.write_text("MODE=local\nthis is not valid s3cr3t-zq9x\n")

    with pytest.raises(SettingsError, match=r":2: expected NAME=value") as info:
        load_settings({}, env_file=env_file)

    assert "zq9x" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MODE": "cloud"}, "MODE: must be one of: local, standalone, cloudflare"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL: must be one of: DEBUG, INFO, WARNING, ERROR"),
        ({"MAX_ATTEMPTS": "many"}, "MAX_ATTEMPTS: must be a whole number"),
        ({"POLL_SECONDS": "soon"}, "POLL_SECONDS: must be a number"),
        ({"MINIO_SECURE": "perhaps"}, "MINIO_SECURE: must be true or false"),
        ({"SCHEDULE": "0 6 * *"}, "SCHEDULE: '0 6 * *' is not a cron expression of 5 fields"),
        ({"SCHEDULE_TZ": "Brasilia"}, "SCHEDULE_TZ: 'Brasilia' is not a known time zone"),
        ({"BREAKER_FAIL_MAX": "0"}, "BREAKER_FAIL_MAX: must be a whole number of 1 or more"),
    ],
)
def test_errors_say_what_is_allowed_in_plain_words(env: dict[str, str], expected: str) -> None:
    """The message names the variable and what it accepts; no Python type names."""
    with pytest.raises(SettingsError) as info:
        load_settings(env, env_file=None)

    assert expected in str(info.value)
    assert "typing" not in str(info.value)
    assert "Literal" not in str(info.value)


def test_the_default_consumer_id_differs_with_a_fixed_hostname_and_pid_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two containers (same hostname, both pid 1) still get two consumer ids; CONSUMER_ID wins."""
    import os
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "cursor")
    monkeypatch.setattr(os, "getpid", lambda: 1)
    settings = load_settings({}, env_file=None)

    first, second = settings.new_consumer_id(), settings.new_consumer_id()

    assert first != second
    assert (True, True) == (first.startswith("cursor-1-"), second.startswith("cursor-1-"))
    assert "me" == load_settings({"CONSUMER_ID": "me"}, env_file=None).new_consumer_id()


def test_core_allow_lists_are_comma_separated_names() -> None:
    """CORE_TASKS and AIRFLOW_DAGS: unset allows any (None); a list without a name is refused."""
    listed = load_settings(
        {"CORE_TASKS": " custom_scrape, sigel_scrape ,", "AIRFLOW_DAGS": "sigel_*"}, env_file=None
    )
    unset = load_settings({}, env_file=None)

    assert ("custom_scrape", "sigel_scrape") == listed.core_task_names
    assert ("sigel_*",) == listed.airflow_dag_patterns
    assert (None, None) == (unset.core_task_names, unset.airflow_dag_patterns)
    with pytest.raises(SettingsError, match="CORE_TASKS: list at least one name"):
        load_settings({"CORE_TASKS": ","}, env_file=None)
    with pytest.raises(SettingsError, match="AIRFLOW_DAGS: list at least one name"):
        load_settings({"AIRFLOW_DAGS": " , "}, env_file=None)
