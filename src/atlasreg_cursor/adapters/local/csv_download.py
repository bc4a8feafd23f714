"""``DOWNLOAD_CSV`` in local mode: a guarded, streamed, size-capped CSV download.

The source's ``url_feed`` is fetched with the shared
:class:`~atlasreg_cursor.adapters.http.GuardedClient`: every hop (redirects
followed by hand, at most five) passes the URL guard and the connection goes
to the address the guard vetted; the body is streamed with a size cap
(``max_bytes``, 20 MiB by default) and the whole download has a deadline (the
source's ``timeout_seconds``) that a slow-drip server cannot stretch. It is
decoded with the ``csv`` mapping's ``encoding`` (default ``utf-8``, a BOM is
dropped) and parsed with its ``delimiter`` (default ``,``), at most the
source's ``max_items`` rows (50,000 by default). ``fields`` maps Document
fields (``title``, ``url``, ``date``, ``summary``, ``id``, ``player_id``) to
column names; relative links are made absolute against the CSV's URL.
Connection errors, 408, 429 and 5xx answers are retried (stamina) within the
deadline. Error messages never echo the response's content.

Errors (``SourceFailed.error_type``): ``http_error`` (non-2xx), ``too_large``,
``too_many_items``, ``timeout``, ``network_error``, ``invalid_response``,
``parse_error`` (bad encoding, missing column, malformed CSV), plus the URL
guard's ``invalid_url`` / ``forbidden_address``.

Settings read (by the composition root): ``ALLOW_PRIVATE_SOURCES``.
"""

from __future__ import annotations

import codecs
import csv
import io
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import structlog

from atlasreg_cursor.adapters.core.scrapy import items_to_documents
from atlasreg_cursor.adapters.http import GuardedClient, TransientHTTPError, retrying
from atlasreg_cursor.domain.documents import Document
from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.redaction import redact_text
from atlasreg_cursor.domain.sources import DEFAULT_MAX_ITEMS, SourceConfig

log = structlog.get_logger()

DEFAULT_MAX_BYTES = 20 * 2**20
ATTEMPTS = 3
ACCEPT = "text/csv, */*;q=0.5"
_DEFAULT_FIELDS = {"title": "title", "url": "url", "date": "date", "summary": "summary"}


def download_csv(
    source: SourceConfig,
    *,
    client: GuardedClient,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
    user_agent: str | None = None,
) -> tuple[tuple[Document, ...], int]:
    """
    Download and parse the source's CSV.

    Args:
        source: a ``DOWNLOAD_CSV`` source with ``url_feed`` and ``csv``.
        client: the guarded client (it carries ``ALLOW_PRIVATE_SOURCES``).
        max_bytes: refuse bodies larger than this.
        deadline: ``time.monotonic()`` by which the download must be done
            (default: the source's ``timeout_seconds`` from now).
        cancel: set from another thread to stop the download (``cancelled``).
        user_agent: the ``User-Agent`` (the client's otherwise).

    Returns:
        The Documents and the number of data rows read.

    Raises:
        SourceFailed: see the module docstring for the ``error_type`` values.
    """
    if not source.url_feed:
        raise SourceFailed("DOWNLOAD_CSV needs a url_feed", error_type="invalid_config")
    options: Mapping[str, Any] = source.csv or {}
    if deadline is None:
        deadline = time.monotonic() + source.timeout_seconds
    body, final_url = fetch(
        source.url_feed,
        client=client,
        max_bytes=max_bytes,
        deadline=deadline,
        cancel=cancel,
        user_agent=user_agent,
    )
    rows = parse_rows(body, options, max_rows=source.max_items)
    items = [_row_to_item(row, options, final_url) for row in rows]
    log.debug("csv.downloaded", source_id=source.id, size=len(body), rows=len(rows))
    return items_to_documents(items, source), len(rows)


def fetch(
    url: str,
    *,
    client: GuardedClient,
    max_bytes: int,
    deadline: float,
    cancel: threading.Event | None = None,
    user_agent: str | None = None,
) -> tuple[bytes, str]:
    """
    GET *url* through *client*, retrying transient failures within *deadline*.

    Returns:
        The body and the final URL.

    Raises:
        SourceFailed: any failure, transient ones once the retries are spent.
    """
    try:
        got = retrying(
            lambda: client.fetch(
                url,
                deadline=deadline,
                max_bytes=max_bytes,
                accept=ACCEPT,
                cancel=cancel,
                user_agent=user_agent,
            ),
            attempts=ATTEMPTS,
            timeout=max(0.1, deadline - time.monotonic()),
            wait_initial=0.5,
            wait_max=5.0,
        )
    except TransientHTTPError as exc:
        kind = "http_error" if exc.status is not None else "network_error"
        raise SourceFailed(redact_text(exc.reason), error_type=kind) from None
    return got.body, got.url


def parse_rows(
    body: bytes, options: Mapping[str, Any], *, max_rows: int = DEFAULT_MAX_ITEMS
) -> list[dict[str, str]]:
    """
    Decode and parse CSV bytes into rows keyed by column name.

    Messages name the configured columns and positions, never the content.

    Raises:
        SourceFailed: ``parse_error`` for a bad encoding, delimiter or a
            ``fields`` column missing from the header; ``too_many_items``
            past *max_rows* rows.
    """
    encoding = str(options.get("encoding") or "utf-8")
    delimiter = str(options.get("delimiter") or ",")
    try:
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"
        text = body.decode(encoding)
    except LookupError:
        raise SourceFailed(
            f"csv.encoding {encoding[:40]!r} is not a known encoding", error_type="parse_error"
        ) from None
    except UnicodeDecodeError as exc:
        raise SourceFailed(
            f"CSV cannot be decoded as {encoding} (byte {exc.start})", error_type="parse_error"
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
                f"(the header has {len(header)} columns)",
                error_type="parse_error",
            )
        rows: list[dict[str, str]] = []
        for row in reader:
            if len(rows) >= max_rows:
                raise SourceFailed(
                    f"CSV has more than {max_rows} rows (the source's max_items)",
                    error_type="too_many_items",
                )
            rows.append({k: v for k, v in row.items() if isinstance(k, str)})
        return rows
    except csv.Error as exc:
        raise SourceFailed(
            f"malformed CSV at line {reader.line_num}: {exc}", error_type="parse_error"
        ) from None


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
