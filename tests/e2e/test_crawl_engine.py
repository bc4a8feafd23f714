"""The crawl engine end to end: politeness, retries, per-host limits, isolation.

The guard and the crawl process's environment are tested in
``tests/security/test_crawl_attacks.py`` (under the zero-request check).

Every crawl runs in one real crawl process (one per run; the module's runs
share one ``CrawlSessions`` with the sample Scrapy project) against small
loopback servers made for each test (a fresh port, so robots.txt and
per-host state never leak between tests).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from atlasreg_cursor.adapters.core.crawl_process import (
    CrawlPolicy,
    CrawlSessions,
    default_user_agent,
)
from atlasreg_cursor.adapters.core.scrapy import judge
from atlasreg_cursor.domain.errors import SourceFailed
from tests.support.services import wait_until

pytestmark = pytest.mark.scrapy

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"
RUN = "run_c0ffee000001"
API = {"items_path": "data.items", "next_path": "data.next"}
Route = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class Site:
    """A loopback server answering by path with *routes*; it records what it saw."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str, float]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                site.seen.append((self.path, self.headers.get("User-Agent", ""), time.monotonic()))
                route = site.routes.get(path)
                status, headers, body = route(self) if route else (404, {}, b"")
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def hits(self, path: str) -> list[tuple[str, str, float]]:
        return [s for s in self.seen if s[0].split("?", 1)[0] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_items(*titles: str, next_url: str | None = None) -> bytes:
    """An API page of ``data.items`` (and ``data.next``)."""
    data: dict[str, Any] = {"items": [{"title": t, "url": f"/doc/{t}"} for t in titles]}
    if next_url is not None:
        data["next"] = next_url
    return json.dumps({"data": data}).encode()


@contextlib.contextmanager
def site(routes: dict[str, Route]) -> Iterator[Site]:
    running = Site(routes)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def crawls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrawlSessions]:
    """One crawl process per run of the module (fast retries, loopback allowed, the project)."""
    sessions = CrawlSessions(
        work_dir=tmp_path_factory.mktemp("crawls"),
        policy=CrawlPolicy(retry_backoff=0.2),
        project_path=PROJECT,
        allow_private=True,
        env_allow=["ATLASREG_TEST_PASSED"],
    )
    yield sessions
    sessions.close()


def api_spec(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "api", "url": url, "api": API, "download_timeout": 20, **extra}


def news_spec(url: str, **extra: Any) -> dict[str, Any]:
    """The project's ``sample_news`` spider reading the newsroom at *url*."""
    return {
        "kind": "project",
        "spider": "sample_news",
        "spider_args": {"url": url, "run_id": "run_0123456789ab"},
        "download_timeout": 20,
        **extra,
    }


ARTICLE = b"<article><h2><a href='/doc/1'>noticia</a></h2></article>"


def test_robots_disallowed_source_fails_saying_robots_txt(crawls: CrawlSessions) -> None:
    """A URL robots.txt forbids is not fetched; the source fails with an error naming robots.txt."""
    routes: dict[str, Route] = {
        "/robots.txt": lambda _: (200, {}, b"User-agent: *\nDisallow: /privado/\n"),
        "/privado/api": lambda _: (200, {}, json_items("segredo")),
    }
    with site(routes) as s:
        outcome = crawls.crawl(RUN, "robots", api_spec(s.url("/privado/api")), timeout=30)
        with pytest.raises(SourceFailed) as info:
            judge(outcome, "robots")
        allowed = crawls.crawl(
            RUN,
            "robots_off",
            api_spec(s.url("/privado/api"), crawl={"obey_robots": False}),
            timeout=30,
        )

    assert "robots_disallowed" == info.value.error_type
    assert "robots.txt" in str(info.value)
    assert ["segredo"] == [i["title"] for i in judge(allowed, "robots_off")]
    assert 1 == len(s.hits("/privado/api"))  # only the source that opted out fetched it


