"""The generic newsroom and JSON-API sources: one spider serving them all.

:class:`SourcesSpider` runs in one crawler for the whole run, so all generic
sources share its downloader (per-host slots, delays, robots.txt cache,
AutoThrottle). Each request carries its source's key in ``meta``. A source
counts its outstanding requests: one is added for each request the spider
makes, and one is taken away when that request's callback or errback has
run (a retry or a redirect replaces its request and keeps the count). At
zero the source is done; at its deadline (or when the parent cancels it) it
is done too: its queued requests are dropped and its transfers in progress
aborted, as they are when it yields more items than its ``max_items`` (the
report then says ``too_many_items``).

A JSON API page is read by :func:`api_page` with the strict JSON parser
(:func:`~atlasreg_cursor.adapters.http.parse_json`): no ``NaN`` or
``Infinity``, finite numbers, bounded nesting.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure

from atlasreg_cursor.adapters.core.crawl_process import FORBIDDEN_STAT, INVALID_URL_STAT
from atlasreg_cursor.adapters.http import parse_json, safe_url

from . import middlewares
from .downloader import PoliteDownloader
from .middlewares import DEADLINE_META, GATE_DROPPED, GUARD_PREFIX, SOURCE_META
from .report import SourceReport

DEFAULT_MAX_PAGES = 10
MAX_PAGES_CAP = 200
NEWSROOM_FIELDS = ("title", "date", "summary", "player_id", "document_id")
DEFAULT_API_FIELDS = {"title": "title", "url": "url", "date": "date", "summary": "summary"}
MAX_JSON_DEPTH = 64
_STATUS_STAT = "downloader/response_status_count/"
_EXCEPTION_STAT = "downloader/exception_type_count/"


def text_of(node: Any, css: str | None) -> str | None:
    """The whitespace-normalised text *css* selects in *node*, or ``None``."""
    if not css:
        return None
    parts = [" ".join(value.split()) for value in node.css(css).getall()]
    joined = " ".join(part for part in parts if part)
    return joined or None


def dig(data: Any, path: str) -> Any:
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


def join_url(base: str, link: str) -> str | None:
    """*link* made absolute against *base*; ``None`` when it is no URL (``//[x``): one
    bad link costs its item its URL, never the rest of the page."""
    try:
        return urllib.parse.urljoin(base, link)
    except ValueError:
        return None


def _page_join(response: Response, link: str) -> str | None:
    """Like ``response.urljoin`` (the page's ``<base>`` included); ``None`` for no URL."""
    try:
        return response.urljoin(link)
    except ValueError:
        return None


def api_page(
    body: bytes,
    url: str,
    *,
    items_path: str,
    fields: Mapping[str, Any],
    next_path: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """
    One JSON API page as items and the absolute URL of the next page.

    Args:
        body: the page's bytes, parsed as strict JSON.
        url: the page's URL (relative item and next-page URLs are joined to it).
        items_path: dotted path to the list of elements (the root when empty).
        fields: item field -> dotted path inside each element.
        next_path: dotted path to the next page's URL (``None``: no paging).

    Raises:
        SourceFailed: ``parse_error`` (not strict UTF-8 JSON at most
            :data:`MAX_JSON_DEPTH` deep).
        ValueError: *items_path* does not lead to a list.
    """
    data = parse_json(body, max_depth=MAX_JSON_DEPTH, origin=safe_url(url))
    elements = dig(data, items_path) if items_path else data
    if not isinstance(elements, list):
        raise ValueError(f"items_path {items_path!r} does not lead to a list")
    items = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        item = {field: dig(element, str(path)) for field, path in fields.items()}
        item = {k: v for k, v in item.items() if v is not None}
        if isinstance(item.get("url"), str) and item["url"].strip():
            joined = join_url(url, item["url"].strip())
            if joined is None:
                del item["url"]
            else:
                item["url"] = joined
        items.append(item)
    link = dig(data, next_path) if next_path else None
    if isinstance(link, str) and link.strip():
        return items, join_url(url, link.strip())
    return items, None


def max_pages(value: Any) -> int:
    """``max_pages`` of a source, bounded (default 10)."""
    try:
        pages = int(value)
    except (TypeError, ValueError):
        return DEFAULT_MAX_PAGES
    return max(1, min(pages, MAX_PAGES_CAP))


@attrs.define(kw_only=True, eq=False)
class GenericSource:
    """One generic source being crawled by :class:`SourcesSpider`."""

    key: str
    kind: str
    url: str
    deadline: float
    report: SourceReport
    pages: int = DEFAULT_MAX_PAGES
    selectors: dict[str, str] = attrs.field(factory=dict)
    items_path: str = ""
    fields: dict[str, Any] = attrs.field(factory=lambda: dict(DEFAULT_API_FIELDS))
    next_path: str | None = None
    meta: dict[str, Any] = attrs.field(factory=dict)
    headers: dict[str, str] = attrs.field(factory=dict)
    host_concurrency: int | None = None
    host_delay: float | None = None
    outstanding: int = 0
    finished: bool = False
    seen: set[str] = attrs.field(factory=set)


def generic_source(
    key: str,
    spec: Mapping[str, Any],
    *,
    deadline: float,
    report: SourceReport,
    policy: Mapping[str, Any],
) -> GenericSource:
    """
    Build a :class:`GenericSource` from a ``newsroom`` or ``api`` spec.

    Raises:
        ValueError: the spec cannot be crawled (unknown kind, no ``item`` selector…).
    """
    kind = spec.get("kind")
    if kind not in ("newsroom", "api"):
        raise ValueError(f"unknown crawl kind {kind!r}")
    url = spec.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("the spec has no url")
    options = dict(spec.get("crawl") or {})
    agent = str(options.get("user_agent") or policy["user_agent"])
    source = GenericSource(
        key=key,
        kind=str(kind),
        url=url,
        deadline=deadline,
        report=report,
        pages=max_pages(spec.get("max_pages")),
        meta={
            SOURCE_META: key,
            DEADLINE_META: deadline,
            "dont_obey_robotstxt": not bool(options.get("obey_robots", policy["obey_robots"])),
            "max_retry_times": int(options.get("retry_times", policy["retry_times"])),
            "autothrottle_dont_adjust_delay": not bool(
                options.get("autothrottle", policy["autothrottle"])
            ),
            "download_timeout": float(spec.get("download_timeout") or 60.0),
        },
        headers={"User-Agent": agent},
        host_concurrency=options.get("max_per_host"),
        host_delay=options.get("download_delay"),
    )
    if kind == "newsroom":
        selectors = {str(k): str(v) for k, v in dict(spec.get("selectors") or {}).items()}
        if not selectors.get("item"):
            raise ValueError("selectors need an 'item' selector")
        source.selectors = selectors
    else:
        api = dict(spec.get("api") or {})
        source.items_path = str(api.get("items_path") or "")
        source.fields = dict(api.get("fields") or DEFAULT_API_FIELDS)
        source.next_path = str(api["next_path"]) if api.get("next_path") else None
        source.headers["Accept"] = "application/json"
    return source


class SourcesSpider(scrapy.Spider):
    """
    The one spider of the generic sources (see the module docstring).

    Args:
        on_done: called once per source when it is done (``timed_out`` tells why).
    """

    name = "atlasreg_sources"

    def __init__(self, *, on_done: Callable[[GenericSource, bool], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_done = on_done
        self._sources: dict[str, GenericSource] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SourcesSpider:
        """Build the spider; keep it open while idle; count answers per source (retries too)."""
        spider = super().from_crawler(crawler, *args, **kwargs)
        assert isinstance(spider, SourcesSpider)
        crawler.signals.connect(spider._keep_open, signal=signals.spider_idle)
        crawler.signals.connect(spider._on_response, signal=signals.response_downloaded)
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Nothing at first: sources arrive through :meth:`add`."""
        nothing: tuple[scrapy.Request, ...] = ()
        for request in nothing:  # an (empty) async generator, as Scrapy wants
            yield request

    def _keep_open(self) -> None:
        raise DontCloseSpider

    # --- sources ----------------------------------------------------------------

    def add(self, source: GenericSource) -> None:
        """Start crawling *source* (its first page)."""
        self._sources[source.key] = source
        self._apply_host_options(source)
        self._follow(source, source.url, page=1)
        if source.outstanding == 0:
            self._finish(source, timed_out=False)

    def unfinished(self) -> list[GenericSource]:
        """The sources not done yet."""
        return [s for s in self._sources.values() if not s.finished]

    def remaining(self, key: str) -> float | None:
        """Seconds left to source *key*, or ``None`` when it is done."""
        source = self._sources.get(key)
        if source is None or source.finished:
            return None
        return max(0.0, source.deadline - time.monotonic())

    def expire(self, key: str) -> None:
        """Source *key* ran out of time (or was cancelled): report it, drop its requests."""
        source = self._sources.get(key)
        if source is None or source.finished:
            return
        self._finish(source, timed_out=True)
        self._drop(key)

    def _follow(self, source: GenericSource, url: str, *, page: int) -> None:
        if url in source.seen or source.report.overflowed:
            return
        source.seen.add(url)
        try:
            request = scrapy.Request(
                url,
                callback=self.parse_page,
                errback=self.failed,
                headers=dict(source.headers),
                meta=dict(source.meta),
                cb_kwargs={"page": page},
                dont_filter=True,  # sources may share URLs; each dedups its own pages
            )
        except ValueError as exc:
            source.report.error(f"cannot request {url!r}: {exc}")
            return
        source.outstanding += 1
        self.crawler.engine.crawl(request)

    def _request_done(self, key: str | None) -> None:
        source = self._sources.get(str(key))
        if source is None:
            return
        source.outstanding -= 1
        if source.outstanding > 0:
            return
        if not source.finished:
            self._finish(source, timed_out=False)
        self._sources.pop(source.key, None)

    def _finish(self, source: GenericSource, *, timed_out: bool) -> None:
        source.finished = True
        if source.outstanding <= 0:
            self._sources.pop(source.key, None)
        self._on_done(source, timed_out)

    def _apply_host_options(self, source: GenericSource) -> None:
        """A source's own per-host limit and delay: the most polite value wins."""
        if source.host_concurrency is None and source.host_delay is None:
            return
        host = urllib.parse.urlsplit(source.url).hostname or ""
        downloader = self.crawler.engine.downloader
        wanted = dict(downloader.per_slot_settings.get(host, {}))
        if source.host_concurrency is not None:
            current = int(wanted.get("concurrency", downloader.domain_concurrency))
            wanted["concurrency"] = min(current, int(source.host_concurrency))
        if source.host_delay is not None:
            wanted["delay"] = max(float(wanted.get("delay", 0.0)), float(source.host_delay))
        downloader.per_slot_settings[host] = wanted
        slot = downloader.slots.get(host)
        if slot is not None:
            slot.concurrency = int(wanted.get("concurrency", slot.concurrency))
            slot.delay = max(slot.delay, float(wanted.get("delay", 0.0)))

    def _drop(self, key: str) -> None:
        """Fail the source's requests waiting in a downloader slot (never sent); abort
        its transfers in progress, so their hosts' places are free at once."""
        downloader = self.crawler.engine.downloader
        for slot in list(downloader.slots.values()):
            queued = [(r, d) for r, d in slot.queue if r.meta.get(SOURCE_META) == key]
            for entry in queued:
                slot.queue.remove(entry)
                entry[1].errback(Failure(IgnoreRequest(GATE_DROPPED)))  # type: ignore[no-untyped-call]
        if isinstance(downloader, PoliteDownloader):
            downloader.abort(lambda request: request.meta.get(SOURCE_META) == key)

    # --- callbacks --------------------------------------------------------------

    def parse_page(self, response: Response, page: int) -> None:
        """Record the page's items and follow its next page."""
        key = response.meta.get(SOURCE_META)
        source = self._sources.get(str(key))
        try:
            if source is not None and not source.finished:
                if source.kind == "newsroom":
                    self._newsroom(source, response, page)
                else:
                    self._api(source, response, page)
                if source.report.overflowed:  # past max_items: stop the source now
                    self._finish(source, timed_out=False)
                    self._drop(source.key)
        except Exception as exc:  # a page the source's config cannot read
            assert source is not None
            source.report.count(f"spider_exceptions/{type(exc).__name__}")
            source.report.error(f"{type(exc).__name__}: {exc} ({response.url})")
        finally:
            self._request_done(key)

    def failed(self, failure: Failure) -> None:
        """Record why a request failed (download error, HTTP error, refusal)."""
        request = getattr(failure, "request", None)
        key = request.meta.get(SOURCE_META) if request is not None else None
        source = self._sources.get(str(key))
        try:
            if source is not None and not source.finished and request is not None:
                _record_failure(source.report, failure, request)
        finally:
            self._request_done(key)

    def _on_response(self, response: Response, request: scrapy.Request) -> None:
        source = self._sources.get(str(request.meta.get(SOURCE_META)))
        if source is None or source.finished:
            return
        source.report.count(f"{_STATUS_STAT}{response.status}")
        if response.status >= 400:
            source.report.http_error(f"HTTP {response.status} from {response.url}")

    def _newsroom(self, source: GenericSource, response: Response, page: int) -> None:
        if not isinstance(response, TextResponse):
            raise ValueError(f"{response.url} is not a text page")
        selectors = source.selectors
        for node in response.css(selectors["item"]):
            item: dict[str, Any] = {f: text_of(node, selectors.get(f)) for f in NEWSROOM_FIELDS}
            url_css = selectors.get("url")
            link = node.css(url_css).get(default="").strip() if url_css else ""
            item["url"] = _page_join(response, link) if link else None
            if item.get("title") or item.get("url"):
                source.report.item({k: v for k, v in item.items() if v is not None})
        next_css = selectors.get("next_page")
        if next_css and page < source.pages:
            link = response.css(next_css).get(default="").strip()
            following = _page_join(response, link) if link else None
            if following:
                self._follow(source, following, page=page + 1)

    def _api(self, source: GenericSource, response: Response, page: int) -> None:
        items, link = api_page(
            response.body,
            response.url,
            items_path=source.items_path,
            fields=source.fields,
            next_path=source.next_path if page < source.pages else None,
        )
        for item in items:
            source.report.item(item)
        if link:
            self._follow(source, link, page=page + 1)


def _record_failure(report: SourceReport, failure: Failure, request: scrapy.Request) -> None:
    value = failure.value
    url = request.url
    if isinstance(value, HttpError):
        return  # counted when the response arrived
    if isinstance(value, IgnoreRequest):
        text = str(value)
        if text == GATE_DROPPED:
            return
        if "robots.txt" in text:
            report.count("robotstxt/forbidden")
            report.robots_refusal(middlewares.robots_refusal(request))
            return
        if text.startswith(GUARD_PREFIX):
            _record_refusal(report, text.removeprefix(GUARD_PREFIX).strip())
            return
        report.error(f"request dropped: {text} ({url})")
        return
    cls = type(value)
    report.count(f"{_EXCEPTION_STAT}{cls.__module__}.{cls.__name__}")
    if isinstance(value, DNSLookupError):
        refusal = middlewares.ADDRESS_BOOK.refusal(urllib.parse.urlsplit(url).hostname or "")
        if refusal is not None:
            _record_refusal(report, refusal)
            return
    report.error(f"{cls.__name__}: {value} ({url})")


def _record_refusal(report: SourceReport, text: str) -> None:
    """``"<error_type>: <message>"`` from the guard, as the source's stat."""
    error_type, _, message = text.partition(": ")
    stat = INVALID_URL_STAT if error_type == "invalid_url" else FORBIDDEN_STAT
    report.stats.setdefault(stat, message or text)
    report.error(message or text)
