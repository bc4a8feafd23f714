"""The JSON API spider's page mapping: one bad link costs its item its URL, not the page."""

from __future__ import annotations

import json

from atlasreg_cursor.adapters.local.spider_runner.spiders import api_page, join_url

PAGE_URL = "https://cvm.example/api/avisos?page=1"
FIELDS = {"title": "titulo", "url": "link"}


def test_an_unjoinable_item_url_is_dropped_and_the_page_kept() -> None:
    """``//[[]a`` is no URL (urljoin raises): that item keeps its title, the others their URLs."""
    body = json.dumps(
        {
            "data": {
                "items": [
                    {"titulo": "Aviso 1", "link": "//[[]a"},
                    {"titulo": "Aviso 2", "link": "/avisos/2"},
                ],
                "next": "http://[::1",
            }
        }
    ).encode()

    items, link = api_page(
        body, PAGE_URL, items_path="data.items", fields=FIELDS, next_path="data.next"
    )

    assert [
        {"title": "Aviso 1"},
        {"title": "Aviso 2", "url": "https://cvm.example/avisos/2"},
    ] == items
    assert link is None  # an unjoinable next link ends the paging


def test_join_url_joins_or_says_none() -> None:
    """Relative links join; links urllib cannot parse are ``None``."""
    assert "https://cvm.example/x" == join_url(PAGE_URL, "/x")
    assert join_url(PAGE_URL, "//[[]a") is None
