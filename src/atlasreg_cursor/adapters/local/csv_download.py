"""``DOWNLOAD_CSV`` in local mode: a streamed, size-capped CSV download.

The source's ``url_feed`` is fetched with urllib3 (redirects followed by hand,
at most ``MAX_REDIRECTS``, each hop checked by the SSRF guard), streamed with
a size cap (``max_bytes``, 20 MiB by default) and an overall deadline (the
source's ``timeout_seconds``), decoded with the ``csv`` mapping's
``encoding`` (default ``utf-8``, a BOM is dropped) and parsed with its
``delimiter`` (default ``,``). ``fields`` maps Document fields (``title``,
``url``, ``date``, ``summary``, ``id``, ``player_id``) to column names;
relative links are made absolute against the CSV's URL. Connection errors and
5xx answers are retried (stamina) within the deadline.

Errors (``SourceFailed.error_type``): ``http_error`` (non-2xx), ``too_large``,
``timeout``, ``network_error``, ``parse_error`` (bad encoding, missing column,
malformed CSV), plus the SSRF guard's ``invalid_url`` / ``forbidden_address``.

Settings read (by the composition root): ``ALLOW_PRIVATE_SOURCES``.
"""

from __future__ import annotations

import codecs
import csv
import io
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import stamina
import structlog
import urllib3

from atlasreg_cursor.adapters._netguard import check_source_url
from atlasreg_cursor.adapters.core.scrapy import items_to_documents
from atlasreg_cursor.domain.documents import Document
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.sources import SourceConfig

log = structlog.get_logger()

DEFAULT_MAX_BYTES = 20 * 2**20
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_FIELDS = {"title": "title", "url": "url", "date": "date", "summary": "summary"}


class _Transient(Exception):
    """A failure worth another attempt (connection error, 5xx, 408, 429)."""

    def __init__(self, error: SourceFailed) -> None:
        super().__init__(str(error))
        self.error = error


def download_csv(
    source: SourceConfig,
    *,
    pool: urllib3.PoolManager,
    allow_private: bool,
    max_bytes: int = DEFAULT_MAX_BYTES,
    user_agent: str = "atlasreg-cursor",
) -> tuple[tuple[Document, ...], int]:
    """
    Download and parse the source's CSV.

    Args:
        source: a ``DOWNLOAD_CSV`` source with ``url_feed`` and ``csv``.
        pool: the urllib3 pool to use.
        allow_private: skip the SSRF guard's address check.
        max_bytes: refuse bodies larger than this.
        user_agent: the ``User-Agent`` header.

    Returns:
        The Documents and the number of data rows read.

    Raises:
        SourceFailed: see the module docstring for the ``error_type`` values.
    """
    if not source.url_feed:
        raise SourceFailed("DOWNLOAD_CSV needs a url_feed", error_type="invalid_config")
    options: Mapping[str, Any] = source.csv or {}
    deadline = time.monotonic() + source.timeout_seconds
    body, final_url = _fetch_with_retries(
        source.url_feed,
        pool=pool,
        allow_private=allow_private,
        max_bytes=max_bytes,
        deadline=deadline,
        user_agent=user_agent,
    )
    rows = parse_rows(body, options)
    items = [_row_to_item(row, options, final_url) for row in rows]
    log.debug("csv.downloaded", source_id=source.id, size=len(body), rows=len(rows))
    return items_to_documents(items, source), len(rows)


def _fetch_with_retries(url: str, **kwargs: Any) -> tuple[bytes, str]:
    deadline: float = kwargs["deadline"]
    try:
        for attempt in stamina.retry_context(
            on=_Transient, attempts=3, timeout=max(0.1, deadline - time.monotonic())
        ):
            with attempt:
                return fetch(url, **kwargs)
    except _Transient as exc:
        raise exc.error from None
    raise AssertionError("unreachable")  # pragma: no cover


