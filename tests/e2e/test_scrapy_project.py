"""Project spiders in subprocesses: run_project_spider and judge on a real Scrapy project.

The project lives in ``tests/fixtures/scrapy_project`` (``sample_news``,
``crasher``, ``hanger``); crawls go to the sample site on 127.0.0.1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.core.scrapy import (
    items_to_documents,
    judge,
    run_crawl,
    run_project_spider,
)
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.sources import SourceConfig
from atlasreg_cursor.sample_site import SampleSite, start_sample_site

pytestmark = pytest.mark.scrapy

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    """The sample site on a free loopback port."""
    with start_sample_site() as running:
        yield running


def _stat(pid: int | str) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name ([0] is the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Tell whether *pid* is a live (non-zombie) process."""
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    """Tell whether a live (non-zombie) process is left in group *pgid*."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(entry.name)
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def test_sample_news_crawls_every_page(site: SampleSite, tmp_path: Path) -> None:
    """The project's spider gets its -a arguments and its items become Documents."""
    outcome = run_project_spider(
        PROJECT,
        "sample_news",
        {"url": f"{site.base_url}/noticias/", "run_id": "run_0123456789ab", "player_id": "aneel"},
        timeout=60,
        work_dir=tmp_path,
    )
    items = judge(outcome, "aneel_news")
    documents = items_to_documents(
        items, SourceConfig(id="aneel_news", handler_id="SCRAPY_NEWSROOM_PLAYER")
    )

    assert 0 == outcome.returncode
    assert "sample_news" == outcome.spider
    assert "finished" == outcome.stats["finish_reason"]
    assert 11 == outcome.stats["item_scraped_count"]
    assert 11 == len(documents)
    assert {"run_0123456789ab"} == {i["run_id"] for i in items}
    first = documents[0]
    assert "sample-multa-transmissora-paulista" == first.document_id
    assert "aneel" == first.player_id
    assert "aneel_news" == first.source_id
    assert [] == list(tmp_path.iterdir())


def test_exception_in_init_is_a_spider_error(tmp_path: Path) -> None:
    """A spider raising in __init__ fails with spider_error carrying its message."""
    outcome = run_project_spider(PROJECT, "crasher", {"where": "init"}, timeout=60)

    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert "spider_error" == info.value.error_type
    assert "crasher refused to start" in str(info.value)


def test_exception_in_callback_is_a_spider_error(site: SampleSite) -> None:
    """A callback that raises (exit code 0) is still judged a spider_error."""
    outcome = run_project_spider(
        PROJECT, "crasher", {"where": "callback", "url": f"{site.base_url}/noticias/"}, timeout=60
    )

    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert 0 == outcome.returncode
    assert 1 == outcome.stats["spider_exceptions/ValueError"]
    assert "spider_error" == info.value.error_type
    assert "crasher cannot parse" in str(info.value)


def test_unknown_spider_is_a_spider_error() -> None:
    """A spider name the project does not have fails with a clear message."""
    outcome = run_project_spider(PROJECT, "nao_existe", {}, timeout=60)

    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert "spider_error" == info.value.error_type
    assert "spider 'nao_existe' not found in the Scrapy project" == str(info.value)


def test_hanging_spider_is_killed_with_its_process_group(tmp_path: Path) -> None:
    """At the timeout the whole group goes, grandchildren included."""
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()

    outcome = run_project_spider(PROJECT, "hanger", {"pidfile": str(pidfile)}, timeout=10)
    elapsed = time.monotonic() - started
    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert outcome.timed_out
    assert 10 <= elapsed < 30
    assert "timeout" == info.value.error_type
    assert outcome.pid is not None
    assert not alive(outcome.pid)
    assert not group_alive(outcome.pid)
    assert not alive(int(pidfile.read_text()))


def test_term_resistant_crawl_is_killed(tmp_path: Path) -> None:
    """A process group that ignores SIGTERM gets SIGKILL after the grace period."""
    spec = {"kind": "newsroom", "url": "http://127.0.0.1:9/", "selectors": {"item": "x"}}
    script = tmp_path / "sitecustomize.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)\n"
    )
    started = time.monotonic()

    outcome = run_crawl(
        spec, timeout=1, env={"PYTHONPATH": str(tmp_path)}, work_dir=tmp_path, kill_grace=1
    )

    assert outcome.timed_out
    assert -signal.SIGKILL == outcome.returncode
    assert time.monotonic() - started < 15
    assert outcome.pid is not None
    assert not group_alive(outcome.pid)


def test_guard_refuses_private_hosts_inside_the_crawl(site: SampleSite) -> None:
    """Without allow_private every request passes the SSRF guard in the crawler."""
    spec = {
        "kind": "newsroom",
        "url": f"{site.base_url}/noticias/",
        "selectors": {"item": "article", "title": "h2 a::text"},
        "allow_private": False,
    }

    outcome = run_crawl(spec, timeout=60)
    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert "forbidden_address" == info.value.error_type
    assert "127.0.0.1" in str(info.value)


def test_unusable_spec_is_a_spider_error() -> None:
    """A spec the runner cannot use fails clearly instead of crawling."""
    outcome = run_crawl({"kind": "rss", "url": "http://127.0.0.1:9/"}, timeout=60)

    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert "spider_error" == info.value.error_type
    assert "unusable crawl spec: unknown crawl kind 'rss'" == str(info.value)


def test_unreachable_site_is_a_network_error() -> None:
    """Connection refused on every request, no items: network_error."""
    spec = {
        "kind": "api",
        "url": "http://127.0.0.1:9/api",
        "api": {"items_path": "data"},
        "allow_private": True,
        "crawl": {"retry_times": 0},
    }

    outcome = run_crawl(spec, timeout=60)
    with pytest.raises(SourceFailed) as info:
        judge(outcome, "s")

    assert "network_error" == info.value.error_type
    assert "ConnectionRefusedError" in str(info.value)


def test_crawl_dies_with_its_parent(tmp_path: Path) -> None:
    """When the orchestrating process is killed, the crawl's group follows."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import sys; from pathlib import Path;"
        "from atlasreg_cursor.adapters.core.scrapy import run_project_spider;"
        "run_project_spider(Path(sys.argv[1]), 'hanger', {'pidfile': sys.argv[2]}, timeout=120,"
        " work_dir=Path(sys.argv[3]))"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(PROJECT), str(pidfile), str(tmp_path / "work")]
    )
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        runner = int(_stat(child)[1])
    finally:
        parent.kill()
        parent.wait(timeout=10)

    deadline = time.monotonic() + 10
    while (alive(runner) or alive(child)) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert not alive(runner)
    assert not alive(child)
    assert not group_alive(runner)
