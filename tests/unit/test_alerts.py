"""Watchlist alerts: zero-result sources and recipients in the webhook metadata."""

from __future__ import annotations

import pytest

from atlasreg_cursor.domain.alerts import alert_metadata
from atlasreg_cursor.domain.errors import InvalidConfig
from atlasreg_cursor.domain.runs import SourceOutcome
from atlasreg_cursor.domain.sources import GlobalSettings, parse_watchlist

OUTCOMES = (
    SourceOutcome(source_id="b_empty", ok=True, documents_count=0),
    SourceOutcome(source_id="a_full", ok=True, documents_count=4),
    SourceOutcome(source_id="c_failed", ok=False, error_type="timeout"),
    SourceOutcome(source_id="a_empty", ok=True, documents_count=0),
)


def test_zero_result_sources_are_listed_when_asked() -> None:
    """Sources ok with no document become alerts; failed ones are errors, not alerts."""
    settings = GlobalSettings(alert_on_zero_results=True, alert_recipients=("ops@example.com",))

    metadata = alert_metadata(OUTCOMES, settings)

    assert ["a_empty", "b_empty"] == [a["source_id"] for a in metadata["alerts"]]
    assert {"zero_results"} == {a["type"] for a in metadata["alerts"]}
    assert ["ops@example.com"] == metadata["alert_recipients"]


def test_nothing_is_added_when_alerts_are_off() -> None:
    """Without the settings the metadata is unchanged."""
    assert {} == alert_metadata(OUTCOMES, GlobalSettings())


def test_alerts_list_is_present_even_when_empty() -> None:
    """With alert_on_zero_results on and no empty source, the Worker still sees the list."""
    full = (SourceOutcome(source_id="a", ok=True, documents_count=1),)

    assert {"alerts": []} == alert_metadata(full, GlobalSettings(alert_on_zero_results=True))


@pytest.mark.parametrize(
    ("global_settings", "match"),
    [
        ({"alert_on_zero_results": "yes"}, "alert_on_zero_results must be true or false"),
        ({"alert_recipients": "ops@example.com"}, "alert_recipients must be a list"),
        ({"alert_recipients": ["ok@example.com", 3]}, "alert_recipients must be a list"),
    ],
)
def test_malformed_alert_settings_are_refused_not_guessed(
    global_settings: dict, match: str
) -> None:
    """A wrong type is a clear InvalidConfig (the last good watchlist stays in use)."""
    with pytest.raises(InvalidConfig, match=match):
        parse_watchlist({"sources": [], "global_settings": global_settings})


def test_a_source_with_a_bad_schedule_is_reported_and_skipped() -> None:
    """A source's own schedule must be cron; the others still load."""
    config = parse_watchlist(
        {
            "sources": [
                {"id": "good", "handler_id": "CUSTOM_SCRAPER", "schedule": "0 6 * * 1-5"},
                {"id": "bad", "handler_id": "CUSTOM_SCRAPER", "schedule": "daily at six"},
            ]
        }
    )

    assert ["good"] == [s.id for s in config.sources]
    assert "0 6 * * 1-5" == config.sources[0].schedule
    assert [("bad", True)] == [(b.source_id, "schedule:" in b.reason) for b in config.invalid]
