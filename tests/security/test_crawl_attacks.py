"""A hostile watchlist and hostile sites against the real crawl process (Scrapy sources).

Every test drives the crawl process (``CrawlSessions``, the code the
newsroom, API and project sources run) with ``ALLOW_PRIVATE_SOURCES`` unset
unless it says otherwise. Fake public names reach loopback test sites
through the process's stub network (``netlab.FakeInternet.stub_network``);
a loopback address the guard let through would be dialled as is, so the
internal server — which must get no connection at all, checked after each
test — sees any hole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlasreg_cursor.adapters.core.crawl_process import CrawlOutcome, CrawlPolicy, CrawlSessions
from atlasreg_cursor.adapters.core.scrapy import judge, run_project_spider
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import parse_watchlist
from tests.security.netlab import FakeInternet, RecordingServer, Route, redirect_route, send

pytestmark = [pytest.mark.security, pytest.mark.scrapy]

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"
POLICY = CrawlPolicy(obey_robots=False, retry_times=0)
API = {"items_path": "data.items", "next_path": "data.next"}
RUN = RunContext(
    run_id="run_c2a71c2a71c2",
    date=dt.date(2026, 11, 24),
    message_type=MessageType.START_DAILY_INGEST,
    identity=uuid.uuid4().hex,
)
REFUSED = {"invalid_url", "forbidden_address"}


def json_page(*titles: str, next_url: str | None = None) -> Route:
    """An API page of ``data.items`` (and ``data.next``)."""
    data: dict[str, Any] = {"items": [{"title": t, "url": f"/doc/{t}"} for t in titles]}
    if next_url is not None:
        data["next"] = next_url
    body = json.dumps({"data": data}).encode()
    return lambda h, _q: send(h, 200, body, {"Content-Type": "application/json"})


def api_spec(url: str, **extra: Any) -> dict[str, Any]:
    """A generic API crawl spec."""
    return {"kind": "api", "url": url, "api": API, "download_timeout": 10, **extra}


@contextlib.contextmanager
def crawl_sessions(net: FakeInternet, tmp_path: Path, **kwargs: Any) -> Iterator[CrawlSessions]:
    """A ``CrawlSessions`` on *net* as it is now (its names and sites are copied at start)."""
    sessions = CrawlSessions(
        work_dir=tmp_path / "crawls", policy=POLICY, stub_network=net.stub_network(), **kwargs
    )
    try:
        yield sessions
    finally:
        sessions.close()


def refusal(outcome: CrawlOutcome) -> SourceFailed:
    """The SourceFailed ``judge`` must raise for *outcome*."""
    with pytest.raises(SourceFailed) as info:
        judge(outcome, "hostile")
    return info.value


@pytest.fixture
def site(net: FakeInternet) -> Iterator[RecordingServer]:
    """``news.test``: a public site (routes per test)."""
    server = RecordingServer({"/ok": json_page("a", "b")})
    net.add("news.test", server)
    yield server
    server.stop()


def test_redirects_into_the_internal_network_are_refused(
    net: FakeInternet, site: RecordingServer, internal: RecordingServer, tmp_path: Path
) -> None:
    """Every redirect hop passes the guard in the crawl process too."""
    port = internal.port
    net.answer("internal.test", ["127.0.0.1"])
    locations = [
        f"http://127.0.0.1:{port}/latest/meta-data/",
        f"http://localhost:{port}/",
        f"http://internal.test:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.0.0.1:{port}\\@news.test/ok",
    ]
    for n, location in enumerate(locations):
        site.routes[f"/go{n}"] = redirect_route(location)

    with crawl_sessions(net, tmp_path) as crawls:
        control = judge(
            crawls.crawl(RUN.run_id, "ok", api_spec("http://news.test/ok"), timeout=20), "ok"
        )
        errors = [
            refusal(
                crawls.crawl(RUN.run_id, f"r{n}", api_spec(f"http://news.test/go{n}"), timeout=20)
            )
            for n in range(len(locations))
        ]

    assert ["a", "b"] == [i["title"] for i in control]
    assert "news.test" == site.requests[0].headers["Host"]
    assert all(e.error_type in REFUSED for e in errors), [str(e) for e in errors]


def test_pagination_to_a_backslash_url_or_another_scheme_is_refused(
    net: FakeInternet, site: RecordingServer, internal: RecordingServer, tmp_path: Path
) -> None:
    """
    A next link with a backslash, or to file:// or gopher://, fails the source
    clearly. Scrapy reads a backslash as a slash (as browsers do) before the
    guard sees the URL, so ``news.test\\@127.0.0.1`` is a path on news.test.
    """
    port = internal.port
    links = [
        f"http://127.0.0.1:{port}\\@news.test/p2",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_GET",
        f"http://news.test\\@127.0.0.1:{port}/p2",
    ]
    for n, link in enumerate(links):
        site.routes[f"/p{n}"] = json_page(next_url=link)

    with crawl_sessions(net, tmp_path) as crawls:
        errors = [
            refusal(
                crawls.crawl(RUN.run_id, f"p{n}", api_spec(f"http://news.test/p{n}"), timeout=20)
            )
            for n in range(len(links))
        ]

    assert all(e.error_type in REFUSED for e in errors[:3]), [str(e) for e in errors]
    assert "only http and https" in str(errors[1])
    assert "http_error" == errors[3].error_type
    assert f"/@127.0.0.1:{port}/p2" == site.requests[-1].path


def test_dns_rebinding_between_vetting_and_the_next_request_is_refused(
    net: FakeInternet, site: RecordingServer, internal: RecordingServer, tmp_path: Path
) -> None:
    """
    A name that answers public when vetted, then loopback: the connection goes to
    the vetted address (the URL's port is the internal server's), the next page's
    new answer is refused.
    """
    public = net.add("rebind.test", site)
    net.answer("rebind.test", [public], ["127.0.0.1"])
    site.routes["/p1"] = json_page(next_url="/p2")

    with crawl_sessions(net, tmp_path) as crawls:
        outcome = crawls.crawl(
            RUN.run_id, "rebind", api_spec(f"http://rebind.test:{internal.port}/p1"), timeout=20
        )

    error = refusal(outcome)
    assert "forbidden_address" == error.error_type
    assert "127.0.0.1" in str(error)
    assert ["/p1"] == [r.path for r in site.requests]
    assert f"rebind.test:{internal.port}" == site.requests[0].headers["Host"]


def test_json_pages_are_parsed_strictly(
    net: FakeInternet, site: RecordingServer, tmp_path: Path
) -> None:
    """The API spider refuses NaN, Infinity, overflowing numbers and deep nesting."""
    bodies = [
        b'{"data": {"items": [{"title": NaN}]}}',
        b'{"data": {"items": [{"title": "x", "n": 1e400}]}}',
        b'{"data": {"items": [{"title": -Infinity}]}}',
        b'{"data": {"items": [{"title": "deep", "x": ' + b"[" * 100 + b"]" * 100 + b"}]}}",
    ]
    for n, body in enumerate(bodies):
        site.routes[f"/j{n}"] = lambda h, _q, b=body: send(h, 200, b)

    with crawl_sessions(net, tmp_path) as crawls:
        errors = [
            refusal(
                crawls.crawl(RUN.run_id, f"j{n}", api_spec(f"http://news.test/j{n}"), timeout=20)
            )
            for n in range(len(bodies))
        ]

    assert all("spider_error" == e.error_type for e in errors)
    assert all("not valid JSON" in str(e) or "nested more than" in str(e) for e in errors), [
        str(e) for e in errors
    ]


def test_max_items_stops_each_scrapy_source(
    net: FakeInternet, site: RecordingServer, tmp_path: Path
) -> None:
    """
    A source's max_items (5) stops an API source and a project spider of 20
    items, and a source whose first page fills the cap exactly still reads the
    next page, whose one item is one too many.
    """
    titles = [f"t{n:02d}" for n in range(20)]
    articles = "".join(f"<article><h2><a href='/n/{t}'>{t}</a></h2></article>" for t in titles)
    site.routes["/api"] = json_page(*titles)
    site.routes["/five"] = json_page(*titles[:5], next_url="/one-more")
    site.routes["/one-more"] = json_page("t99")
    site.routes["/noticias/"] = lambda h, _q: send(
        h, 200, articles.encode(), {"Content-Type": "text/html"}
    )
    feed = {"url_feed": "http://news.test/api", "api": API}
    news = {"url_feed": "http://news.test/noticias/", "spider_id": "sample_news"}
    watchlist = parse_watchlist(
        {
            "sources": [
                {"id": "api", "handler_id": "SCRAPY_CVM_API", "max_items": 5, **feed},
                {"id": "proj", "handler_id": "SCRAPY_NEWSROOM_PLAYER", "max_items": 5, **news},
                {
                    "id": "paged",
                    "handler_id": "SCRAPY_CVM_API",
                    "max_items": 5,
                    "url_feed": "http://news.test/five",
                    "api": API,
                },
                {"id": "api-all", "handler_id": "SCRAPY_CVM_API", "max_items": 20, **feed},
            ]
        }
    )

    with crawl_sessions(net, tmp_path, project_path=PROJECT) as crawls:
        executor = LocalExecutor(
            work_dir=tmp_path, scrapy_project_path=PROJECT, http=net.client(), crawls=crawls
        )
        capped = []
        for source in watchlist.sources[:3]:
            with pytest.raises(SourceFailed) as info:
                executor.run_source(source, RUN)
            capped.append(info.value)
        whole = executor.run_source(watchlist.sources[3], RUN)

    assert ["too_many_items"] * 3 == [e.error_type for e in capped]
    assert all("more than 5 items" in str(e) for e in capped)
    assert 20 == whole.items_count


def test_file_pagination_is_refused_even_with_private_sources_allowed(
    net: FakeInternet, site: RecordingServer, tmp_path: Path
) -> None:
    """A next link to file:// is never read: http and https only, always."""
    secret = tmp_path / "segredo.json"
    secret.write_text(json.dumps({"data": {"items": [{"title": "CONTEUDO-DO-ARQUIVO"}]}}))
    site.routes["/api"] = json_page("pagina-1", next_url=secret.as_uri())

    with crawl_sessions(net, tmp_path, allow_private=True) as crawls:
        outcome = crawls.crawl(RUN.run_id, "file", api_spec("http://news.test/api"), timeout=20)

    items = judge(outcome, "file")
    assert ["pagina-1"] == [i["title"] for i in items]
    assert "CONTEUDO-DO-ARQUIVO" not in json.dumps(items)
    assert any("only http and https" in e for e in outcome.errors)


