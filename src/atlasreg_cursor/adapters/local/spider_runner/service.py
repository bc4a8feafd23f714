"""The crawl service of one run's crawl process (see the package docstring)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.settings import Settings
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.log import configure_logging
from scrapy.utils.reactor import install_reactor
from twisted.internet.defer import Deferred, DeferredList

from atlasreg_cursor.adapters.core.crawl_process import (
    DEFAULT_REACTOR_LAG_SECONDS,
    PARENT_PID_ENV,
)

from . import middlewares
from .crawl_settings import generic_settings, project_settings
from .downloader import PoliteDownloader
from .hosts import HOSTS
from .middlewares import ROBOTS_REFUSED, is_robots_txt, robots_refusal
from .report import SourceReport
from .resolver import AddressBook, StubNetwork, VettingResolver
from .spiders import GenericSource, SourcesSpider, generic_source
from .turns import DownloadTurns
from .watchdog import ReactorWatchdog

ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
SHUTDOWN_GRACE_SECONDS = 2.0
Emit = Callable[[dict[str, Any]], None]


class SpiderNotFound(Exception):
    """Raised when a project has no spider of the name asked for."""


class CrawlService:
    """
    Runs the sources the parent sends, all in this process's reactor.

    Args:
        config: the process's config (policy, allow_private, project, scratch).
        emit: sends one event to the parent.
        reactor: the running reactor.
    """

    def __init__(self, config: Mapping[str, Any], emit: Emit, reactor: Any) -> None:
        self.policy = dict(config["policy"])
        self.scratch = Path(config["scratch"])
        self.project = bool(config.get("project"))
        self._emit = _once_per_source(emit)
        self._reactor = reactor
        self._generic: Crawler | None = None
        self._spider: SourcesSpider | None = None
        self._waiting: list[GenericSource] = []
        self._projects: dict[str, tuple[Crawler, SourceReport]] = {}
        self._turns = DownloadTurns(HOSTS, self.policy, self._emit, reactor)
        self._timers: dict[str, Any] = {}
        self._project_base: Settings | None = None
        self._loader: Any = None
        self._stopping = False
        self._files = itertools.count(1)

    # --- commands ---------------------------------------------------------------

    def handle(self, command: Mapping[str, Any]) -> None:
        """Act on one command from the parent."""
        op = command.get("op")
        if op == "shutdown":
            self.shutdown()
        elif op == "crawl":
            key = str(command.get("key"))
            try:
                self._crawl(key, dict(command.get("spec") or {}), float(command["deadline"]))
            except Exception as exc:  # a bad command must fail its source only
                report = SourceReport(key, self.scratch / f"items-{next(self._files)}.jsonl")
                report.runner_error = f"the crawl could not start: {type(exc).__name__}: {exc}"
                self._emit(report.event())
        elif op == "turn":
            self._turns.turn(str(command.get("key")), command)
        elif op == "hold":
            self._turns.hold(str(command.get("key")), command)
        elif op == "release":
            self._turns.release(str(command.get("key")))
        elif op == "cancel":
            self._cancel(str(command.get("key")))

    def _cancel(self, key: str) -> None:
        """The parent gave up on *key*: end it now, as at its deadline (its places are freed)."""
        if key in self._turns:
            self._turns.release(key)
            return
        timer = self._timers.get(key)
        if timer is None:
            return  # done already
        if timer.active():
            timer.cancel()
        if key in self._projects:
            self._expire_project(key)
        else:
            self._expire_generic(key)

    def _crawl(self, key: str, spec: dict[str, Any], deadline: float) -> None:
        report = SourceReport(
            key, self.scratch / f"items-{next(self._files)}.jsonl", max_items=spec.get("max_items")
        )
        if spec.get("kind") == "project":
            try:
                spec = self._start_project(key, spec, deadline, report)
            except SpiderNotFound as exc:
                report.runner_error = str(exc)
                self._emit(report.event())
                return
            except Exception as exc:  # the project's own modules failed to load
                report.runner_error = f"cannot load the spider: {type(exc).__name__}: {exc}"
                self._emit(report.event())
                return
            if not spec:
                return
        try:
            source = generic_source(key, spec, deadline=deadline, report=report, policy=self.policy)
        except (KeyError, TypeError, ValueError) as exc:
            report.runner_error = f"unusable crawl spec: {exc}"
            self._emit(report.event())
            return
        report.spider = SourcesSpider.name
        self._timers[key] = self._reactor.callLater(
            max(0.0, deadline - time.monotonic()), self._expire_generic, key
        )
        if self._spider is None:
            self._waiting.append(source)
            self._open_generic()
        else:
            self._spider.add(source)

    # --- the generic sources ----------------------------------------------------

    def _open_generic(self) -> None:
        if self._generic is not None:
            return
        crawler = Crawler(SourcesSpider, generic_settings(self.policy))
        crawler.signals.connect(self._generic_opened, signal=signals.spider_opened)
        self._generic = crawler
        crawl: Deferred[None] = crawler.crawl(on_done=self._generic_done)
        crawl.addBoth(self._generic_ended)

    def _generic_opened(self, spider: SourcesSpider) -> None:
        self._spider = spider
        waiting, self._waiting = self._waiting, []
        for source in waiting:
            spider.add(source)

    def _generic_ended(self, result: Any) -> None:
        """The shared crawler stopped (it should not): fail its sources; the next starts anew."""
        if self._stopping:
            return
        why = getattr(result, "value", None)
        message = "the crawler of the generic sources stopped" + (
            f": {type(why).__name__}: {why}" if why is not None else ""
        )
        left = [*self._waiting, *(self._spider.unfinished() if self._spider is not None else ())]
        self._generic = self._spider = None
        self._waiting = []
        for source in left:
            source.finished = True
            source.report.runner_error = message
            self._generic_done(source, False)

    def _generic_done(self, source: GenericSource, timed_out: bool) -> None:
        timer = self._timers.pop(source.key, None)
        if timer is not None and timer.active():
            timer.cancel()
        reason = "timeout" if timed_out else "finished"
        stats = {"finish_reason": reason, "item_scraped_count": source.report.items}
        self._emit(source.report.event(stats=stats, timed_out=timed_out))

    def _expire_generic(self, key: str) -> None:
        self._timers.pop(key, None)
        if self._spider is not None:
            self._spider.expire(key)
            return
        for source in [s for s in self._waiting if s.key == key]:
            self._waiting.remove(source)
            self._generic_done(source, True)

    # --- project spiders --------------------------------------------------------

    def _project_loader(self) -> tuple[Settings, Any]:
        if self._project_base is None:
            from scrapy.spiderloader import get_spider_loader
            from scrapy.utils.project import get_project_settings

            self._project_base = get_project_settings()
            self._loader = get_spider_loader(self._project_base)
        return self._project_base, self._loader

    def _start_project(
        self, key: str, spec: dict[str, Any], deadline: float, report: SourceReport
    ) -> dict[str, Any]:
        """Start a project spider; return the fallback spec to run instead, or ``{}``."""
        name = str(spec.get("spider") or "")
        base, loader = self._project_loader()
        if name not in loader.list():
            fallback = spec.get("fallback")
            if not isinstance(fallback, Mapping):
                raise SpiderNotFound(f"spider {name!r} not found in the Scrapy project")
            return {**spec, **fallback}
        crawler = Crawler(loader.load(name), project_settings(base, self.policy, spec, deadline))
        report.spider = name
        _record_project(crawler, report)
        self._projects[key] = (crawler, report)
        args = {str(k): str(v) for k, v in dict(spec.get("spider_args") or {}).items()}
        crawl: Deferred[None] = crawler.crawl(**args)
        crawl.addCallbacks(
            lambda _: self._project_done(key, None),
            lambda failure: self._project_done(
                key, f"spider {name!r} failed: {type(failure.value).__name__}: {failure.value}"
            ),
        )
        self._timers[key] = self._reactor.callLater(
            max(0.0, deadline - time.monotonic()), self._expire_project, key
        )
        return {}

    def _project_done(self, key: str, error: str | None) -> None:
        entry = self._projects.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        if entry is None:
            return  # reported at its deadline
        crawler, report = entry
        if error is not None:
            report.runner_error = error
        self._emit(report.event(stats=_stats_of(crawler)))

    def _expire_project(self, key: str) -> None:
        self._timers.pop(key, None)
        entry = self._projects.pop(key, None)
        if entry is None:
            return
        crawler, report = entry
        self._emit(report.event(stats=_stats_of(crawler), timed_out=True))
        _stop_crawler(crawler)

    # --- a spider blocking the reactor (see .watchdog) -----------------------------

    def culprit(self, frame: FrameType | None) -> tuple[str, str] | None:
        """
        The project source whose code runs in *frame* or its callers, and where.

        A frame belongs to a source when its ``self`` (or ``crawler``) is that
        source's crawler, or an object of it: its spider, pipelines, middlewares.
        A stall inside an import (Scrapy loading its components) names no one.
        """
        crawlers = {id(crawler): key for key, (crawler, _) in list(self._projects.items())}
        where = None
        try:
            while frame is not None:
                code = frame.f_code
                if code.co_filename.startswith("<frozen importlib"):
                    return None
                where = (
                    where or f"{code.co_qualname} ({Path(code.co_filename).name}:{frame.f_lineno})"
                )
                scope = frame.f_locals
                owner = scope.get("self")
                for candidate in (owner, getattr(owner, "crawler", None), scope.get("crawler")):
                    if candidate is not None and id(candidate) in crawlers:
                        return crawlers[id(candidate)], where
                frame = frame.f_back
        except Exception:  # a frame that cannot be read names no one
            return None
        return None

    def fail_blocked(self, key: str, message: str) -> None:
        """Report source *key* failed for blocking the reactor (called from the watchdog)."""
        entry = self._projects.get(key)
        if entry is not None:
            entry[1].runner_error = message
            self._emit(entry[1].event())

    def stop_blocked(self, key: str) -> None:
        """Once the reactor turns again: stop the crawler of the source that blocked it."""
        entry = self._projects.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        if entry is not None:
            _stop_crawler(entry[0])

    # --- the process ------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop: project spiders gracefully (bounded), then exit."""
        if self._stopping:
            return
        self._stopping = True
        crawlers = [crawler for crawler, _ in self._projects.values()]
        if not crawlers:
            _exit(0)
        stops = DeferredList([deferred_from_coro(c.stop_async()) for c in crawlers])
        stops.addBoth(lambda _: _exit(0))
        self._reactor.callLater(SHUTDOWN_GRACE_SECONDS, _exit, 0)

    def parent_gone(self) -> None:
        """The parent closed our stdin without a shutdown: take the whole group down."""
        if not self._stopping:
            _kill_group()


