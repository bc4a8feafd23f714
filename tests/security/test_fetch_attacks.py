"""A hostile watchlist and hostile sites against the real CSV download path.

Every test runs ``LocalExecutor.run_source`` (the code a ``DOWNLOAD_CSV``
source runs) with ``ALLOW_PRIVATE_SOURCES`` unset; the session's internal
server must receive no connection at all (checked after each test). The
downloads take their per-host turns from one crawl process for the module;
robots.txt is off (the tests count every request) except where it is the
subject.
"""

from __future__ import annotations

import datetime as dt
import gzip
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlasreg_cursor.adapters.core.crawl_process import CrawlPolicy, CrawlSessions
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig, parse_watchlist
from tests.security.netlab import (
    FakeInternet,
    RecordingServer,
    csv_route,
    drip_route,
    raw_route,
    redirect_route,
    send,
)

pytestmark = pytest.mark.security

CSV = b"title,url,date\nMulta aplicada,/a,2026-11-24\nLeilao marcado,/b,2026-11-24\n"
SENTINEL = "LEAKED-CONTENT-7f3a"
RUN = RunContext(
    run_id="run_5ec5ec5ec5ec",
    date=dt.date(2026, 11, 24),
    message_type=MessageType.START_DAILY_INGEST,
    identity=uuid.uuid4().hex,
)


def source(url: str, **extra: Any) -> SourceConfig:
    """A DOWNLOAD_CSV source built directly (so even URLs the watchlist refuses get here)."""
    return SourceConfig(id="hostile", handler_id="DOWNLOAD_CSV", url_feed=url, **extra)


@pytest.fixture
def site(net: FakeInternet) -> Iterator[RecordingServer]:
    """``news.test``: a public site with a good CSV (plus per-test routes)."""
    server = RecordingServer({"/ok.csv": csv_route(CSV)})
    net.add("news.test", server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def crawls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrawlSessions]:
    """One crawl process for the module's run: it grants the downloads' per-host turns."""
    sessions = CrawlSessions(work_dir=tmp_path_factory.mktemp("crawls"))
    yield sessions
    sessions.close()


def local(net: FakeInternet, tmp_path: Path, crawls: CrawlSessions, **extra: Any) -> LocalExecutor:
    """A local executor with the guarded client on the fake network, robots.txt off."""
    return LocalExecutor(
        work_dir=tmp_path,
        http=net.client(),
        crawls=crawls,
        policy=CrawlPolicy(obey_robots=False),
        **extra,
    )


@pytest.fixture
def executor(net: FakeInternet, tmp_path: Path, crawls: CrawlSessions) -> LocalExecutor:
    """The local executor with the guarded client on the fake network."""
    return local(net, tmp_path, crawls)


def refused(executor: LocalExecutor, src: SourceConfig) -> SourceFailed:
    """Run *src* and return the SourceFailed it must raise."""
    with pytest.raises(SourceFailed) as info:
        executor.run_source(src, RUN)
    return info.value


def test_a_public_csv_downloads(executor: LocalExecutor, site: RecordingServer) -> None:
    """The legitimate path works: the Host header names the site, not its address."""
    result = executor.run_source(source("http://news.test/ok.csv"), RUN)

    assert 2 == result.items_count
    assert "http://news.test/a" == result.documents[0].url
    assert "news.test" == site.requests[0].headers["Host"]


def test_an_at_sign_in_the_query_or_fragment_is_not_user_info(
    executor: LocalExecutor, site: RecordingServer
) -> None:
    """``?x=a@b`` and ``#a@b`` are a valid query and fragment: only the authority is checked."""
    for url in ("http://news.test/ok.csv?x=a@b", "http://news.test/ok.csv#a@b"):
        assert 2 == executor.run_source(source(url), RUN).items_count

    assert ["/ok.csv?x=a@b", "/ok.csv"] == [r.path for r in site.requests]


