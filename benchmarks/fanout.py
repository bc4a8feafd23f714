"""The fan-out row and the ``--help`` row (see README.md).

Fan-out: N JSON-API sources spread over H loopback hosts (127.0.0.2, …),
each answering after a delay. Measured in one run, interleaved:

- ours: ``atlasreg-cursor ingest`` as a process (local executor, the
  default politeness: robots.txt obeyed, ``CRAWL_MAX_PER_HOST=2``),
  ``max_concurrent_sources`` = the concurrency;
- plain Scrapy: one ``CrawlerProcess`` fetching the same N URLs with the
  same politeness and the same concurrency (``plain_scrapy.py``), stock, and
  again with ``PoliteDownloader`` (stock Scrapy can exceed the per-host limit);
- the ideal: delay * ceil(N / concurrency).

Wall time and CPU (user + system, children included) of each process.
With H hosts and at most 2 requests per host, at most 2*H requests run at
once: with H=10 that is 20, the concurrency asked for, so both crawls can
reach it.

``--help``: ``atlasreg-cursor --help`` against a bare interpreter that
imports ``argparse``.

The package is byte-compiled first, as installing a wheel does: an editable
install run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every
module of ours on every start and measure the compiler.
"""

from __future__ import annotations

import compileall
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CLI = BIN / "atlasreg-cursor"
DATE = "2026-11-24"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_process(command: list[str], **kwargs: Any) -> tuple[float, float, str]:
    """Run *command*; return its wall seconds, CPU seconds (children too), stdout."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, _children_cpu() - cpu, done.stdout


class DelayServer:
    """``delay_server.py`` in a process of its own."""

    def __init__(self, hosts: int, delay: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "delay_server.py"), str(hosts), str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.hosts = hosts

    def urls(self, n: int) -> list[str]:
        return [f"http://127.0.0.{2 + i % self.hosts}:{self.port}/api/{i}" for i in range(n)]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.2:{self.port}/__stats", timeout=5) as r:
            data: dict[str, Any] = json.loads(r.read())
        with urllib.request.urlopen(f"http://127.0.0.2:{self.port}/__reset", timeout=5) as r:
            r.read()
        return data

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _watchlist(urls: list[str], concurrency: int) -> dict[str, Any]:
    return {
        "sources": [
            {
                "id": f"fonte_{i:04d}",
                "handler_id": "SCRAPY_CVM_API",
                "url_feed": url,
                "timeout_seconds": 120,
                "api": {
                    "items_path": "data.items",
                    "fields": {"title": "titulo", "url": "link", "date": "data"},
                },
            }
            for i, url in enumerate(urls)
        ],
        "global_settings": {"max_concurrent_sources": concurrency},
    }


def _ours(urls: list[str], concurrency: int, *, profile: Path | None = None) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    try:
        (home / "config").mkdir()
        watchlist = home / "config" / "news_watchlist_config.json"
        watchlist.write_text(json.dumps(_watchlist(urls, concurrency)))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "MODE": "local",
            "CURSOR_HOME": str(home),
            "ALLOW_PRIVATE_SOURCES": "true",
            "LOG_LEVEL": "WARNING",
        }
        command = [str(CLI), "ingest", "--date", DATE]
        if profile is not None:
            profiler = str(HERE / "profiled_cli.py")
            command = [sys.executable, profiler, str(profile), "ingest", "--date", DATE]
        wall, cpu, out = timed_process(command, env=env, cwd=home)
        summary = json.loads(out.strip().splitlines()[-1])
        if summary["documents_count"] != 2 * len(urls) or summary["status"] != "success":
            raise RuntimeError(f"ingest did not collect every item: {summary}")
        return wall, cpu
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _plain(
    urls: list[str], concurrency: int, per_host: int, *, polite: bool = False
) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(urls, fh)
    try:
        command = [sys.executable, str(HERE / "plain_scrapy.py"), fh.name, str(concurrency)]
        wall, cpu, out = timed_process([*command, str(per_host), *(["polite"] if polite else [])])
        if int(out.strip() or 0) != 2 * len(urls):
            raise RuntimeError(f"plain Scrapy got {out.strip()} items, not {2 * len(urls)}")
        return wall, cpu
    finally:
        os.unlink(fh.name)


def bench_fanout(
    rounds: int, sizes: tuple[int, ...] = (40, 200), hosts: int = 10, delay: float = 0.2
) -> list[dict[str, Any]]:
    """The fan-out rows: ours, plain Scrapy and the ideal, per N."""
    concurrency, per_host = 20, 2
    server = DelayServer(hosts, delay)
    rows = []
    try:
        for n in sizes:
            urls = server.urls(n)
            ours, plain, polite, most = [], [], [], {"ours": 0, "scrapy": 0, "polite": 0}
            for _ in range(rounds):
                ours.append(_ours(urls, concurrency))
                most["ours"] = max(most["ours"], *server.stats()["most"].values())
                plain.append(_plain(urls, concurrency, per_host))
                most["scrapy"] = max(most["scrapy"], *server.stats()["most"].values())
                polite.append(_plain(urls, concurrency, per_host, polite=True))
                most["polite"] = max(most["polite"], *server.stats()["most"].values())
            ideal = delay * math.ceil(n / concurrency)
            ours_wall = statistics.median(w for w, _ in ours)
            ours_cpu = statistics.median(c for _, c in ours)
            plain_wall = statistics.median(w for w, _ in plain)
            plain_cpu = statistics.median(c for _, c in plain)
            polite_wall = statistics.median(w for w, _ in polite)
            polite_cpu = statistics.median(c for _, c in polite)
            rows.append(
                {
                    "benchmark": f"fan-out N={n} H={hosts} concurrency={concurrency} "
                    f"delay={delay * 1000:.0f}ms",
                    "ours_wall_s": round(ours_wall, 3),
                    "ours_cpu_s": round(ours_cpu, 3),
                    "scrapy_wall_s": round(plain_wall, 3),
                    "scrapy_cpu_s": round(plain_cpu, 3),
                    "scrapy_polite_wall_s": round(polite_wall, 3),
                    "scrapy_polite_cpu_s": round(polite_cpu, 3),
                    "ideal_wall_s": round(ideal, 3),
                    "wall_ours_over_scrapy": round(ours_wall / plain_wall, 2),
                    "cpu_ours_over_scrapy": round(ours_cpu / plain_cpu, 2),
                    "wall_ours_over_ideal": round(ours_wall / ideal, 2),
                    "wall_ours_over_polite_scrapy": round(ours_wall / polite_wall, 2),
                    "cpu_ours_over_polite_scrapy": round(ours_cpu / polite_cpu, 2),
                    "most_at_once_per_host": most,
                }
            )
    finally:
        server.close()
    return rows


def profile_parent(n: int = 200, hosts: int = 10, delay: float = 0.2) -> dict[str, Any]:
    """
    Where the ingest process itself (not its crawl process) spends CPU at *n*
    sources: cProfile with a CPU timer, cumulative seconds of the main steps
    on the main thread (the sources' threads are not profiled).
    """
    import pstats

    server = DelayServer(hosts, delay)
    out = Path(tempfile.mkdtemp(prefix="bench-prof-")) / "ingest.prof"
    cpu = out.with_suffix(".json")
    try:
        _, total_cpu = _ours(server.urls(n), 20, profile=cpu)
        _ours(server.urls(n), 20, profile=out)
    finally:
        server.close()
    parent_cpu = json.loads(cpu.read_text())["process_cpu_s"]
    stats = pstats.Stats(str(out))
    wanted = {
        "ingest CLI (main)": ("cli.py", "main"),
        "journal writes (JournalStore.save)": ("ingest/journals.py", "save"),
        "journal serialisation (journal_bytes)": ("ingest/journals.py", "journal_bytes"),
        "source outcomes recorded (_record)": ("ingest/sources.py", "_record"),
        "enrichment (process)": ("local/executor.py", "process"),
        "Gold publish (publish_gold)": ("ingest/publish.py", "publish_gold"),
        "imports (_find_and_load)": ("<frozen importlib._bootstrap>", "_find_and_load"),
    }
    raw = stats.stats  # type: ignore[attr-defined]
    found: dict[str, Any] = {
        "benchmark": f"parent CPU profile N={n}",
        "total_cpu_s (ingest + crawl process)": round(total_cpu, 3),
        "parent_cpu_s (ingest process, every thread, no profiler)": round(parent_cpu, 3),
        "profiled main thread below (cProfile CPU timer, its overhead included)": True,
    }
    for label, (file_end, func) in wanted.items():
        for (file, _line, name), (_cc, calls, _tt, cumulative, _callers) in raw.items():
            if name == func and file.endswith(file_end):
                found[label] = {"calls": calls, "cpu_s": round(cumulative, 3)}
                break
    shutil.rmtree(out.parent, ignore_errors=True)
    return found


def compile_package() -> None:
    """Write the package's bytecode, as ``pip install`` of a wheel does."""
    import atlasreg_cursor

    compileall.compile_dir(Path(atlasreg_cursor.__file__).parent, quiet=1)


def bench_help(rounds: int) -> list[dict[str, Any]]:
    """``atlasreg-cursor --help`` against ``python -c 'import argparse'``."""
    ours, bare = [], []
    for _ in range(rounds):
        ours.append(timed_process([str(CLI), "--help"])[:2])
        bare.append(timed_process([sys.executable, "-c", "import argparse"])[:2])
    ours_wall = statistics.median(w for w, _ in ours)
    bare_wall = statistics.median(w for w, _ in bare)
    return [
        {
            "benchmark": "atlasreg-cursor --help vs python -c 'import argparse'",
            "ours_s": round(ours_wall, 4),
            "baseline_s": round(bare_wall, 4),
            "ratio": round(ours_wall / bare_wall, 2),
            "cpu_ratio": round(
                statistics.median(c for _, c in ours) / statistics.median(c for _, c in bare), 2
            ),
        }
    ]


if __name__ == "__main__":
    compile_package()
    for row in [*bench_help(15), *bench_fanout(3), profile_parent()]:
        print(json.dumps(row))
