"""One Scrapy crawl in its own process (the Twisted reactor cannot restart).

Usage: ``python -m atlasreg_cursor.adapters.local.spider_runner SPEC.json OUT_DIR``.

``SPEC.json`` says what to crawl:

- ``{"kind": "newsroom", "url", "selectors": {item, title, url, date, summary,
  next_page}, "max_pages"}`` — the generic newsroom spider (CSS selectors in
  Scrapy syntax; relative URLs made absolute; ``next_page`` followed up to
  ``max_pages`` pages);
- ``{"kind": "api", "url", "api": {items_path, fields, next_path}, "max_pages"}``
  — the generic JSON-API spider (dotted paths; ``fields`` maps item field to
  the path inside each element);
- ``{"kind": "project", "spider", "spider_args", "fallback"}`` — a spider of the
  Scrapy project in the working directory (its ``scrapy.cfg`` or
  ``SCRAPY_SETTINGS_MODULE``), with its settings; when the project has no
  such spider, ``fallback`` (a generic spec) runs instead, if given.

Every spec may carry ``source_id``, ``allow_private`` (when false each
request's host is checked by the SSRF guard), ``download_timeout`` and extra
``settings``. The process writes ``OUT_DIR/items.jsonl`` as items are scraped
and ``OUT_DIR/stats.json``: ``{"spider", "stats", "errors", "http_errors",
"runner_error"}``. The exit code is 0 whenever a crawl ran (judge by the
stats), 2 for an unusable spec, 3 when the spider could not start.

When started by ``run_crawl`` (``ATLASREG_CRAWL_PARENT`` names the parent and
the runner leads its own process group), the crawl kills its group as soon as
the parent process is gone.

Settings read: ``SCRAPY_SETTINGS_MODULE`` (through Scrapy, for project spiders).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse

from atlasreg_cursor.adapters._netguard import check_source_url
from atlasreg_cursor.adapters.core.scrapy import (
    FORBIDDEN_STAT,
    ITEMS_FILE,
    PARENT_PID_ENV,
    STATS_FILE,
)
from atlasreg_cursor.domain.errors import SourceFailed

DEFAULT_MAX_PAGES = 10
MAX_PAGES_CAP = 200
MAX_RECORDED_ERRORS = 10
EXIT_BAD_SPEC = 2
EXIT_NOT_STARTED = 3
_NEWSROOM_FIELDS = ("title", "date", "summary", "player_id", "document_id")
_DEFAULT_API_FIELDS = {"title": "title", "url": "url", "date": "date", "summary": "summary"}


class SpiderNotFound(Exception):
    """Raised when a project has no spider of the name asked for."""


def _user_agent() -> str:
    try:
        version = metadata.version("atlasreg-cursor")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"atlasreg-cursor/{version} (regulatory news monitor)"


def base_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Settings every crawl gets (project spiders keep their own otherwise)."""
    values: dict[str, Any] = {
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
        "DOWNLOAD_TIMEOUT": float(spec.get("download_timeout") or 60.0),
    }
    if not spec.get("allow_private", False):
        values["DOWNLOADER_MIDDLEWARES"] = {f"{__name__}.GuardMiddleware": 50}
    return values


def generic_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Settings of the built-in spiders: fast, polite enough, no robots.txt."""
    return {
        **base_settings(spec),
        "ROBOTSTXT_OBEY": False,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "RETRY_TIMES": 1,
        "CONCURRENT_REQUESTS": 8,
        "DOWNLOAD_MAXSIZE": 20 * 2**20,
        "USER_AGENT": _user_agent(),
        **dict(spec.get("settings") or {}),
    }


class GuardMiddleware:
    """Downloader middleware: drop requests to non-public addresses.

    The first refusal is kept in the stats as ``atlasreg/forbidden_address``.
    """

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GuardMiddleware:
        """Build the middleware with the crawler's stats."""
        return cls(crawler.stats)

    def process_request(self, request: scrapy.Request, spider: Any = None) -> None:
        """Raise ``IgnoreRequest`` when the request's host is not public."""
        try:
            check_source_url(request.url, allow_private=False)
        except SourceFailed as exc:
            if self.stats is not None and not self.stats.get_value(FORBIDDEN_STAT):
                self.stats.set_value(FORBIDDEN_STAT, str(exc))
            raise IgnoreRequest(f"{exc.error_type}: {exc}") from None


def _text(node: Any, css: str | None) -> str | None:
    if not css:
        return None
    parts = [" ".join(value.split()) for value in node.css(css).getall()]
    joined = " ".join(part for part in parts if part)
    return joined or None


def _dig(data: Any, path: str) -> Any:
    """Follow a dotted path (``data.items``, ``results.0``) into JSON data."""
    current = data
    for key in (p for p in path.split(".") if p):
        if isinstance(current, Mapping):
            current = current.get(key)
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return None
    return current


