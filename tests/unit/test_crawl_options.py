"""A source's ``crawl`` block: politeness overrides, validated with clear errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from atlasreg_cursor.domain.sources import CrawlOptions, parse_crawl_options, parse_watchlist

BASE = {"id": "aneel_news", "handler_id": "SCRAPY_CVM_API", "url_feed": "https://www.gov.br/aneel"}


def test_absent_block_means_no_overrides() -> None:
    """No ``crawl`` key (or null): the settings decide."""
    config = parse_watchlist({"sources": [BASE, {**BASE, "id": "b", "crawl": None}]})

    assert [None, None] == [s.crawl for s in config.sources]


def test_every_key_is_read() -> None:
    """All six overrides are typed into CrawlOptions."""
    block = {
        "max_per_host": 1,
        "download_delay": 2.5,
        "obey_robots": False,
        "autothrottle": True,
        "retry_times": 0,
        "user_agent": "AtlasReg (+https://example.org/bot)",
    }

    source = parse_watchlist({"sources": [{**BASE, "crawl": block}]}).sources[0]

    assert CrawlOptions(**block) == source.crawl


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ([], "crawl must be an object"),
        ({"max_per_hots": 1}, "unknown key(s) 'max_per_hots'"),
        ({"max_per_host": 0}, "crawl.max_per_host must be a whole number from 1 to 16"),
        ({"max_per_host": 17}, "crawl.max_per_host must be a whole number from 1 to 16"),
        ({"max_per_host": 1.5}, "crawl.max_per_host must be a whole number"),
        ({"max_per_host": True}, "crawl.max_per_host must be a whole number"),
        ({"download_delay": -1}, "crawl.download_delay must be a number of seconds from 0 to 60"),
        ({"download_delay": float("nan")}, "crawl.download_delay must be a number of seconds"),
        ({"download_delay": float("inf")}, "crawl.download_delay must be a number of seconds"),
        ({"download_delay": "2"}, "crawl.download_delay must be a number of seconds"),
        ({"obey_robots": "no"}, "crawl.obey_robots must be true or false"),
        ({"autothrottle": 1}, "crawl.autothrottle must be true or false"),
        ({"retry_times": 11}, "crawl.retry_times must be a whole number from 0 to 10"),
        ({"user_agent": ""}, "crawl.user_agent must be one line of printable ASCII"),
        ({"user_agent": "a\nb"}, "crawl.user_agent must be one line of printable ASCII"),
        ({"user_agent": "robô"}, "crawl.user_agent must be one line of printable ASCII"),
    ],
)
def test_bad_block_is_a_clear_error(block: Any, message: str) -> None:
    """A wrong value names its key and what is accepted."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_crawl_options(block)


def test_bad_block_rejects_only_its_source() -> None:
    """The source with a bad crawl block is reported and skipped; the others stay."""
    config = parse_watchlist(
        {"sources": [{**BASE, "crawl": {"max_per_host": 99}}, {**BASE, "id": "ok"}]}
    )

    assert ["ok"] == [s.id for s in config.sources]
    assert [("aneel_news", True)] == [
        (i.source_id, "crawl.max_per_host" in i.reason) for i in config.invalid
    ]