def test_project_spider_disallowed_by_robots_txt_fails_saying_so(crawls: CrawlSessions) -> None:
    """Scrapy drops a project spider's request robots.txt forbids without telling the spider:
    the source still fails with robots_disallowed, naming robots.txt and the URL."""
    routes: dict[str, Route] = {
        "/robots.txt": lambda _: (200, {}, b"User-agent: *\nDisallow: /noticias/\n"),
        "/noticias/": lambda _: (200, {}, ARTICLE),
    }
    with site(routes) as s:
        outcome = crawls.crawl(RUN, "projeto_robots", news_spec(s.url("/noticias/")), timeout=30)
        with pytest.raises(SourceFailed) as info:
            judge(outcome, "projeto_robots")

    assert "robots_disallowed" == info.value.error_type
    assert f"robots.txt of {s.url('')} disallows {s.url('/noticias/')}" in str(info.value)
    assert [] == s.hits("/noticias/")
    assert 1 == len(s.hits("/robots.txt"))


def test_429_and_503_are_retried_after_retry_after(crawls: CrawlSessions) -> None:
    """429 with Retry-After: 1 and a 503 are retried (after the wait), then the items come."""
    answers = iter([(429, {"Retry-After": "1"}, b""), (503, {}, b"")])

    def flaky(_: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        return next(answers, (200, {}, json_items("depois")))

    with site({"/api": flaky}) as s:
        outcome = crawls.crawl(RUN, "flaky", api_spec(s.url("/api")), timeout=30)
        hits = s.hits("/api")

    assert ["depois"] == [i["title"] for i in judge(outcome, "flaky")]
    assert 3 == len(hits)
    assert hits[1][2] - hits[0][2] >= 0.9  # Retry-After honoured
    assert {"downloader/response_status_count/429", "downloader/response_status_count/503"} <= set(
        outcome.stats
    )


def test_retry_after_longer_than_the_timeout_gives_up_with_the_answer(
    crawls: CrawlSessions,
) -> None:
    """A Retry-After past the source's deadline is not waited for: the 429 is the result."""
    with site({"/api": lambda _: (429, {"Retry-After": "3600"}, b"")}) as s:
        started = time.monotonic()
        outcome = crawls.crawl(RUN, "busy", api_spec(s.url("/api")), timeout=20)
        took = time.monotonic() - started

    with pytest.raises(SourceFailed) as info:
        judge(outcome, "busy")
    assert "http_error" == info.value.error_type
    assert "HTTP 429" in str(info.value)
    assert took < 15


def test_user_agent_names_the_product_and_a_source_may_set_its_own(crawls: CrawlSessions) -> None:
    """Requests (robots.txt too) carry the product's User-Agent; a crawl block overrides it."""
    with site({"/api": lambda _: (200, {}, json_items("a"))}) as s:
        crawls.crawl(RUN, "ua", api_spec(s.url("/api")), timeout=30)
        crawls.crawl(
            RUN,
            "ua2",
            api_spec(
                s.url("/api"), crawl={"user_agent": "MeuRobo/1.0 (+https://example.org/robo)"}
            ),
            timeout=30,
        )
        agents = [agent for _, agent, _ in s.seen]

    assert default_user_agent() == agents[0]
    assert default_user_agent().startswith("atlasreg-cursor/")
    assert "(+https://" in default_user_agent()
    assert "MeuRobo/1.0 (+https://example.org/robo)" == agents[-1]


def test_per_source_delay_spaces_requests_to_its_host(crawls: CrawlSessions) -> None:
    """A crawl block's download_delay spaces the pages of its host."""
    pages = {
        "/p1": lambda _: (200, {}, json_items("1", next_url="/p2")),
        "/p2": lambda _: (200, {}, json_items("2", next_url="/p3")),
        "/p3": lambda _: (200, {}, json_items("3")),
    }
    with site(pages) as s:
        outcome = crawls.crawl(
            RUN, "devagar", api_spec(s.url("/p1"), crawl={"download_delay": 0.6}), timeout=30
        )
        times = [t for path, _, t in s.seen if path.startswith("/p")]

    assert ["1", "2", "3"] == [i["title"] for i in judge(outcome, "devagar")]
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(times)), times


