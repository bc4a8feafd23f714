"""The local executor against the bundled sample site, with real Scrapy crawls.

Crawls run as real subprocesses; the CSV handler downloads over real HTTP.
Every request goes to the sample site on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain.documents import SourceResult
from atlasreg_cursor.domain.errors import HandlerNotAvailable, SourceFailed
from atlasreg_cursor.domain.gold import parse_gold, serialize_gold
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import SourceConfig, parse_watchlist
from atlasreg_cursor.sample_site import (
    SampleSite,
    demo_watchlist,
    expected_demo_outcome,
    start_sample_site,
)

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"
RUN = RunContext(
    run_id="run_0123456789ab",
    date=dt.date(2026, 11, 24),
    message_type=MessageType.START_DAILY_INGEST,
    identity="m-1",
)


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    """The sample site on a free loopback port."""
    with start_sample_site() as running:
        yield running


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalExecutor]:
    """A local executor allowed to crawl the loopback site (one crawl process for the module)."""
    local = LocalExecutor(work_dir=tmp_path_factory.mktemp("work"), allow_private_sources=True)
    yield local
    local.close()


def demo_sources(site: SampleSite) -> dict[str, SourceConfig]:
    """The demo watchlist's sources by id."""
    config = parse_watchlist(demo_watchlist(site.base_url))
    assert () == config.invalid
    return {s.id: s for s in config.sources}


def source(**fields: Any) -> SourceConfig:
    """One source parsed from watchlist JSON."""
    config = parse_watchlist({"sources": [fields]})
    assert () == config.invalid, config.invalid
    return config.sources[0]


def run_enabled(
    executor: LocalExecutor, sources: list[SourceConfig]
) -> dict[str, SourceResult | SourceFailed]:
    """Run sources in parallel as the ingest service does; keep each outcome."""
    outcomes: dict[str, SourceResult | SourceFailed] = {}
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {pool.submit(executor.run_source, s, RUN): s.id for s in sources}
        for future in cf.as_completed(futures, timeout=120):
            try:
                outcomes[futures[future]] = future.result()
            except SourceFailed as exc:
                outcomes[futures[future]] = exc
    return outcomes


def as_result(source_id: str, outcome: SourceResult | SourceFailed) -> SourceResult:
    """A failure as the SourceResult the ingest service records."""
    if isinstance(outcome, SourceResult):
        return outcome
    return SourceResult(
        source_id=source_id, error_type=outcome.error_type, error_message=str(outcome)
    )


