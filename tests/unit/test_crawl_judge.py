"""Judging crawl outcomes from their stats, and mapping items to Documents."""

from __future__ import annotations

from typing import Any

import pytest

from atlasreg_cursor.adapters.core.scrapy import CrawlOutcome, items_to_documents, judge
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.sources import SourceConfig

FINISHED = {"finish_reason": "finished"}
ITEM = {"title": "Multa", "url": "https://example.com/a"}


def outcome(**fields: Any) -> CrawlOutcome:
    """A finished outcome with *fields* changed."""
    base: dict[str, Any] = {"stats": dict(FINISHED), "returncode": 0, "timeout_seconds": 30.0}
    base.update(fields)
    return CrawlOutcome(**base)


@pytest.mark.parametrize(
    ("crawl", "error_type", "in_message"),
    [
        (outcome(timed_out=True, returncode=-15), "timeout", "within 30s"),
        (outcome(runner_error="spider 'x' not found"), "spider_error", "spider 'x' not found"),
        (
            outcome(stats={}, returncode=1, stderr_tail="Traceback\nImportError: boom\n"),
            "spider_error",
            "ImportError: boom",
        ),
        (outcome(stats={"finish_reason": "shutdown"}), "spider_error", "'shutdown'"),
        (
            outcome(stats={"finish_reason": "closespider_timeout"}),
            "spider_error",
            "closespider_timeout",
        ),
        (
            outcome(
                stats={**FINISHED, "downloader/response_status_count/503": 2},
                http_errors=("HTTP 503 from https://example.com/",),
            ),
            "http_error",
            "HTTP 503 from https://example.com/",
        ),
        (
            outcome(stats={**FINISHED, "downloader/response_status_count/404": 1}),
            "http_error",
            "HTTP 404 x1",
        ),
        (
            outcome(
                stats={
                    **FINISHED,
                    "downloader/exception_type_count/twisted.internet.error.TimeoutError": 2,
                }
            ),
            "timeout",
            "TimeoutError x2",
        ),
        (
            outcome(
                stats={
                    **FINISHED,
                    "downloader/exception_type_count/twisted.internet.error.DNSLookupError": 1,
                }
            ),
            "network_error",
            "DNSLookupError",
        ),
        (
            outcome(stats={**FINISHED, "atlasreg/forbidden_address": "host 'x' is private"}),
            "forbidden_address",
            "host 'x' is private",
        ),
        (
            outcome(
                stats={**FINISHED, "spider_exceptions/KeyError": 1, "log_count/ERROR": 1},
                errors=("KeyError: 'title'",),
            ),
            "spider_error",
            "KeyError: 'title'",
        ),
        (
            outcome(stats={**FINISHED, "log_count/ERROR": 3}),
            "spider_error",
            "3 errors logged",
        ),
        (
            outcome(stats={**FINISHED, "robotstxt/forbidden": 2}),
            "robots_disallowed",
            "robots.txt disallowed 2 of the spider's requests",
        ),
    ],
)
def test_failed_crawls(crawl: CrawlOutcome, error_type: str, in_message: str) -> None:
    """Each kind of failure maps to its error_type with a telling message."""
    with pytest.raises(SourceFailed) as info:
        judge(crawl, "fonte")

    assert error_type == info.value.error_type
    assert in_message in str(info.value)


@pytest.mark.parametrize(
    "crawl",
    [
        outcome(items=(ITEM,)),
        outcome(
            items=(ITEM,),
            stats={**FINISHED, "downloader/response_status_count/500": 1, "log_count/ERROR": 1},
            http_errors=("HTTP 500 from https://example.com/2",),
        ),
        outcome(items=(ITEM,), stats={"finish_reason": "closespider_itemcount"}),
    ],
)
def test_items_win_over_partial_errors(crawl: CrawlOutcome) -> None:
    """A crawl that yielded items succeeded, even if some requests failed."""
    assert [ITEM] == judge(crawl, "fonte")


def test_empty_crawl_without_errors_is_empty_success() -> None:
    """No items and no error: an empty result, not a failure."""
    assert [] == judge(outcome(), "fonte")


def test_items_to_documents_maps_fields_and_ids() -> None:
    """Ids come from document_id/id or a stable URL hash; duplicates are dropped."""
    source = SourceConfig(id="cvm", handler_id="SCRAPY_CVM_API", player_id="cvm")
    items = [
        {
            "id": 42,
            "titulo": "  Aviso \n ao mercado ",
            "link": "https://e.com/42",
            "data": "2026-11-20",
        },
        {"document_id": "doc-1", "title": "T", "url": "https://e.com/1", "player_id": "b3"},
        {"title": "Sem id", "url": "https://e.com/x", "summary": ["not", "text"]},
        {"title": "Sem id", "url": "https://e.com/x"},
        {"title": "Só título"},
        {"summary": "nothing to identify"},
    ]

    documents = items_to_documents(items, source)
    again = items_to_documents(items, source)

    assert documents == again
    assert ["42", "doc-1"] == [d.document_id for d in documents[:2]]
    assert "Aviso ao mercado" == documents[0].title
    assert "2026-11-20" == documents[0].date
    assert "cvm" == documents[0].player_id
    assert "b3" == documents[1].player_id
    assert 4 == len(documents)
    assert 32 == len(documents[2].document_id)
    assert "" == documents[2].summary
    assert documents[3].url is None
    assert {"cvm"} == {d.source_id for d in documents}
