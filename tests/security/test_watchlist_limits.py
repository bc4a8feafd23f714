"""A hostile watchlist: non-finite and out-of-range numbers, loose id patterns, bad dag_ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlasreg_cursor.domain.errors import InvalidConfig, InvalidRunId
from atlasreg_cursor.domain.hashing import is_sha256_hex
from atlasreg_cursor.domain.runs import validate_date, validate_run_id
from atlasreg_cursor.domain.sources import parse_watchlist, parse_watchlist_bytes
from atlasreg_cursor.entrypoints.cli import main

pytestmark = pytest.mark.security

GOOD = '{"id": "ok", "handler_id": "DOWNLOAD_CSV", "url_feed": "https://dados.example/a.csv"}'


def _source(fields: str) -> bytes:
    bad = (
        '{"id": "bad", "handler_id": "DOWNLOAD_CSV", "url_feed": "https://dados.example/b.csv", '
        + fields
        + "}"
    )
    return f'{{"sources": [{bad}, {GOOD}]}}'.encode()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ('"timeout_seconds": Infinity', "timeout_seconds"),
        ('"timeout_seconds": -Infinity', "timeout_seconds"),
        ('"timeout_seconds": NaN', "timeout_seconds"),
        ('"timeout_seconds": 1e400', "timeout_seconds"),
        ('"timeout_seconds": ' + "9" * 400, "timeout_seconds"),
        ('"timeout_seconds": 0', "timeout_seconds"),
        ('"timeout_seconds": 86401', "timeout_seconds"),
        ('"timeout_seconds": true', "timeout_seconds"),
        ('"max_items": 0', "max_items"),
        ('"max_items": 1.5', "max_items"),
        ('"max_items": 1000001', "max_items"),
        ('"max_items": 1e400', "max_items"),
        ('"max_pages": -1', "max_pages"),
        ('"max_pages": NaN', "max_pages"),
        ('"csv": {"delimiter": ";", "limits": [1, NaN]}', "csv.limits[1]"),
        ('"extra": {"deep": -1e999}', "extra.deep"),
        ('"priority": ' + "1" * 30, "priority"),
    ],
)
def test_bad_numbers_reject_the_source_naming_the_field(fields: str, named: str) -> None:
    """Infinity, NaN, 1e400, huge ints and out-of-range values reject that source only."""
    config = parse_watchlist_bytes(_source(fields))

    assert ["ok"] == [s.id for s in config.sources]
    (bad,) = config.invalid
    assert bad.reason.startswith(named)


@pytest.mark.parametrize(
    ("globals_", "named"),
    [
        ('{"max_concurrent_sources": Infinity}', "global_settings.max_concurrent_sources"),
        ('{"max_concurrent_sources": 0}', "global_settings.max_concurrent_sources"),
        ('{"max_concurrent_sources": 1000}', "global_settings.max_concurrent_sources"),
        ('{"processing_timeout_minutes": NaN}', "global_settings.processing_timeout_minutes"),
        ('{"processing_timeout_minutes": 1e400}', "global_settings.processing_timeout_minutes"),
        ('{"processing_timeout_minutes": -3}', "global_settings.processing_timeout_minutes"),
        ('{"alert": [' + "7" * 25 + "]}", "global_settings.alert[0]"),
    ],
)
def test_bad_global_numbers_reject_the_document(globals_: str, named: str) -> None:
    """A bad number in global_settings makes the whole document invalid, naming it."""
    raw = f'{{"sources": [{GOOD}], "global_settings": {globals_}}}'.encode()

    with pytest.raises(InvalidConfig, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_watchlist_bytes(raw)


@pytest.mark.parametrize(
    "dag_id",
    ["../../variables", "sigel daily", "sigel_daily\n", "", "x" * 251, "a/b", "d?x", ".", ".."],
)
def test_dag_id_must_match_airflows_pattern(dag_id: str) -> None:
    """
    dag_id is checked with fullmatch against Airflow's [\\w.-]{1,250}, and may
    not be only dots (``..`` would climb out of ``/dags/<dag_id>/`` in the API path).
    """
    config = parse_watchlist(
        {"sources": [{"id": "s", "handler_id": "AIRFLOW_DAG", "dag_id": dag_id}]}
    )

    assert () == config.sources
    assert "dag_id" in config.invalid[0].reason


@pytest.mark.parametrize(
    ("task_id", "valid"),
    [
        ("extract", True),
        ("group.extract-2", True),
        ("...x", True),
        (".", False),
        ("..", False),
        ("../variables", False),
        ("extract\n", False),
        ("a b", False),
        ("", False),
        ("t" * 251, False),
    ],
)
def test_xcom_task_id_must_match_airflows_task_id_pattern(task_id: str, valid: bool) -> None:
    """xcom_task_id is a path segment of the XCom call: Airflow's id pattern, matched whole."""
    config = parse_watchlist(
        {
            "sources": [
                {
                    "id": "s",
                    "handler_id": "AIRFLOW_DAG",
                    "dag_id": "sigel_daily",
                    "xcom_task_id": task_id,
                }
            ]
        }
    )

    assert valid == bool(config.sources)
    if not valid:
        assert config.invalid[0].reason.startswith("xcom_task_id must be")