def counting(seconds: float) -> tuple[Route, dict[str, int]]:
    """A route answering after *seconds*, and the most requests it saw at once."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def route(_: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(seconds)
        with lock:
            state["now"] -= 1
        return 200, {}, json_items("x")

    return route, state


def test_many_sources_on_one_host_never_exceed_the_per_host_limit(crawls: CrawlSessions) -> None:
    """Thirty sources of one host sent at once (as a run starts): never more than 2 at once."""
    run = "run_c0ffee000003"  # a new process: the thirty wait together for it to start
    route, state = counting(0.2)
    with site({"/api": route}) as s:
        specs = [api_spec(s.url(f"/api?n={n}")) for n in range(30)]
        with cf.ThreadPoolExecutor(max_workers=30) as pool:
            futures = [
                pool.submit(crawls.crawl, run, f"mesmo_host_{n}", spec, timeout=60)
                for n, spec in enumerate(specs)
            ]
            outcomes = [f.result(timeout=120) for f in futures]
    crawls.close_run(run)

    assert all(["x"] == [i["title"] for i in judge(o, "h")] for o in outcomes)
    assert 30 == len(s.hits("/api"))
    assert 2 == state["most"]


def test_polite_downloader_holds_the_limit_when_many_requests_queue(tmp_path: Path) -> None:
    """A plain crawl of many start requests, where Scrapy's own downloader lets a slot's
    whole queue out at once (10-20 at once seen), stays at 2 with PoliteDownloader."""
    import subprocess
    import sys

    route, state = counting(0.05)
    script = tmp_path / "crawl.py"
    script.write_text(
        "import sys, scrapy\n"
        "from scrapy.crawler import CrawlerProcess\n"
        "class S(scrapy.Spider):\n"
        "    name = 's'\n"
        "    async def start(self):\n"
        "        for n in range(80):\n"
        "            yield scrapy.Request(f'{sys.argv[1]}?n={n}', dont_filter=True)\n"
        "    def parse(self, response):\n"
        "        yield {}\n"
        "p = CrawlerProcess({'LOG_LEVEL': 'ERROR', 'TELNETCONSOLE_ENABLED': False,\n"
        "    'CONCURRENT_REQUESTS': 32, 'CONCURRENT_REQUESTS_PER_DOMAIN': 2,\n"
        "    'DOWNLOADER': 'atlasreg_cursor.adapters.local.spider_runner.downloader.PoliteDownloader'})\n"
        "p.crawl(S)\n"
        "p.start()\n"
    )
    with site({"/api": route}) as s:
        done = subprocess.run(
            [sys.executable, str(script), s.url("/api")],
            capture_output=True,
            timeout=120,
            check=False,
        )

    assert 0 == done.returncode, done.stderr[-2000:]
    assert 80 == len(s.hits("/api"))
    assert 2 == state["most"]


def test_without_the_watchdog_a_wedged_process_is_killed_past_the_deadline(
    tmp_path: Path,
) -> None:
    """The last resort: with the reactor watchdog off, the wedged crawl process is killed past
    the blocker's deadline; its neighbour is sent again to a new process and succeeds."""
    sessions = CrawlSessions(
        work_dir=tmp_path, project_path=PROJECT, allow_private=True, reactor_lag=None
    )
    route, _ = counting(2.0)
    blocker = {"kind": "project", "spider": "blocker", "spider_args": {}, "download_timeout": 3}
    try:
        with site({"/api": route}) as s, cf.ThreadPoolExecutor(max_workers=2) as pool:
            neighbour = pool.submit(
                sessions.crawl, RUN, "vizinho", api_spec(s.url("/api")), timeout=60
            )
            time.sleep(0.5)
            started = time.monotonic()
            blocked = sessions.crawl(RUN, "bloqueio", blocker, timeout=4)
            took = time.monotonic() - started
            survivor = neighbour.result(timeout=120)
    finally:
        sessions.close()

    with pytest.raises(SourceFailed) as info:
        judge(blocked, "bloqueio")
    assert "timeout" == info.value.error_type
    assert took <= 4 + 5 + 5
    assert ["x"] == [i["title"] for i in judge(survivor, "vizinho")]
    assert blocked.pid != survivor.pid  # the neighbour finished in a new crawl process