def _max_pages(value: Any) -> int:
    try:
        pages = int(value)
    except (TypeError, ValueError):
        return DEFAULT_MAX_PAGES
    return max(1, min(pages, MAX_PAGES_CAP))


class NewsroomSpider(scrapy.Spider):
    """A listing page of items picked by CSS selectors, with pagination."""

    name = "atlasreg_newsroom"

    def __init__(self, *, url: str, selectors: Mapping[str, str], max_pages: Any = None) -> None:
        super().__init__()
        if not selectors.get("item"):
            raise ValueError("selectors need an 'item' selector")
        self.url = url
        self.selectors = dict(selectors)
        self.max_pages = _max_pages(max_pages)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Request the listing's first page."""
        yield scrapy.Request(self.url, callback=self.parse_page, cb_kwargs={"page": 1})

    def parse_page(self, response: Response, page: int) -> Iterator[Any]:
        """Yield one item per ``item`` node, then follow ``next_page``."""
        if not isinstance(response, TextResponse):
            raise ValueError(f"{response.url} is not a text page")
        for node in response.css(self.selectors["item"]):
            item = {f: _text(node, self.selectors.get(f)) for f in _NEWSROOM_FIELDS}
            url_css = self.selectors.get("url")
            link = node.css(url_css).get(default="").strip() if url_css else ""
            item["url"] = response.urljoin(link) if link else None
            if item.get("title") or item.get("url"):
                yield {k: v for k, v in item.items() if v is not None}
        next_css = self.selectors.get("next_page")
        if next_css and page < self.max_pages:
            link = response.css(next_css).get(default="").strip()
            if link:
                yield response.follow(link, callback=self.parse_page, cb_kwargs={"page": page + 1})


class JsonApiSpider(scrapy.Spider):
    """A JSON API whose items sit at a dotted path, optionally paginated."""

    name = "atlasreg_json_api"

    def __init__(self, *, url: str, api: Mapping[str, Any], max_pages: Any = None) -> None:
        super().__init__()
        self.url = url
        self.items_path = str(api.get("items_path") or "")
        self.fields = dict(api.get("fields") or _DEFAULT_API_FIELDS)
        self.next_path = api.get("next_path")
        self.max_pages = _max_pages(max_pages)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Request the API's first page."""
        yield scrapy.Request(
            self.url,
            headers={"Accept": "application/json"},
            callback=self.parse_api,
            cb_kwargs={"page": 1},
        )

    def parse_api(self, response: Response, page: int) -> Iterator[Any]:
        """Yield one item per element of ``items_path``; follow ``next_path``."""
        try:
            data = json.loads(response.body)
        except ValueError as exc:
            raise ValueError(f"{response.url} did not answer JSON: {exc}") from None
        elements = _dig(data, self.items_path) if self.items_path else data
        if not isinstance(elements, list):
            raise ValueError(f"items_path {self.items_path!r} does not lead to a list")
        for element in elements:
            if not isinstance(element, Mapping):
                continue
            item = {field: _dig(element, str(path)) for field, path in self.fields.items()}
            item = {k: v for k, v in item.items() if v is not None}
            if isinstance(item.get("url"), str) and item["url"].strip():
                item["url"] = response.urljoin(item["url"].strip())
            yield item
        if self.next_path and page < self.max_pages:
            link = _dig(data, str(self.next_path))
            if isinstance(link, str) and link.strip():
                yield response.follow(
                    link.strip(),
                    headers={"Accept": "application/json"},
                    callback=self.parse_api,
                    cb_kwargs={"page": page + 1},
                )


GENERIC_SPIDERS: dict[str, type[scrapy.Spider]] = {
    "newsroom": NewsroomSpider,
    "api": JsonApiSpider,
}


class _Recorder:
    """Collects items (written as they come), errors and HTTP failures."""

    def __init__(self, out_dir: Path) -> None:
        self.items_path = out_dir / ITEMS_FILE
        self._items = self.items_path.open("w", encoding="utf-8")
        self.errors: list[str] = []
        self.http_errors: list[str] = []

    def attach(self, crawler: Crawler) -> None:
        crawler.signals.connect(self.on_item, signal=signals.item_scraped)
        crawler.signals.connect(self.on_error, signal=signals.spider_error)
        crawler.signals.connect(self.on_response, signal=signals.response_received)

    def on_item(self, item: Any, **_: Any) -> None:
        from itemadapter import ItemAdapter

        data = ItemAdapter(item).asdict() if ItemAdapter.is_item(item) else {"value": item}
        self._items.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
        self._items.flush()

    def on_error(self, failure: Any, response: Any = None, **_: Any) -> None:
        where = f" ({response.url})" if response is not None else ""
        self.error(f"{type(failure.value).__name__}: {failure.value}{where}")

    def on_response(self, response: Response, **_: Any) -> None:
        if response.status >= 400 and len(self.http_errors) < MAX_RECORDED_ERRORS:
            self.http_errors.append(f"HTTP {response.status} from {response.url}")

    def error(self, message: str) -> None:
        if len(self.errors) < MAX_RECORDED_ERRORS:
            self.errors.append(message[:500])

    def close(self) -> None:
        self._items.close()