def processes_mentioning(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains *marker*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.scrapy
def test_demo_watchlist_yields_exactly_the_expected_events(
    site: SampleSite, executor: LocalExecutor
) -> None:
    """Every enabled demo source runs; documents, events and errors are exactly as stated."""
    expected = expected_demo_outcome()
    sources = demo_sources(site)
    enabled = [s for s in sources.values() if s.enabled]

    outcomes = run_enabled(executor, enabled)
    results = [as_result(sid, o) for sid, o in sorted(outcomes.items())]
    documents = [d for r in results for d in r.documents]
    processing = executor.process(documents, RUN, timeout_seconds=60)
    gold = executor.build_gold(RUN, results, processing)

    assert set(expected.sources) == set(outcomes)
    for source_id, want in expected.sources.items():
        outcome = outcomes[source_id]
        if want.error_type is not None:
            assert isinstance(outcome, SourceFailed)
            assert want.error_type == outcome.error_type
            continue
        assert isinstance(outcome, SourceResult), outcome
        events = [e for e in gold.events if e.source == source_id]
        assert want.items == outcome.items_count, source_id
        assert want.documents == len(outcome.documents), source_id
        assert dict(want.events) == dict(Counter(e.event_type.value for e in events)), source_id
        assert want.critical == sum(e.is_critical for e in events), source_id
    assert expected.documents_count == gold.metadata.documents_count
    assert expected.events_count == gold.metadata.events_count
    assert expected.events_by_type() == dict(Counter(e.event_type.value for e in gold.events))
    assert [("sigel_daily", "handler_not_available")] == [
        (e.source_id, e.error_type) for e in gold.errors
    ]
    assert "not available in local mode" in gold.errors[0].error_message
    assert 4 == gold.metadata.sources_processed
    assert gold == parse_gold(json.loads(serialize_gold(gold).body))


@pytest.mark.scrapy
def test_newsroom_follows_pages_filters_by_keyword_and_tags(
    site: SampleSite, executor: LocalExecutor
) -> None:
    """All three pages are crawled, items without a keyword dropped, matches tagged."""
    newsroom = demo_sources(site)["portal_noticias"]

    result = executor.run_source(newsroom, RUN)
    by_title = {d.title: d for d in result.documents}

    assert 11 == result.items_count
    assert 8 == len(result.documents)
    assert "Semana da inovação reúne estudantes em Brasília" not in by_title
    fine = by_title["ANEEL aplica multa de R$ 1,5 milhão à Transmissora Paulista S.A."]
    assert ("multa", "auto de infração", "transmissão") == fine.tags
    assert f"{site.base_url}/noticias/multa-transmissora-paulista" == fine.url
    assert "2026-11-20T10:00:00-03:00" == fine.date
    assert "aneel" == fine.player_id
    assert fine.summary.startswith("A agência lavrou auto de infração")
    assert any(d.title.startswith("Transmissão: consulta") for d in result.documents)


@pytest.mark.scrapy
def test_max_pages_caps_pagination(site: SampleSite, executor: LocalExecutor) -> None:
    """With ``max_pages: 1`` only the first listing page is read."""
    fields = demo_watchlist(site.base_url)["sources"][0]
    one_page = source(**{**fields, "keywords": [], "max_pages": 1})

    result = executor.run_source(one_page, RUN)

    assert 4 == result.items_count
    assert 4 == len(result.documents)


@pytest.mark.scrapy
def test_broken_source_fails_while_the_others_succeed(
    site: SampleSite, executor: LocalExecutor
) -> None:
    """A source answering HTTP 500 fails with http_error; its neighbours still deliver."""
    sources = demo_sources(site)
    broken = source(
        id="quebrado",
        handler_id="SCRAPY_NEWSROOM_PLAYER",
        url_feed=f"{site.base_url}/broken",
        timeout_seconds=30,
        selectors={"item": "article", "title": "h2 a::text"},
    )

    outcomes = run_enabled(executor, [broken, sources["cvm_avisos"], sources["ons_ocorrencias"]])
    results = [as_result(sid, o) for sid, o in outcomes.items()]
    processing = executor.process(
        [d for r in results for d in r.documents], RUN, timeout_seconds=60
    )
    gold = executor.build_gold(RUN, results, processing)

    failure = outcomes["quebrado"]
    assert isinstance(failure, SourceFailed)
    assert "http_error" == failure.error_type
    assert "HTTP 500" in str(failure)
    assert 5 == len(as_result("cvm_avisos", outcomes["cvm_avisos"]).documents)
    assert 3 == len(as_result("ons_ocorrencias", outcomes["ons_ocorrencias"]).documents)
    assert 8 == gold.metadata.events_count
    assert [("quebrado", "http_error")] == [(e.source_id, e.error_type) for e in gold.errors]


@pytest.mark.scrapy
def test_hanging_source_is_cut_at_its_timeout(site: SampleSite, tmp_path: Path) -> None:
    """A source outliving timeout_seconds fails with timeout; the run's crawl goes on; close_run leaves nothing."""
    work = tmp_path / "hang-work"
    local = LocalExecutor(work_dir=work, allow_private_sources=True)
    slow = source(
        id="lento",
        handler_id="SCRAPY_NEWSROOM_PLAYER",
        url_feed=f"{site.base_url}/slow?seconds=60",
        timeout_seconds=2,
        selectors={"item": "article", "title": "h2 a::text"},
    )
    started = time.monotonic()

    with pytest.raises(SourceFailed) as info:
        local.run_source(slow, RUN)
    elapsed = time.monotonic() - started
    pid = local.crawls.running()[RUN.run_id]
    after = local.run_source(demo_sources(site)["cvm_avisos"], RUN)
    same_process = local.crawls.running()[RUN.run_id]
    local.close_run(RUN)

    assert "timeout" == info.value.error_type
    assert "within 2s" in str(info.value)
    assert elapsed < 10
    assert 5 == len(after.documents)
    assert pid == same_process
    assert [] == processes_mentioning(str(work))
    assert [] == list((work / "crawls").iterdir())


@pytest.mark.scrapy
def test_project_spider_runs_instead_of_the_generic_one(site: SampleSite, tmp_path: Path) -> None:
    """A spider_id of SCRAPY_PROJECT_PATH runs that spider with url, run_id and player_id."""
    local = LocalExecutor(
        work_dir=tmp_path / "work", scrapy_project_path=PROJECT, allow_private_sources=True
    )
    fields = demo_watchlist(site.base_url)["sources"][0]
    with_spider = source(**{**fields, "spider_id": "sample_news", "selectors": None})

    result = local.run_source(with_spider, RUN)

    assert 11 == result.items_count
    assert 8 == len(result.documents)
    assert all(d.document_id.startswith("sample-") for d in result.documents)
    assert {"aneel"} == {d.player_id for d in result.documents}


@pytest.mark.scrapy
def test_unknown_spider_id_falls_back_to_the_selectors(site: SampleSite, tmp_path: Path) -> None:
    """A spider_id the project does not have runs the generic spider from selectors."""
    local = LocalExecutor(
        work_dir=tmp_path / "work", scrapy_project_path=PROJECT, allow_private_sources=True
    )
    fields = demo_watchlist(site.base_url)["sources"][0]
    with_spider = source(**{**fields, "spider_id": "aneel_news"})

    result = local.run_source(with_spider, RUN)

    assert 11 == result.items_count
    assert not any(d.document_id.startswith("sample-") for d in result.documents)


@pytest.mark.scrapy
def test_reprocess_makes_the_same_events(site: SampleSite, executor: LocalExecutor) -> None:
    """Reprocessing the date's sources gives the same events (ids are run-independent)."""
    sources = demo_sources(site)
    chosen = [sources["portal_noticias"], sources["cvm_avisos"], sources["sigel_daily"]]
    first = executor.process(
        [d for s in chosen[:2] for d in executor.run_source(s, RUN).documents],
        RUN,
        timeout_seconds=60,
    )
    rerun = RunContext(
        run_id="reprocess_0123456789ab",
        date=RUN.date,
        message_type=MessageType.REPROCESS,
        identity="m-2",
    )

    again = executor.reprocess(rerun, chosen, timeout_seconds=120)
    gold = executor.build_gold(rerun, (), again)

    assert sorted(first.events, key=lambda e: e.event_id) == sorted(
        again.events, key=lambda e: e.event_id
    )
    assert 13 == again.documents_count
    assert [("sigel_daily", "handler_not_available")] == [
        (e.source_id, e.error_type) for e in gold.errors
    ]
    assert 3 == gold.metadata.sources_processed


STUCK_REPROCESS = """
import datetime as dt, json, sys, time
from pathlib import Path
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext
from atlasreg_cursor.domain.sources import parse_watchlist

class DeafToCancellation(LocalExecutor):
    def _collect(self, source, run):
        if source.id == "stuck":
            time.sleep(60)  # close_run cannot stop this handler
        return (), 0

csv = {"delimiter": ";", "fields": {"title": "t", "url": "u", "date": "d"}}
sources = parse_watchlist({"sources": [
    {"id": i, "handler_id": "DOWNLOAD_CSV", "url_feed": "http://127.0.0.1:9/a.csv", "csv": csv}
    for i in ("stuck", "quick")
]}).sources
run = RunContext(run_id="reprocess_0123456789ab", date=dt.date(2026, 11, 24),
                 message_type=MessageType.REPROCESS, identity="m-1")
executor = DeafToCancellation(work_dir=Path(sys.argv[1]), allow_private_sources=True)
result = executor.reprocess(run, sources, timeout_seconds=0.5)
executor.close()
print(json.dumps([[e.source_id, e.error_type] for e in result.errors]), flush=True)
"""


def test_a_stuck_reprocess_source_does_not_keep_the_process_from_exiting(tmp_path: Path) -> None:
    """A reprocess source that ignores cancellation is recorded ``timeout`` and left behind on a
    daemon thread: the process exits at once instead of waiting for it."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", STUCK_REPROCESS, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit: {exc.stdout!r} {exc.stderr!r}")
    took = time.monotonic() - started

    assert 0 == done.returncode, done.stderr
    assert [["stuck", "timeout"]] == json.loads(done.stdout.splitlines()[-1])
    assert took < 15


def test_airflow_dag_is_not_available_locally(executor: LocalExecutor) -> None:
    """AIRFLOW_DAG has no local meaning: a clear handler-not-available error."""
    dag = source(id="sigel", handler_id="AIRFLOW_DAG", dag_id="sigel_daily")

    with pytest.raises(HandlerNotAvailable) as info:
        executor.run_source(dag, RUN)

    assert "handler_not_available" == info.value.error_type
    assert "handler AIRFLOW_DAG is not available in local mode" == str(info.value)


def test_private_address_refused_without_allow_private(site: SampleSite, tmp_path: Path) -> None:
    """Without ALLOW_PRIVATE_SOURCES the loopback site is refused before any crawl."""
    local = LocalExecutor(work_dir=tmp_path / "work")
    sources = demo_sources(site)

    for source_id in ("portal_noticias", "cvm_avisos", "ons_ocorrencias"):
        with pytest.raises(SourceFailed) as info:
            local.run_source(sources[source_id], RUN)
        assert "forbidden_address" == info.value.error_type
    assert not (tmp_path / "work" / "crawls").exists()


def test_newsroom_without_selectors_is_a_config_error(executor: LocalExecutor) -> None:
    """A newsroom source with neither selectors nor a project spider cannot run locally."""
    bare = source(id="b3_fatos", handler_id="CUSTOM_SCRAPER", url_feed="http://127.0.0.1:9/")

    with pytest.raises(SourceFailed) as info:
        executor.run_source(bare, RUN)

    assert "invalid_config" == info.value.error_type
    assert "selectors" in str(info.value)


# --- DOWNLOAD_CSV ---------------------------------------------------------------


def csv_source(
    site: SampleSite, path: str = "/dados/ocorrencias.csv", **extra: Any
) -> SourceConfig:
    """The demo CSV source pointed at *path*."""
    fields = {**demo_watchlist(site.base_url)["sources"][2], "url_feed": site.base_url + path}
    return source(**{**fields, **extra})


def test_csv_rows_become_documents(site: SampleSite, executor: LocalExecutor) -> None:
    """Rows are mapped by ``fields``, quoted delimiters survive, links made absolute."""
    result = executor.run_source(csv_source(site, keywords=[]), RUN)
    by_title = {d.title: d for d in result.documents}

    assert 4 == result.items_count
    assert 4 == len(result.documents)
    transformer = by_title["Falha em transformador; SE Campinas 440 kV"]
    assert f"{site.base_url}/ocorrencias/2026-1102" == transformer.url
    assert "2026-11-20" == transformer.date
    assert "ons" == transformer.player_id


@pytest.mark.parametrize("path", ["/dados/ocorrencias.csv", "/dados/ocorrencias.csv?stream=1"])
def test_csv_over_the_size_cap_is_too_large(site: SampleSite, tmp_path: Path, path: str) -> None:
    """A body over max_download_bytes fails with too_large (declared or streamed)."""
    local = LocalExecutor(work_dir=tmp_path, allow_private_sources=True, max_download_bytes=100)

    with pytest.raises(SourceFailed) as info:
        local.run_source(csv_source(site, path), RUN)

    assert "too_large" == info.value.error_type


def test_csv_streamed_without_length_downloads(site: SampleSite, executor: LocalExecutor) -> None:
    """A body sent without Content-Length is read to the end."""
    result = executor.run_source(csv_source(site, "/dados/ocorrencias.csv?stream=1"), RUN)

    assert 4 == result.items_count


@pytest.mark.parametrize(("path", "status"), [("/dados/nada.csv", "404"), ("/broken", "500")])
def test_csv_http_errors(site: SampleSite, executor: LocalExecutor, path: str, status: str) -> None:
    """A non-2xx answer fails with http_error naming the status."""
    with pytest.raises(SourceFailed) as info:
        executor.run_source(csv_source(site, path), RUN)

    assert "http_error" == info.value.error_type
    assert f"HTTP {status}" in str(info.value)


def test_csv_missing_column_is_a_parse_error(site: SampleSite, executor: LocalExecutor) -> None:
    """A ``fields`` column absent from the header fails with parse_error naming it."""
    broken_mapping = {"delimiter": ";", "fields": {"title": "titulo", "url": "link"}}

    with pytest.raises(SourceFailed) as info:
        executor.run_source(csv_source(site, csv=broken_mapping), RUN)

    assert "parse_error" == info.value.error_type
    assert "'titulo'" in str(info.value)


def test_csv_slow_download_times_out(site: SampleSite, executor: LocalExecutor) -> None:
    """A download slower than timeout_seconds fails with timeout."""
    started = time.monotonic()

    with pytest.raises(SourceFailed) as info:
        executor.run_source(csv_source(site, "/slow?seconds=30", timeout_seconds=1), RUN)

    assert "timeout" == info.value.error_type
    assert time.monotonic() - started < 10


@pytest.mark.scrapy
@pytest.mark.parametrize("how", ["close_run", "close"])
def test_closing_stops_running_crawls(site: SampleSite, tmp_path: Path, how: str) -> None:
    """close_run(run) (or close()) stops the run's crawl; its running sources fail at once as cancelled."""
    work = tmp_path / "close-work"
    local = LocalExecutor(work_dir=work, allow_private_sources=True)
    slow = source(
        id="lento",
        handler_id="SCRAPY_NEWSROOM_PLAYER",
        url_feed=f"{site.base_url}/slow?seconds=60",
        timeout_seconds=60,
        selectors={"item": "article", "title": "h2 a::text"},
    )
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(local.run_source, slow, RUN)
        deadline = time.monotonic() + 30
        while not processes_mentioning(str(work)) and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()

        local.close_run(RUN) if how == "close_run" else local.close()

        with pytest.raises(SourceFailed) as info:
            future.result(timeout=30)
    assert time.monotonic() - started < 10
    assert "cancelled" == info.value.error_type
    assert [] == processes_mentioning(str(work))
    local.close_run(RUN)  # idempotent


class CsvServer:
    """A loopback CSV server: ``/drip`` drips a byte at a time, ``/slow.csv`` answers late,
    ``/api`` is a JSON API answering late, ``/robots.txt`` serves :attr:`robots` (404
    when ``None``). It counts the requests at once (robots.txt too) and the paths asked."""

    BODY = "titulo;link\nOcorrência A;/a\nOcorrência B;/b\n".encode()
    API = json.dumps({"data": {"items": [{"title": "Aviso", "url": "/aviso"}]}}).encode()

    def __init__(self, delay: float = 0.5) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.now = 0
        self.most = 0
        self.hits = 0
        self.paths: list[str] = []
        self.robots: bytes | None = None
        self.stop = threading.Event()
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with lock:
                    server.hits += 1
                    server.now += 1
                    server.most = max(server.most, server.now)
                    server.paths.append(self.path.split("?", 1)[0])
                try:
                    if self.path == "/robots.txt":
                        robots = server.robots
                        self.send_response(404 if robots is None else 200)
                        self.send_header("Content-Length", str(len(robots or b"")))
                        self.end_headers()
                        self.wfile.write(robots or b"")
                        return
                    if self.path.startswith("/drip"):
                        self.send_response(200)
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        while not server.stop.is_set():
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            server.stop.wait(0.2)
                        return
                    server.stop.wait(delay)
                    body = server.API if self.path.startswith("/api") else server.BODY
                    self.send_response(200)
                    self.send_header("Content-Type", "text/csv")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True
                finally:
                    with lock:
                        server.now -= 1

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def csv_server() -> Iterator[CsvServer]:
    """A CSV server for one test."""
    server = CsvServer()
    yield server
    server.close()


def plain_csv(url: str, source_id: str = "csv", timeout: float = 30, **extra: Any) -> SourceConfig:
    """A DOWNLOAD_CSV source of ``titulo;link`` rows."""
    return source(
        id=source_id,
        handler_id="DOWNLOAD_CSV",
        url_feed=url,
        timeout_seconds=timeout,
        csv={"delimiter": ";", "fields": {"title": "titulo", "url": "link"}},
        **extra,
    )


def test_csv_slow_drip_is_closed_at_its_timeout(csv_server: CsvServer, tmp_path: Path) -> None:
    """A server dripping a byte at a time cannot hold a download past its timeout."""
    local = LocalExecutor(work_dir=tmp_path, allow_private_sources=True)
    started = time.monotonic()

    with pytest.raises(SourceFailed) as info:
        local.run_source(plain_csv(csv_server.url("/drip"), timeout=2), RUN)
    took = time.monotonic() - started
    local.close()

    assert "timeout" == info.value.error_type
    assert took < 2 + 4


def test_csv_downloads_take_turns_per_host(csv_server: CsvServer, tmp_path: Path) -> None:
    """With CRAWL_MAX_PER_HOST=1 three CSV downloads of one host never overlap."""
    from atlasreg_cursor.adapters.core.crawl_process import CrawlPolicy

    local = LocalExecutor(
        work_dir=tmp_path, allow_private_sources=True, policy=CrawlPolicy(max_per_host=1)
    )
    sources = [plain_csv(csv_server.url(f"/slow.csv?n={n}"), f"csv{n}") for n in range(3)]

    outcomes = run_enabled(local, sources)
    local.close()

    assert all(isinstance(o, SourceResult) and 2 == o.items_count for o in outcomes.values())
    assert (3, 1) == (csv_server.paths.count("/slow.csv"), csv_server.most)


def test_csv_downloads_and_crawls_share_the_per_host_limit(
    csv_server: CsvServer, tmp_path: Path
) -> None:
    """Three CSV downloads and three crawled API sources of one host at once: CSVs take
    their turns from the run's crawl process, so the host never has more than 2 at once."""
    local = LocalExecutor(work_dir=tmp_path, allow_private_sources=True)
    sources = [plain_csv(csv_server.url(f"/slow.csv?n={n}"), f"csv{n}") for n in range(3)]
    sources += [
        source(
            id=f"api{n}",
            handler_id="SCRAPY_CVM_API",
            url_feed=csv_server.url(f"/api?n={n}"),
            api={"items_path": "data.items"},
        )
        for n in range(3)
    ]

    with cf.ThreadPoolExecutor(max_workers=len(sources)) as pool:
        futures = {pool.submit(local.run_source, s, RUN): s.id for s in sources}
        outcomes = {futures[f]: f.result(timeout=120) for f in futures}
    local.close()

    assert {2} == {outcomes[f"csv{n}"].items_count for n in range(3)}
    assert {1} == {outcomes[f"api{n}"].items_count for n in range(3)}
    assert 2 == csv_server.most


def test_csv_downloads_obey_robots_txt(csv_server: CsvServer, tmp_path: Path) -> None:
    """A CSV robots.txt disallows fails with robots_disallowed, unfetched; a source that
    opts out (crawl.obey_robots false) downloads it."""
    csv_server.robots = b"User-agent: *\nDisallow: /slow.csv\n"
    local = LocalExecutor(work_dir=tmp_path, allow_private_sources=True)

    with pytest.raises(SourceFailed) as info:
        local.run_source(plain_csv(csv_server.url("/slow.csv"), "proibido"), RUN)
    allowed = local.run_source(
        plain_csv(csv_server.url("/slow.csv?n=2"), "liberado", crawl={"obey_robots": False}), RUN
    )
    local.close()

    assert "robots_disallowed" == info.value.error_type
    assert f"robots.txt of {csv_server.url('')} disallows" in str(info.value)
    assert 2 == allowed.items_count
    assert ["/robots.txt", "/slow.csv"] == csv_server.paths


def test_close_run_cancels_a_csv_download(csv_server: CsvServer, tmp_path: Path) -> None:
    """close_run closes the run's downloads in progress: they fail as cancelled at once."""
    local = LocalExecutor(work_dir=tmp_path, allow_private_sources=True)
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(local.run_source, plain_csv(csv_server.url("/drip"), timeout=60), RUN)
        deadline = time.monotonic() + 30
        while csv_server.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        closed = time.monotonic()

        local.close_run(RUN)

        with pytest.raises(SourceFailed) as info:
            future.result(timeout=30)
    took = time.monotonic() - closed
    local.close()

    assert "cancelled" == info.value.error_type
    assert took < 3


def test_cancel_source_ends_a_csv_waiting_for_its_turn(
    csv_server: CsvServer, tmp_path: Path
) -> None:
    """With CRAWL_MAX_PER_HOST=1 and a download holding the host, cancel_source on a CSV
    waiting for its turn makes it return cancelled at once (not at its timeout), unfetched."""
    from atlasreg_cursor.adapters.core.crawl_process import CrawlPolicy
    from tests.support.services import wait_until

    local = LocalExecutor(
        work_dir=tmp_path, allow_private_sources=True, policy=CrawlPolicy(max_per_host=1)
    )
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(
            local.run_source, plain_csv(csv_server.url("/drip"), "gotejando", timeout=60), RUN
        )
        assert wait_until(lambda: "/drip" in csv_server.paths, timeout=30)
        waiting = pool.submit(
            local.run_source, plain_csv(csv_server.url("/slow.csv"), "esperando", timeout=20), RUN
        )
        time.sleep(0.3)  # it asks for its turn
        cancelled_at = time.monotonic()

        local.cancel_source(RUN, "esperando")

        with pytest.raises(SourceFailed) as info:
            waiting.result(timeout=60)
        took = time.monotonic() - cancelled_at
        local.close_run(RUN)
        with pytest.raises(SourceFailed):
            holder.result(timeout=30)
    local.close()

    assert "cancelled" == info.value.error_type
    assert took < 3
    assert "/slow.csv" not in csv_server.paths