def counted_routes(
    seconds: float, bodies: dict[str, bytes]
) -> tuple[dict[str, Route], dict[str, int]]:
    """Routes answering *bodies* after *seconds*, counting together the most at once."""
    route, state = counting(seconds)

    def answer(body: bytes) -> Route:
        def serve(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            route(handler)
            return 200, {}, body

        return serve

    return {path: answer(body) for path, body in bodies.items()}, state


def paged(title: str, n: int, *, last: int, seconds: float = 0.0) -> Route:
    """Page *n* of a paginated API (``/<prefix><n+1>`` next, up to *last*), after *seconds*."""
    prefix = title.removesuffix(str(n))

    def serve(_: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        time.sleep(seconds)
        return 200, {}, json_items(title, next_url=f"/{prefix}{n + 1}" if n < last else None)

    return serve


def test_project_spiders_and_generic_sources_share_the_per_host_limit(
    crawls: CrawlSessions,
) -> None:
    """Each project spider is a crawler with a downloader of its own; with generic sources
    on the same host, the host still never has more than 2 requests at once."""
    run = "run_c0ffee000004"
    routes, state = counted_routes(0.3, {"/noticias/": ARTICLE, "/api": json_items("x")})
    with site(routes) as s:
        specs = [(f"projeto_{n}", news_spec(s.url(f"/noticias/?n={n}"))) for n in range(4)]
        specs += [(f"generica_{n}", api_spec(s.url(f"/api?n={n}"))) for n in range(4)]
        with cf.ThreadPoolExecutor(max_workers=len(specs)) as pool:
            futures = {
                pool.submit(crawls.crawl, run, name, spec, timeout=60): name for name, spec in specs
            }
            outcomes = {futures[f]: f.result(timeout=120) for f in futures}
    crawls.close_run(run)

    assert all(1 == len(judge(o, name)) for name, o in outcomes.items())
    assert (4, 4) == (len(s.hits("/noticias/")), len(s.hits("/api")))
    assert 2 == state["most"]


def test_autothrottle_spaces_the_requests_to_a_slow_host(crawls: CrawlSessions) -> None:
    """Two paginated sources with crawl.autothrottle on a host answering in 0.5 s: the
    first requests go out together, then AutoThrottle's delay spaces them (without it
    they keep going out in pairs)."""
    run = "run_c0ffee000005"
    pages = {
        f"/{who}{n}": paged(f"{who}{n}", n, last=4, seconds=0.5)
        for who in "ab"
        for n in range(1, 5)
    }
    with site(pages) as s, cf.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(
                crawls.crawl,
                run,
                f"lento_{who}",
                api_spec(s.url(f"/{who}1"), crawl={"autothrottle": True}),
                timeout=60,
            )
            for who in "ab"
        ]
        outcomes = [f.result(timeout=120) for f in futures]
        starts = sorted(t for path, _, t in s.seen if path != "/robots.txt")
    crawls.close_run(run)

    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert all(4 == len(judge(o, "lento")) for o in outcomes)
    assert gaps[0] < 0.1, gaps  # before any answer: no delay yet
    assert min(gaps[1:]) >= 0.1, gaps  # then about latency / 2 between requests


def test_autothrottle_never_goes_below_a_sources_download_delay(crawls: CrawlSessions) -> None:
    """On a fast host AutoThrottle would shrink the delay; a source's download_delay stays
    the floor."""
    pages = {f"/p{n}": paged(f"p{n}", n, last=4) for n in range(1, 5)}
    with site(pages) as s:
        outcome = crawls.crawl(
            RUN,
            "piso",
            api_spec(s.url("/p1"), crawl={"autothrottle": True, "download_delay": 0.5}),
            timeout=30,
        )
        times = [t for path, _, t in s.seen if path.startswith("/p")]

    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert 4 == len(judge(outcome, "piso"))
    assert min(gaps) >= 0.48, gaps


def test_a_hanging_project_spider_times_out_beside_a_generic_neighbour(
    crawls: CrawlSessions,
) -> None:
    """A project spider that never finishes is cut at its timeout inside the shared process;
    the generic source beside it succeeds, and the process lives on."""
    run = "run_c0ffee000006"
    hanger = {"kind": "project", "spider": "hanger", "spider_args": {}, "download_timeout": 2}
    with site({"/api": lambda _: (200, {}, json_items("vizinho"))}) as s:
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            hanging = pool.submit(crawls.crawl, run, "pendurado", hanger, timeout=3)
            neighbour = crawls.crawl(run, "vizinho", api_spec(s.url("/api")), timeout=30)
            hung = hanging.result(timeout=60)
        alive = crawls.running().get(run)
    crawls.close_run(run)

    with pytest.raises(SourceFailed) as info:
        judge(hung, "pendurado")
    assert "timeout" == info.value.error_type
    assert ["vizinho"] == [i["title"] for i in judge(neighbour, "vizinho")]
    assert hung.pid == neighbour.pid == alive


def test_a_spider_blocking_the_reactor_is_failed_and_its_neighbour_goes_on(
    crawls: CrawlSessions,
) -> None:
    """The mirror of the wedged-process test: the blocker's timeout (30 s) is longer than its
    neighbour's (5 s). The watchdog fails the blocker (naming it) and interrupts it; the
    neighbour finishes in time in the same process, and the blocker is not sent again."""
    run = "run_c0ffee000007"
    blocker = {"kind": "project", "spider": "blocker", "spider_args": {}, "download_timeout": 3}
    with site({"/api": lambda _: (200, {}, json_items("vizinho"))}) as s:
        crawls.crawl(run, "aquecimento", api_spec(s.url("/api")), timeout=60)  # process ready
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            started = time.monotonic()
            neighbour = pool.submit(
                crawls.crawl, run, "vizinho", api_spec(s.url("/api?n=2")), timeout=5
            )
            blocked = crawls.crawl(run, "bloqueio", blocker, timeout=30)
            took = time.monotonic() - started
            survivor = neighbour.result(timeout=60)
        alive = crawls.running().get(run)
    crawls.close_run(run)

    with pytest.raises(SourceFailed) as info:
        judge(blocked, "bloqueio")
    assert "spider_error" == info.value.error_type
    assert "blocked the crawl process" in str(info.value)
    assert "BlockerSpider.__init__" in str(info.value)
    assert took < 10
    assert ["vizinho"] == [i["title"] for i in judge(survivor, "vizinho")]
    assert blocked.pid == survivor.pid == alive  # no new crawl process


def test_a_cancelled_source_frees_its_host_places_at_once(crawls: CrawlSessions) -> None:
    """cancel_source ends the source in the crawl process (a generic source, then a project
    spider): its request in progress is aborted, and the host's one place goes to the next
    source long before the cancelled source's deadline (60 s; the next one has 15 s)."""
    run = "run_c0ffee000008"
    release = threading.Event()

    def hang(_: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        release.wait(30)
        return 200, {}, json_items("tarde")

    routes: dict[str, Route] = {
        "/hang": hang,
        "/api": lambda _: (200, {}, json_items("x")),
        "/noticias/": lambda _: (200, {}, ARTICLE),
    }
    one = {"max_per_host": 1}
    results = []
    with site(routes) as s, cf.ThreadPoolExecutor(max_workers=1) as pool:
        pairs = [
            (api_spec(s.url("/hang"), crawl=one), news_spec(s.url("/noticias/"), crawl=one)),
            (news_spec(s.url("/hang"), crawl=one), api_spec(s.url("/api"), crawl=one)),
        ]
        for n, (stopped, following) in enumerate(pairs):
            future = pool.submit(crawls.crawl, run, f"parado{n}", stopped, timeout=60)
            assert wait_until(lambda n=n: len(s.hits("/hang")) > n, timeout=30)

            crawls.cancel_source(run, f"parado{n}")

            cancelled = future.result(timeout=10)
            started = time.monotonic()
            outcome = crawls.crawl(run, f"seguinte{n}", following, timeout=15)
            results.append((cancelled.cancelled, judge(outcome, "x"), time.monotonic() - started))
        release.set()
    crawls.close_run(run)

    assert [True, True] == [cancelled for cancelled, _, _ in results]
    assert [["noticia"], ["x"]] == [[i["title"] for i in items] for _, items, _ in results]
    assert all(took < 5 for _, _, took in results), results


def test_turns_held_when_the_crawl_process_dies_are_counted_by_the_next(
    crawls: CrawlSessions,
) -> None:
    """A download holds the host's one place when the run's crawl process dies (killed as
    wedged, or by its watchdog): the run's next process counts that place as taken, and
    gives it to another only once the download gives it back."""
    run = "run_c0ffee000009"

    def turn(source_id: str, host: str, seconds: float) -> contextlib.AbstractContextManager[None]:
        deadline = time.monotonic() + seconds
        return crawls.host_turn(
            run, host, source_id=source_id, deadline=deadline, max_per_host=1, download_delay=0.0
        )

    with turn("baixando", "h.example", 60):
        first = crawls.running()[run]
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        assert wait_until(lambda: run not in crawls.running(), timeout=10)
        with turn("outro_host", "outro.example", 60):  # the new process is up
            second = crawls.running()[run]
        with pytest.raises(SourceFailed) as info, turn("concorrente", "h.example", 0.5):
            pass
    started = time.monotonic()
    with turn("depois", "h.example", 10):
        granted_in = time.monotonic() - started
    crawls.close_run(run)

    assert second != first
    assert "timeout" == info.value.error_type
    assert granted_in < 2


def test_a_spare_crawl_process_serves_one_run_and_is_kept_warm(tmp_path: Path) -> None:
    """start_spare starts a crawl process ahead of any run: the first run to crawl takes it and
    a run at the same time gets one of its own (never shared); with keep_spare a new spare
    waits once a run is closed; an unused spare is stopped after idle_seconds, and by close."""
    sessions = CrawlSessions(
        work_dir=tmp_path, allow_private=True, idle_seconds=1.5, keep_spare=True
    )
    try:
        sessions.start_spare()
        spare = sessions.spare_pid()
        routes: dict[str, Route] = {"/api": lambda _: (200, {}, json_items("x"))}
        with site(routes) as s, cf.ThreadPoolExecutor(max_workers=2) as pool:
            futures = [
                pool.submit(sessions.crawl, run, "fonte", api_spec(s.url("/api")), timeout=60)
                for run in ("run_5a7e00000001", "run_5a7e00000002")
            ]
            pids = [f.result(timeout=120).pid for f in futures]
        taken = sessions.spare_pid()
        sessions.close_run("run_5a7e00000001")
        kept = sessions.spare_pid()
        sessions.close_run("run_5a7e00000002")
        still = sessions.spare_pid()
        reaped = wait_until(lambda: sessions.spare_pid() is None, timeout=10)
        sessions.start_spare()
        last = sessions.spare_pid()
    finally:
        sessions.close()

    assert spare in pids  # taken by one run
    assert 2 == len(set(pids))  # the other started its own
    assert taken is None
    assert kept not in (None, *pids)
    assert still == kept  # one spare at most
    assert reaped
    assert not _alive(kept)
    assert last is not None
    assert not _alive(last)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