def test_the_guarded_client_ignores_proxy_variables(
    executor: LocalExecutor,
    site: RecordingServer,
    internal: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy resolves names itself: the download connects to the vetted address instead."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, internal.url)
    monkeypatch.setenv("NO_PROXY", "")

    result = executor.run_source(source("http://news.test/ok.csv"), RUN)

    assert 2 == result.items_count
    assert ["/ok.csv"] == [r.path for r in site.requests]


def test_backslash_host_never_reaches_the_internal_server(
    executor: LocalExecutor, internal: RecordingServer
) -> None:
    """``http://127.0.0.1:PORT\\@8.8.8.8/`` is refused: urllib3 would connect to 127.0.0.1."""
    url = f"http://127.0.0.1:{internal.port}\\@8.8.8.8/../ocorrencias.csv"

    error = refused(executor, source(url))

    watchlist = parse_watchlist(
        {"sources": [{"id": "x", "handler_id": "DOWNLOAD_CSV", "url_feed": url}]}
    )
    assert "invalid_url" == error.error_type
    assert "url_feed" in watchlist.invalid[0].reason


@pytest.mark.parametrize(
    "template",
    [
        "http://user:PASSWORD@127.0.0.1:{port}/x.csv",
        "http://user:PASSWORD@news.test/ok.csv",
        "http://news.test@127.0.0.1:{port}/x.csv",
        "http://127.0.0.1:{port}#@news.test/ok.csv",
        "http://127.0.0.1:{port}\t/x.csv",
        "http://127.0.0.1:{port}/x.csv\r\nHost: news.test",
        "http://[::ffff:127.0.0.1]:{port}/x.csv",
        "http://2130706433:{port}/x.csv",
        "http://0x7f.1:{port}/x.csv",
        "http://localhost:{port}/x.csv",
        "http://127.1:{port}/x.csv",
        "http://[::1]:{port}/x.csv",
        "http://[2002:7f00:1::1]:{port}/x.csv",
        "http://[2001:0:5db8:d70e::80ff:fffe]:{port}/x.csv",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_GET",
    ],
)
def test_tricky_urls_are_refused(
    executor: LocalExecutor, internal: RecordingServer, site: RecordingServer, template: str
) -> None:
    """User-info, control characters, odd IP spellings and other schemes are all refused."""
    error = refused(executor, source(template.format(port=internal.port)))

    assert error.error_type in {"invalid_url", "forbidden_address"}
    assert "PASSWORD" not in str(error)
    assert [] == site.requests


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{port}/latest/meta-data/",
        "http://127.0.0.1:{port}\\@news.test/ok.csv",
        "http://localhost:{port}/",
        "file:///etc/passwd",
        "//127.0.0.1:{port}/",
    ],
)
def test_redirects_into_the_internal_network_are_refused(
    executor: LocalExecutor, internal: RecordingServer, site: RecordingServer, location: str
) -> None:
    """Every redirect hop passes the guard again."""
    site.routes["/go.csv"] = redirect_route(location.format(port=internal.port))

    error = refused(executor, source("http://news.test/go.csv"))

    assert error.error_type in {"invalid_url", "forbidden_address"}
    assert ["/go.csv"] == [r.path for r in site.requests]


def test_dns_rebinding_uses_the_first_answer_only(
    net: FakeInternet, executor: LocalExecutor, site: RecordingServer
) -> None:
    """The name is resolved once; a second, internal answer is never asked for or used."""
    public = net.address_of("news.test")
    net.answer("news.test", [public], ["127.0.0.1"])

    result = executor.run_source(source("http://news.test/ok.csv"), RUN)

    assert 2 == result.items_count
    assert ["news.test"] == net.lookups
    assert [(public, 80)] == net.dialled


def test_rebinding_on_a_redirect_to_the_same_host_is_refused(
    net: FakeInternet, executor: LocalExecutor, site: RecordingServer
) -> None:
    """The hop after a redirect is resolved and vetted again: the internal answer is refused."""
    public = net.address_of("news.test")
    net.answer("news.test", [public], ["127.0.0.1"])
    site.routes["/go.csv"] = redirect_route("/ok.csv")

    error = refused(executor, source("http://news.test/go.csv"))

    assert "forbidden_address" == error.error_type
    assert ["/go.csv"] == [r.path for r in site.requests]