def _record_project(crawler: Crawler, report: SourceReport) -> None:
    """Items, callback errors and HTTP errors of a project spider (stopped past its cap)."""
    from itemadapter import ItemAdapter

    def on_item(item: Any, **_: Any) -> None:
        was_over = report.overflowed
        report.item(ItemAdapter(item).asdict() if ItemAdapter.is_item(item) else {"value": item})
        if report.overflowed and not was_over:
            _stop_crawler(crawler)

    def on_error(failure: Any, response: Any = None, **_: Any) -> None:
        where = f" ({response.url})" if response is not None else ""
        report.error(f"{type(failure.value).__name__}: {failure.value}{where}")

    def on_response(response: Any, request: Any = None, **_: Any) -> None:
        if response.status >= 400 and not (request is not None and is_robots_txt(request)):
            report.http_error(f"HTTP {response.status} from {response.url}")

    def on_robots(request: Any, **_: Any) -> None:
        report.robots_refusal(robots_refusal(request))

    crawler.signals.connect(on_item, signal=signals.item_scraped, weak=False)
    crawler.signals.connect(on_error, signal=signals.spider_error, weak=False)
    crawler.signals.connect(on_response, signal=signals.response_received, weak=False)
    crawler.signals.connect(on_robots, signal=ROBOTS_REFUSED, weak=False)


