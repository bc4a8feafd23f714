"""The bundled sample site: routes, content, and the demo watchlist over it."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from atlasreg_cursor.domain.sources import parse_watchlist
from atlasreg_cursor.sample_site import (
    DEMO_SOURCE_IDS,
    SampleSite,
    demo_watchlist,
    expected_demo_outcome,
    start_sample_site,
)


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    """The sample site on a free loopback port."""
    with start_sample_site() as running:
        yield running


def get(url: str, timeout: float = 5) -> tuple[int, bytes, str]:
    """GET *url*; return status, body and content type (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_base_url_is_loopback(site: SampleSite) -> None:
    """The site binds 127.0.0.1 on a free port."""
    assert site.base_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(("page", "articles"), [("", 4), ("?page=2", 4), ("?page=3", 3)])
def test_newsroom_pages(site: SampleSite, page: str, articles: int) -> None:
    """Three listing pages of articles, each but the last linking to the next."""
    status, body, kind = get(f"{site.base_url}/noticias/{page}")
    html = body.decode("utf-8")

    assert 200 == status
    assert kind.startswith("text/html")
    assert articles == html.count("<article>")
    assert (page != "?page=3") == ('class="next"' in html)


def test_api_and_csv(site: SampleSite) -> None:
    """The JSON API and the CSV have the documented shapes."""
    _, api, kind = get(f"{site.base_url}/api/avisos")
    _, raw_csv, _ = get(f"{site.base_url}/dados/ocorrencias.csv")
    rows = list(csv.DictReader(io.StringIO(raw_csv.decode("utf-8")), delimiter=";"))

    assert kind.startswith("application/json")
    assert 5 == len(json.loads(api)["data"]["items"])
    assert {"titulo", "link", "data", "resumo", "id"} == set(json.loads(api)["data"]["items"][0])
    assert 4 == len(rows)
    assert ["descricao", "link", "data"] == list(rows[0])


@pytest.mark.parametrize(
    ("path", "status"), [("/broken", 500), ("/nada", 404), ("/noticias/?page=9", 404)]
)
def test_error_routes(site: SampleSite, path: str, status: int) -> None:
    """/broken answers 500; unknown paths and pages 404."""
    assert status == get(site.base_url + path)[0]


def test_slow_route_waits(site: SampleSite) -> None:
    """/slow answers only after the seconds asked for."""
    started = time.monotonic()

    status, _, _ = get(f"{site.base_url}/slow?seconds=0.3")

    assert 200 == status
    assert time.monotonic() - started >= 0.3


def test_stop_is_idempotent_and_frees_the_port() -> None:
    """After stop() the site no longer answers; a second stop is harmless."""
    running = start_sample_site()
    url = running.base_url

    running.stop()
    running.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_demo_watchlist_is_valid_and_covers_every_case() -> None:
    """The demo watchlist parses cleanly with one source per case."""
    config = parse_watchlist(demo_watchlist("http://127.0.0.1:8000"))
    handlers = {s.id: (s.handler_id, s.enabled) for s in config.sources}

    assert () == config.invalid
    assert set(DEMO_SOURCE_IDS) == set(handlers)
    assert ("AIRFLOW_DAG", True) == handlers["sigel_daily"]
    assert not handlers["portal_arquivo"][1]
    assert {"SCRAPY_NEWSROOM_PLAYER", "SCRAPY_CVM_API", "DOWNLOAD_CSV", "AIRFLOW_DAG"} == {
        h for h, _ in handlers.values()
    }


def test_expected_outcome_adds_up() -> None:
    """The stated totals agree with the per-source expectations."""
    expected = expected_demo_outcome()
    ok = [s for s in expected.sources.values() if s.error_type is None]

    assert expected.documents_count == sum(s.documents for s in ok)
    assert expected.events_count == sum(expected.events_by_type().values())
    assert 1 == expected.errors_count
    assert "partial" == expected.status