def test_a_name_with_one_private_answer_among_public_ones_is_refused(
    net: FakeInternet, executor: LocalExecutor, site: RecordingServer
) -> None:
    """Every address a name resolves to must be public, not just the first."""
    net.answer("news.test", [net.address_of("news.test"), "10.0.0.7"])

    error = refused(executor, source("http://news.test/ok.csv"))

    assert "forbidden_address" == error.error_type
    assert [] == site.requests


@pytest.mark.parametrize("headers_too", [False, True])
def test_slow_drip_is_cut_at_the_deadline(
    executor: LocalExecutor, site: RecordingServer, headers_too: bool
) -> None:
    """A server dripping a byte every 0.2 s cannot hold a 2 s download past 2 s (+2 s grace)."""
    site.routes["/drip.csv"] = drip_route(0.2, headers_too=headers_too)

    started = time.monotonic()
    error = refused(executor, source("http://news.test/drip.csv", timeout_seconds=2.0))
    elapsed = time.monotonic() - started

    assert "timeout" == error.error_type
    assert elapsed < 2.0 + 2.0


def test_a_huge_csv_stops_at_max_items(executor: LocalExecutor, site: RecordingServer) -> None:
    """A CSV of 60,000 rows is refused at the default 50,000, before making documents."""
    rows = b"".join(b"t%d,/%d\n" % (i, i) for i in range(60_000))
    site.routes["/huge.csv"] = csv_route(b"title,url\n" + rows)

    error = refused(executor, source("http://news.test/huge.csv"))

    assert "too_many_items" == error.error_type
    assert "50000" in str(error)


def test_max_items_is_a_per_source_override(executor: LocalExecutor, site: RecordingServer) -> None:
    """A watchlist's ``max_items`` applies to that source."""
    (src,) = parse_watchlist(
        {
            "sources": [
                {
                    "id": "small",
                    "handler_id": "DOWNLOAD_CSV",
                    "url_feed": "http://news.test/ok.csv",
                    "max_items": 1,
                }
            ]
        }
    ).sources

    error = refused(executor, src)

    assert "too_many_items" == error.error_type


@pytest.mark.parametrize("length", ["12abc", "-1", "1, 2", " +5", "99999999999999999999", "0x10"])
def test_garbage_content_length_is_refused(
    executor: LocalExecutor, site: RecordingServer, length: str
) -> None:
    """A Content-Length that is not plain digits fails with invalid_response."""
    site.routes["/bad.csv"] = lambda h, _q: send(h, 200, CSV, length=length)

    error = refused(executor, source("http://news.test/bad.csv"))

    assert "invalid_response" == error.error_type