def test_crawl_process_gets_an_allow_listed_environment_without_proxies(
    net: FakeInternet,
    site: RecordingServer,
    internal: RecordingServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    Secrets of the Cursor never reach the crawl process, nor do proxy variables
    (a proxy resolves names itself); CRAWL_ENV_ALLOW names pass.
    """
    sentinels = {
        "HOOK_HMAC_SECRET": "sentinel-hook",
        "CF_API_TOKEN": "sentinel-cf",
        "R2_SECRET_KEY": "sentinel-r2",
        "MINIO_SECRET_KEY": "sentinel-minio",
        "DATABASE_URL": "postgresql://u:sentinel-db@h/db",
        "AIRFLOW_PASSWORD": "sentinel-airflow",
    }
    proxy = f"http://127.0.0.1:{internal.port}"
    proxies = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"]
    for name, value in {**sentinels, **dict.fromkeys(proxies, proxy)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("ATLASREG_TEST_PASSED", "yes")

    with crawl_sessions(net, tmp_path, env_allow=["ATLASREG_TEST_PASSED", "HTTP_PROXY"]) as crawls:
        items = judge(
            crawls.crawl(RUN.run_id, "env", api_spec("http://news.test/ok"), timeout=20), "env"
        )
        pid = crawls.running()[RUN.run_id]
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")

    assert ["a", "b"] == [i["title"] for i in items]
    assert not [v for v in sentinels.values() if any(v in e for e in environ)]
    assert not [e for e in environ if e.split("=", 1)[0].upper().endswith("_PROXY")]
    assert "ATLASREG_TEST_PASSED=yes" in environ


def test_project_spider_runs_with_the_guard(internal: RecordingServer, tmp_path: Path) -> None:
    """Project spiders are guarded too: a private address is refused by default."""
    outcome = run_project_spider(
        PROJECT,
        "sample_news",
        {"url": f"{internal.url}/noticias/", "run_id": RUN.run_id},
        timeout=30,
        work_dir=tmp_path,
        allow_private=False,
    )

    error = refusal(outcome)
    assert "forbidden_address" == error.error_type
    assert "127.0.0.1" in str(error)


def test_the_stub_network_cannot_come_from_a_watchlist(
    net: FakeInternet, site: RecordingServer, tmp_path: Path
) -> None:
    """
    The seam lives in the crawl process's own config: a watchlist naming it (at
    the top of a source or inside its api block) changes nothing. The stub would
    answer ``localhost`` with a public address; without it the crawl process
    resolves ``localhost`` to 127.0.0.1 and refuses it.
    """
    net.add("localhost", site)
    stub = net.stub_network()
    (source,) = parse_watchlist(
        {
            "sources": [
                {
                    "id": "sneaky",
                    "handler_id": "SCRAPY_CVM_API",
                    "url_feed": "http://localhost/ok",
                    "api": {**API, "stub_network": stub},
                    "stub_network": stub,
                }
            ]
        }
    ).sources
    crawls = CrawlSessions(work_dir=tmp_path / "crawls", policy=POLICY)
    executor = LocalExecutor(work_dir=tmp_path, http=net.client(), crawls=crawls)
    try:
        with pytest.raises(SourceFailed) as info:
            executor.run_source(source, RUN)
    finally:
        executor.close()

    assert "forbidden_address" == info.value.error_type
    assert [] == site.requests