@pytest.mark.parametrize("sid", ["abc\n", "abc\r", "../x", "a b", "", "a" * 129, "ação"])
def test_source_ids_are_matched_whole(sid: str) -> None:
    """An id with a trailing newline no longer passes (fullmatch, not match)."""
    config = parse_watchlist(
        {"sources": [{"id": sid, "handler_id": "DOWNLOAD_CSV", "url_feed": "https://x.example/"}]}
    )

    assert () == config.sources


def test_run_ids_dates_and_digests_are_matched_whole() -> None:
    """run_id, date and sha256 checks refuse a trailing newline."""
    with pytest.raises(InvalidRunId):
        validate_run_id("run_0123456789ab\n")
    with pytest.raises(InvalidRunId):
        validate_date("2026-11-24\n")
    assert not is_sha256_hex("a" * 64 + "\n")
    assert "run_0123456789ab" == validate_run_id("run_0123456789ab")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000\\@8.8.8.8/x.csv",
        "http://user:pw@dados.example/x.csv",
        "http://dados.example/x.csv\n",
        "http://dados.example/\x00x.csv",
        "http://dados.example/x y.csv",
        "file:///etc/passwd",
        "javascript:alert(1)",
    ],
)
def test_url_feed_must_be_a_plain_http_url(url: str) -> None:
    """The watchlist already refuses what the guard would refuse by syntax."""
    config = parse_watchlist(
        {"sources": [{"id": "s", "handler_id": "DOWNLOAD_CSV", "url_feed": url}]}
    )

    assert () == config.sources
    assert "url_feed" in config.invalid[0].reason


def _validate(tmp_path: Path, raw: bytes, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "watchlist.json"
    path.write_bytes(raw)
    code = main(["--env-file", "/nonexistent", "config", "validate", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_config_validate_file_names_the_field_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``config validate FILE`` checks that file, names the bad field and exits non-zero."""
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path / "home"))

    code, text = _validate(tmp_path, _source('"timeout_seconds": Infinity'), capsys)

    assert 1 == code
    assert "invalid sources[0] bad: timeout_seconds: Infinity is not a finite number" in text


def test_config_validate_file_rejects_a_bad_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad global number fails the document with the field's name."""
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path / "home"))
    raw = (
        json.dumps({"sources": []}).encode()[:-1]
        + b', "global_settings": {"max_concurrent_sources": NaN}}'
    )

    code, text = _validate(tmp_path, raw, capsys)

    assert 1 == code
    assert "global_settings.max_concurrent_sources" in text


def test_config_validate_file_passes_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: a clean file validates with exit 0, whatever the configured watchlist is."""
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path / "home"))

    code, text = _validate(tmp_path, f'{{"sources": [{GOOD}]}}'.encode(), capsys)

    assert 0 == code
    assert "1 valid sources" in text


def test_invalid_source_reasons_are_redacted_and_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reasons echo the watchlist: ``config validate`` shows them without secrets, each bounded."""
    monkeypatch.setenv("CURSOR_HOME", str(tmp_path / "home"))
    feed = {"handler_id": "DOWNLOAD_CSV", "url_feed": "https://dados.example/b.csv"}
    sources = [
        {"id": "leaky", **feed, "enabled": "https://u:PW-SENTINEL-1@h/?api_key=KEY-SENTINEL-2"},
        {"id": "https://u:ID-SENTINEL-3@h/?token=ID-SENTINEL-4", **feed},
        {"id": "long-name", **feed, "name": ["N" * 100_000]},
        {"id": "long-handler", "handler_id": "H" * 100_000},
        {"id": "long-crawl", **feed, "crawl": {"obey_robots": "R" * 100_000}},
    ]

    config = parse_watchlist({"sources": sources})
    code, text = _validate(tmp_path, json.dumps({"sources": sources}).encode(), capsys)

    assert 5 == len(config.invalid)
    assert all(len(bad.reason) <= 500 for bad in config.invalid)
    assert 1 == code
    assert not [
        s
        for s in ("PW-SENTINEL-1", "KEY-SENTINEL-2", "ID-SENTINEL-3", "ID-SENTINEL-4")
        if s in text
    ]
    assert "enabled must be true or false" in text
    assert len(text) < 5 * 700