def test_declared_length_over_the_cap_is_refused_unread(
    tmp_path: Path, net: FakeInternet, crawls: CrawlSessions
) -> None:
    """A Content-Length over the cap fails at once with too_large."""
    server = RecordingServer(
        {"/big.csv": raw_route(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\nx")}
    )
    net.add("big.test", server)
    try:
        error = refused(
            local(net, tmp_path, crawls, max_download_bytes=1000),
            source("http://big.test/big.csv"),
        )
    finally:
        server.stop()

    assert "too_large" == error.error_type


def test_a_gzip_bomb_is_cut_at_the_cap(
    tmp_path: Path, net: FakeInternet, crawls: CrawlSessions
) -> None:
    """A small compressed body that inflates past the cap fails with too_large."""
    bomb = gzip.compress(b"title,url\n" + b"a" * 5_000_000)
    server = RecordingServer(
        {"/bomb.csv": lambda h, _q: send(h, 200, bomb, {"Content-Encoding": "gzip"})}
    )
    net.add("bomb.test", server)
    try:
        error = refused(
            local(net, tmp_path, crawls, max_download_bytes=100_000),
            source("http://bomb.test/bomb.csv"),
        )
    finally:
        server.stop()

    assert len(bomb) < 100_000
    assert "too_large" == error.error_type


def test_a_gzip_csv_within_the_cap_downloads(
    executor: LocalExecutor, site: RecordingServer
) -> None:
    """Compressed answers are fine when they fit."""
    packed = gzip.compress(CSV)
    site.routes["/z.csv"] = lambda h, _q: send(h, 200, packed, {"Content-Encoding": "gzip"})

    assert 2 == executor.run_source(source("http://news.test/z.csv"), RUN).items_count


@pytest.mark.parametrize(
    ("body", "options"),
    [
        (f"{SENTINEL},other\nx,y\n".encode(), {"fields": {"title": "titulo"}}),
        (f"title\n{SENTINEL}\xff".encode("latin-1"), {}),
        (f'title\n"{SENTINEL}'.encode() + b"A" * 200_000 + b'"\n', {}),
    ],
)
def test_parse_errors_never_echo_the_response(
    executor: LocalExecutor, site: RecordingServer, body: bytes, options: dict[str, Any]
) -> None:
    """A CSV parse_error names the column or position, never the content."""
    site.routes["/x.csv"] = csv_route(body)

    error = refused(executor, source("http://news.test/x.csv", csv=options))

    assert "parse_error" == error.error_type
    assert SENTINEL not in str(error)


def test_http_status_errors_do_not_echo_the_body(
    executor: LocalExecutor, site: RecordingServer
) -> None:
    """A 403 with a body is http_error naming the status, not the body."""
    site.routes["/deny.csv"] = lambda h, _q: send(h, 403, SENTINEL.encode())

    error = refused(executor, source("http://news.test/deny.csv?api_key=KEY-SENTINEL"))

    assert "http_error" == error.error_type
    assert "HTTP 403" in str(error)
    assert SENTINEL not in str(error)
    assert "KEY-SENTINEL" not in str(error)


def test_a_malformed_status_line_is_invalid_response(
    executor: LocalExecutor, site: RecordingServer
) -> None:
    """Garbage instead of HTTP is a typed error, not a crash."""
    site.routes["/junk.csv"] = raw_route(b"SSH-2.0-OpenSSH_9\r\n\r\n")

    error = refused(executor, source("http://news.test/junk.csv"))

    assert error.error_type in {"invalid_response", "network_error"}


def test_file_scheme_is_refused_even_when_private_is_allowed(tmp_path: Path) -> None:
    """``ALLOW_PRIVATE_SOURCES`` lifts only the address check, never the scheme check."""
    secret = tmp_path / "secret.csv"
    secret.write_text(f"title\n{SENTINEL}\n")
    executor = LocalExecutor(work_dir=tmp_path, allow_private_sources=True)

    error = refused(executor, source(secret.as_uri()))

    assert "invalid_url" == error.error_type


def test_robots_txt_is_read_through_the_guard(
    net: FakeInternet,
    site: RecordingServer,
    internal: RecordingServer,
    tmp_path: Path,
    crawls: CrawlSessions,
) -> None:
    """With robots.txt obeyed, its fetch is a guarded fetch too: a robots.txt redirecting
    into the internal network is refused (and then allows everything); one that disallows
    the CSV stops the download."""
    site.routes["/robots.txt"] = redirect_route(f"http://127.0.0.1:{internal.port}/robots.txt")
    obeying = LocalExecutor(work_dir=tmp_path, http=net.client(), crawls=crawls)

    result = obeying.run_source(source("http://news.test/ok.csv"), RUN)
    obeying.close_run(RUN)
    site.routes["/robots.txt"] = csv_route(b"User-agent: *\nDisallow: /ok.csv\n")
    error = refused(obeying, source("http://news.test/ok.csv"))

    assert 2 == result.items_count
    assert "robots_disallowed" == error.error_type
    assert ["/robots.txt", "/ok.csv", "/robots.txt"] == [r.path for r in site.requests]


def test_redirect_loops_end(executor: LocalExecutor, site: RecordingServer) -> None:
    """A redirect loop stops after five hops with http_error."""
    site.routes["/loop.csv"] = redirect_route("/loop.csv")

    error = refused(executor, source("http://news.test/loop.csv"))

    assert "http_error" == error.error_type
    assert 6 == len(site.requests)