def _write_stats(out_dir: Path, payload: Mapping[str, Any]) -> None:
    tmp = out_dir / (STATS_FILE + ".tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, default=str), encoding="utf-8")
    tmp.replace(out_dir / STATS_FILE)


_Plan = tuple[CrawlerProcess, str | type[scrapy.Spider], dict[str, Any]]


def _plan(spec: Mapping[str, Any]) -> _Plan:
    """Return the process, the spider (name or class) and its arguments."""
    kind = spec.get("kind")
    if kind == "project":
        from scrapy.utils.project import get_project_settings

        settings = get_project_settings()
        settings.setdict(base_settings(spec), priority="cmdline")
        settings.setdict(dict(spec.get("settings") or {}), priority="cmdline")
        process = CrawlerProcess(settings)
        name = str(spec.get("spider") or "")
        if name in process.spider_loader.list():
            spider_args = {str(k): str(v) for k, v in (spec.get("spider_args") or {}).items()}
            return process, name, spider_args
        fallback = spec.get("fallback")
        if not isinstance(fallback, Mapping):
            raise SpiderNotFound(f"spider {name!r} not found in the Scrapy project")
        spec = {**spec, **fallback}
        kind = spec.get("kind")
    spider = GENERIC_SPIDERS.get(str(kind))
    if spider is None:
        raise ValueError(f"unknown crawl kind {kind!r}")
    args: dict[str, Any] = {"url": spec["url"], "max_pages": spec.get("max_pages")}
    if spider is NewsroomSpider:
        args["selectors"] = dict(spec.get("selectors") or {})
    else:
        args["api"] = dict(spec.get("api") or {})
    return CrawlerProcess(generic_settings(spec)), spider, args


def _stats_of(crawler: Crawler) -> dict[str, Any]:
    try:
        stats = crawler.stats
    except RuntimeError:  # the crawl never started
        return {}
    return dict(stats.get_stats()) if stats is not None else {}


def run(spec: Mapping[str, Any], out_dir: Path) -> int:
    """
    Run the crawl *spec* describes; write items and stats into *out_dir*.

    Returns:
        The process exit code (0 when a crawl ran, whatever its outcome).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(out_dir)
    result: dict[str, Any] = {"spider": None, "stats": {}, "errors": [], "http_errors": []}
    code = 0
    try:
        try:
            process, spider, args = _plan(spec)
            crawler = process.create_crawler(spider)
        except SpiderNotFound as exc:
            result["runner_error"] = str(exc)
            return EXIT_NOT_STARTED
        except (KeyError, TypeError, ValueError) as exc:
            result["runner_error"] = f"unusable crawl spec: {exc}"
            return EXIT_BAD_SPEC
        except Exception as exc:  # the project's own modules failed to load
            result["runner_error"] = f"cannot load the spider: {type(exc).__name__}: {exc}"
            return EXIT_NOT_STARTED
        result["spider"] = crawler.spidercls.name
        recorder.attach(crawler)
        failures: list[str] = []

        def _failed(failure: Any) -> None:
            failures.append(f"{type(failure.value).__name__}: {failure.value}")

        process.crawl(crawler, **args).addErrback(_failed)
        process.start()
        if failures:
            result["runner_error"] = f"spider {result['spider']!r} failed: {failures[0]}"
            code = EXIT_NOT_STARTED
        result["stats"] = _stats_of(crawler)
        return code
    finally:
        recorder.close()
        result["errors"] = recorder.errors
        result["http_errors"] = recorder.http_errors
        _write_stats(out_dir, result)


def watch_parent(parent: int, *, interval: float = 0.5) -> None:
    """
    Kill this crawl's whole process group once *parent* is gone.

    The crawl runs in a session of its own, so signals sent to the parent's
    group never reach it; this keeps a crawl from outliving its orchestrator.
    """

    def _loop() -> None:
        while True:
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            time.sleep(interval)

    threading.Thread(target=_loop, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``spider_runner SPEC.json OUT_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: spider_runner SPEC.json OUT_DIR", file=sys.stderr)
        return EXIT_BAD_SPEC
    parent = os.environ.get(PARENT_PID_ENV, "")
    if parent.isdigit() and os.getpgrp() == os.getpid():
        watch_parent(int(parent))
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    return run(spec, Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