def fetch(
    url: str,
    *,
    pool: urllib3.PoolManager,
    allow_private: bool,
    max_bytes: int,
    deadline: float,
    user_agent: str,
) -> tuple[bytes, str]:
    """
    GET *url* (following redirects) and return the body and the final URL.

    Raises:
        SourceFailed: for a permanent failure.
        _Transient: for one worth retrying.
    """
    for _hop in range(MAX_REDIRECTS + 1):
        check_source_url(url, allow_private=allow_private)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceFailed(f"download of {url} ran out of time", error_type="timeout")
        try:
            response = pool.request(
                "GET",
                url,
                headers={"User-Agent": user_agent, "Accept": "text/csv, */*;q=0.5"},
                preload_content=False,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=min(10.0, remaining), read=remaining),
            )
        except urllib3.exceptions.TimeoutError as exc:
            raise SourceFailed(
                f"download of {url} timed out: {exc}", error_type="timeout"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise _Transient(
                SourceFailed(f"download of {url} failed: {exc}", error_type="network_error")
            ) from None
        complete = False
        try:
            if response.status in _REDIRECTS and response.headers.get("Location"):
                url = urllib.parse.urljoin(url, response.headers["Location"])
                continue
            _check_status(response, url)
            body = _read_capped(response, url, max_bytes, deadline)
            complete = True
            return body, url
        finally:
            if not complete:
                response.close()  # never reuse a connection with unread bytes
            response.release_conn()
    raise SourceFailed(f"more than {MAX_REDIRECTS} redirects from {url}", error_type="http_error")


def _check_status(response: urllib3.BaseHTTPResponse, url: str) -> None:
    if 200 <= response.status < 300:
        return
    error = SourceFailed(f"HTTP {response.status} from {url}", error_type="http_error")
    if response.status >= 500 or response.status in (408, 429):
        raise _Transient(error)
    raise error


def _read_capped(
    response: urllib3.BaseHTTPResponse, url: str, max_bytes: int, deadline: float
) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SourceFailed(
            f"{url} is {int(declared)} bytes, over the {max_bytes}-byte limit",
            error_type="too_large",
        )
    buffer = bytearray()
    try:
        for chunk in response.stream(CHUNK_BYTES):
            buffer += chunk
            if len(buffer) > max_bytes:
                raise SourceFailed(
                    f"{url} is over the {max_bytes}-byte limit", error_type="too_large"
                )
            if time.monotonic() > deadline:
                raise SourceFailed(f"download of {url} ran out of time", error_type="timeout")
    except urllib3.exceptions.TimeoutError as exc:
        raise SourceFailed(f"download of {url} timed out: {exc}", error_type="timeout") from None
    except urllib3.exceptions.HTTPError as exc:
        raise _Transient(
            SourceFailed(f"download of {url} was cut: {exc}", error_type="network_error")
        ) from None
    return bytes(buffer)


def parse_rows(body: bytes, options: Mapping[str, Any]) -> list[dict[str, str]]:
    """
    Decode and parse CSV bytes into rows keyed by column name.

    Raises:
        SourceFailed: ``parse_error`` for a bad encoding, delimiter or a
            ``fields`` column missing from the header.
    """
    encoding = str(options.get("encoding") or "utf-8")
    delimiter = str(options.get("delimiter") or ",")
    try:
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"
        text = body.decode(encoding)
    except (LookupError, UnicodeDecodeError) as exc:
        raise SourceFailed(
            f"CSV cannot be decoded as {encoding}: {exc}", error_type="parse_error"
        ) from None
    if len(delimiter) != 1:
        raise SourceFailed(
            f"csv.delimiter must be one character, got {delimiter!r}", error_type="parse_error"
        )
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = list(reader.fieldnames or [])
        configured = isinstance(options.get("fields"), Mapping) and bool(options["fields"])
        missing = sorted({c for c in _fields(options).values() if c not in header})
        if missing and configured:
            raise SourceFailed(
                f"CSV header has no column {', '.join(map(repr, missing))} "
                f"(columns: {', '.join(header)})",
                error_type="parse_error",
            )
        return [{k: v for k, v in row.items() if isinstance(k, str)} for row in reader]
    except csv.Error as exc:
        raise SourceFailed(f"malformed CSV: {exc}", error_type="parse_error") from None


def _fields(options: Mapping[str, Any]) -> dict[str, str]:
    fields = options.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        return dict(_DEFAULT_FIELDS)
    return {str(k): str(v) for k, v in fields.items()}


def _row_to_item(row: Mapping[str, Any], options: Mapping[str, Any], base: str) -> dict[str, Any]:
    item = {field: row.get(column) for field, column in _fields(options).items() if column in row}
    link = item.get("url")
    if isinstance(link, str) and link.strip():
        item["url"] = urllib.parse.urljoin(base, link.strip())
    return item