def _stop_crawler(crawler: Crawler) -> None:
    """Stop a project spider's crawler, its downloads in progress aborted (their places freed)."""
    engine = getattr(crawler, "engine", None)
    downloader = getattr(engine, "downloader", None)
    if isinstance(downloader, PoliteDownloader):
        downloader.abort(lambda request: True)
    deferred_from_coro(crawler.stop_async()).addErrback(lambda _: None)


def _stats_of(crawler: Crawler) -> dict[str, Any]:
    try:
        stats = crawler.stats
    except RuntimeError:  # the crawl never started
        return {}
    return dict(stats.get_stats()) if stats is not None else {}


def _once_per_source(emit: Emit) -> Emit:
    """*emit* from any thread, with at most one ``done`` event per source key."""
    done: set[str] = set()
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        with lock:
            if event.get("event") == "done":
                key = str(event.get("key"))
                if key in done:
                    return
                done.add(key)
            emit(event)

    return send


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _kill_group() -> None:
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def watch_parent(parent: int, *, interval: float = 0.5) -> None:
    """Kill this crawl's whole process group once *parent* is gone."""

    def _loop() -> None:
        while True:
            if os.getppid() != parent:
                _kill_group()
            time.sleep(interval)

    threading.Thread(target=_loop, name="parent-watch", daemon=True).start()


def _writer(fd: int) -> Emit:
    def emit(event: dict[str, Any]) -> None:
        data = json.dumps(event, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    return emit


def _read_commands(reactor: Any, service: CrawlService) -> None:
    for line in sys.stdin.buffer:
        try:
            command = json.loads(line)
        except ValueError:
            continue
        if isinstance(command, dict):
            reactor.callFromThread(service.handle, command)
    reactor.callFromThread(service.parent_gone)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``spider_runner CONFIG.json EVENTS_FD``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: spider_runner CONFIG.json EVENTS_FD", file=sys.stderr)
        return 2
    parent = os.environ.get(PARENT_PID_ENV, "")
    if parent.isdigit() and os.getpgrp() == os.getpid():
        watch_parent(int(parent))
    config = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    emit = _writer(int(args[1]))
    install_reactor(ASYNCIO_REACTOR)
    from twisted.internet import reactor as installed

    reactor: Any = installed
    configure_logging({"LOG_LEVEL": "WARNING"}, install_root_handler=True)
    stub = config.get("stub_network")
    middlewares.ADDRESS_BOOK = AddressBook(
        allow_private=bool(config.get("allow_private")),
        network=StubNetwork.from_config(stub) if isinstance(stub, dict) else None,
    )
    VettingResolver(reactor, middlewares.ADDRESS_BOOK).install()
    service = CrawlService(config, emit, reactor)
    lag = config.get("lag_seconds", DEFAULT_REACTOR_LAG_SECONDS)
    if lag:
        ReactorWatchdog(reactor, service, lag_seconds=float(lag), kill=_kill_group).start()
    threading.Thread(
        target=_read_commands, args=(reactor, service), name="commands", daemon=True
    ).start()
    reactor.callWhenRunning(emit, {"event": "ready", "pid": os.getpid()})
    reactor.run(installSignalHandlers=False)
    return 0
