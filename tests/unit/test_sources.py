"""Watchlist parsing: typed sources, per-source errors, unknown keys, keyword filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlasreg_cursor.domain.errors import InvalidConfig
from atlasreg_cursor.domain.sources import matches_keywords, parse_watchlist, unknown_keys

GOOD = {
    "id": "aneel_news",
    "handler_id": "SCRAPY_NEWSROOM_PLAYER",
    "url_feed": "https://www.gov.br/aneel",
}


def test_design_example_parses_with_globals() -> None:
    """The architecture §2a shape gives typed sources and global settings."""
    config = parse_watchlist(
        {
            "sources": [
                {**GOOD, "timeout_seconds": 600, "keywords": ["transmissão"], "player_id": "aneel"},
                {
                    "id": "sigel",
                    "handler_id": "AIRFLOW_DAG",
                    "dag_id": "sigel_daily",
                    "enabled": False,
                },
            ],
            "global_settings": {"max_concurrent_sources": 3, "processing_timeout_minutes": 10},
        }
    )

    assert ["aneel_news", "sigel"] == [s.id for s in config.sources]
    assert ["aneel_news"] == [s.id for s in config.enabled_sources()]
    assert (3, 10.0) == (
        config.global_settings.max_concurrent_sources,
        config.global_settings.processing_timeout_minutes,
    )
    assert ("transmissão",) == config.sources[0].keywords


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ({"handler_id": "DOWNLOAD_CSV", "url_feed": "https://x"}, "'id'"),
        ({"id": "x", "handler_id": "FTP_MIRROR"}, "unknown handler_id"),
        ({"id": "x", "handler_id": "DOWNLOAD_CSV", "url_feed": "file:///etc/passwd"}, "http(s)"),
        ({"id": "x", "handler_id": "DOWNLOAD_CSV"}, "needs a url_feed"),
        ({"id": "x", "handler_id": "AIRFLOW_DAG"}, "dag_id"),
        ({**GOOD, "timeout_seconds": -1}, "timeout_seconds"),
        ({**GOOD, "keywords": "multa"}, "keywords"),
        ({**GOOD, "enabled": "yes"}, "enabled"),
        ({**GOOD, "id": "../etc"}, "'id'"),
        ("not an object", "object"),
    ],
)
def test_bad_sources_are_reported_and_skipped(source: object, fragment: str) -> None:
    """A bad source is reported with its reason; the good one next to it loads."""
    config = parse_watchlist({"sources": [source, {**GOOD, "id": "ok"}]})

    assert ["ok"] == [s.id for s in config.sources]
    (bad,) = config.invalid
    assert fragment in bad.reason


def test_duplicate_ids_are_reported() -> None:
    """Ids must be unique: the second one is rejected."""
    config = parse_watchlist({"sources": [GOOD, GOOD]})

    assert (1, 1) == (len(config.sources), len(config.invalid))
    assert "duplicate" in config.invalid[0].reason


def test_unknown_keys_are_kept_and_ignored() -> None:
    """Fields the Worker adds are tolerated and kept in raw."""
    config = parse_watchlist({"sources": [{**GOOD, "owner": "ops", "priority": 2}], "extra": True})

    assert frozenset({"owner", "priority"}) == unknown_keys(config.sources[0])
    assert "ops" == config.sources[0].raw["owner"]


def test_keys_not_read_are_listed_with_a_hint() -> None:
    """Misspelt or misplaced fields still load, but each is named, with what was probably meant."""
    config = parse_watchlist(
        {
            "sources": [{**GOOD, "alert_on_zero_result": True, "keyword": ["multa"]}],
            "global_settings": {"alert_on_zero_result": True, "schedule": "0 6 * * *"},
            "global_setting": {},
        }
    )

    assert ["aneel_news"] == [s.id for s in config.sources]
    assert (
        "global_setting: not a field the Cursor reads (kept, ignored);"
        " did you mean 'global_settings'?",
        "sources[0].alert_on_zero_result (aneel_news): not a field the Cursor reads"
        " (kept, ignored); 'alert_on_zero_results' belongs in global_settings",
        "sources[0].keyword (aneel_news): not a field the Cursor reads (kept, ignored);"
        " did you mean 'keywords'?",
        "global_settings.alert_on_zero_result: not a field the Cursor reads (kept, ignored);"
        " did you mean 'alert_on_zero_results'?",
        "global_settings.schedule: not a field the Cursor reads (kept, ignored);"
        " 'schedule' belongs in each source",
    ) == config.ignored_keys
    assert config.global_settings.alert_on_zero_results is False


def test_a_watchlist_of_known_keys_lists_nothing_ignored() -> None:
    """Every documented field is read: nothing to warn about."""
    config = parse_watchlist(
        {
            "sources": [
                {
                    **GOOD,
                    "name": "ANEEL",
                    "enabled": True,
                    "schedule": "0 6 * * 1",
                    "timeout_seconds": 60,
                    "keywords": ["multa"],
                    "selectors": {"item": "article"},
                    "max_pages": 2,
                    "max_items": 10,
                    "crawl": {"max_per_host": 1},
                }
            ],
            "global_settings": {
                "max_concurrent_sources": 2,
                "processing_timeout_minutes": 5,
                "alert_on_zero_results": True,
                "alert_recipients": ["ops@example.com"],
            },
        }
    )

    assert () == config.ignored_keys


@pytest.mark.parametrize("data", [[], {"sources": "x"}, {"nothing": []}, None])
def test_unusable_documents_raise(data: object) -> None:
    """A document without a sources list is unusable as a whole."""
    with pytest.raises(InvalidConfig):
        parse_watchlist(data)


@pytest.mark.parametrize(
    ("keywords", "text", "expected"),
    [
        (["transmissão"], "Nova linha de TRANSMISSAO aprovada", True),
        (["Leilão"], "resultado do leilao de energia", True),
        (["multa"], "Auto de infração", False),
        ([], "qualquer coisa", True),
    ],
)
def test_keyword_filter_ignores_case_and_accents(
    keywords: list[str], text: str, expected: bool
) -> None:
    """Keywords match case- and accent-insensitively."""
    assert expected == matches_keywords(keywords, text, None)


@given(st.text(min_size=1, max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_a_keyword_always_matches_a_text_containing_it(
    keyword: str, before: str, after: str
) -> None:
    """Whatever the text around it, a keyword contained in the title matches."""
    assert matches_keywords([keyword], before + keyword + after)
