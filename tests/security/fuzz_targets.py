"""Fuzz targets: one function per parser, taking raw bytes, asserting its contract.

Each target feeds *data* to a parser that reads untrusted input and checks
what must always hold: only the parser's own typed error is ever raised,
and accepted input satisfies the invariants below. An unexpected exception
or a failed assertion is a finding. The same targets run under hypothesis
(``test_fuzz.py``, every commit) and under atheris (``fuzz_atheris.py``, a
time-bounded coverage-guided pass in CI); the seed corpus is in
``corpus/<target>/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from urllib3.util import parse_url

from atlasreg_cursor.adapters._netguard import vet_url
from atlasreg_cursor.adapters.core.scrapy import MAX_SUMMARY, MAX_TITLE, items_to_documents
from atlasreg_cursor.adapters.local.csv_download import parse_rows
from atlasreg_cursor.adapters.local.spider_runner.spiders import DEFAULT_API_FIELDS, api_page
from atlasreg_cursor.domain.errors import (
    InvalidConfig,
    InvalidMessage,
    SignatureMismatch,
    SourceFailed,
)
from atlasreg_cursor.domain.messages import parse_message
from atlasreg_cursor.domain.signing import WebhookSigner, WebhookVerifier
from atlasreg_cursor.domain.sources import SourceConfig, parse_watchlist_bytes

CORPUS = Path(__file__).parent / "corpus"
NOW = 1_764_000_000
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_SOURCE = SourceConfig(id="fuzz", handler_id="SCRAPY_CVM_API", url_feed="https://x.example/")
_API_URL = "https://api.example/v1/avisos?page=1"
_API_FIELDS = {**DEFAULT_API_FIELDS, "summary": "body.text", "player_id": "player.0"}
_PUBLIC = {"public.test": ["93.184.215.14"], "mixed.test": ["93.184.215.14", "10.0.0.1"]}


def message(data: bytes) -> None:
    """A queue body: a QueueMessage or InvalidMessage, nothing else."""
    try:
        parsed = parse_message(data)
    except InvalidMessage:
        return
    assert parsed.date.isoformat()


def watchlist(data: bytes) -> None:
    """A watchlist: parsed (every number finite, ids whole) or InvalidConfig."""
    try:
        config = parse_watchlist_bytes(data)
    except InvalidConfig:
        return
    for source in config.sources:
        assert 0 < source.timeout_seconds <= 86400
        assert 1 <= source.max_items <= 1_000_000
        assert "\n" not in source.id
        if source.url_feed is not None:
            assert "\\" not in source.url_feed
    assert 1 <= config.global_settings.max_concurrent_sources <= 64


def csv_rows(data: bytes) -> None:
    """A CSV body (first line picks the options): rows, or SourceFailed."""
    head, _, body = data.partition(b"\n")
    options = {"delimiter": chr(head[0] % 128) if head else ",", "encoding": "utf-8"}
    if len(head) > 1 and head[1] % 2:
        options["fields"] = {"title": "title", "url": "url"}
    try:
        rows = parse_rows(body, options, max_rows=200)
    except SourceFailed as exc:
        assert exc.error_type in {"parse_error", "too_many_items"}
        return
    assert len(rows) <= 200
    items_to_documents(rows, _SOURCE)


def api_items(data: bytes) -> None:
    """A JSON API page through ``api_page`` (what the API spider runs), then to Documents."""
    for items_path in ("", "data.items"):
        try:
            items, link = api_page(
                data, _API_URL, items_path=items_path, fields=_API_FIELDS, next_path="data.next"
            )
        except SourceFailed as exc:
            assert "parse_error" == exc.error_type
            return
        except ValueError as exc:
            assert "does not lead to a list" in str(exc)
            continue
        assert link is None or isinstance(link, str)
        assert json.dumps(items, allow_nan=False)  # strict: every number finite
        for document in items_to_documents(items, _SOURCE):
            assert len(document.title) <= MAX_TITLE
            assert len(document.summary) <= MAX_SUMMARY


def webhook(data: bytes) -> None:
    """Webhook headers and body: verified or SignatureMismatch, never another error."""
    parts = data.split(b"\n", 5)
    while len(parts) < 6:
        parts.append(b"")
    wid, ts, sig, legacy, flags, body = parts
    headers = {
        "webhook-id": wid.decode("utf-8", "replace"),
        "webhook-timestamp": ts.decode("utf-8", "replace"),
        "webhook-signature": sig.decode("utf-8", "replace"),
        "X-Signature": legacy.decode("utf-8", "replace"),
    }
    if flags[:1] == b"s":  # a correctly signed request with fuzzed extras
        headers.update(WebhookSigner(SECRET).headers("fuzz-id", body, timestamp=NOW))
    if flags[1:2] == b"d":
        headers = {k: v for k, v in headers.items() if v}
    verifier = WebhookVerifier((SECRET,), accept_legacy=flags[2:3] == b"l")
    try:
        verifier.verify(body, headers, now=NOW)
    except SignatureMismatch:
        return
    assert headers.get("webhook-signature") or headers.get("X-Signature")


def _resolver(host: str, port: int) -> list[str]:
    if host in _PUBLIC:
        return _PUBLIC[host]
    raise OSError(f"{host}: unknown")


def url_guard(data: bytes) -> None:
    """A URL: vetted with invariants the connecting parser agrees with, or SourceFailed."""
    text = data.decode("utf-8", "replace")
    try:
        vetted = vet_url(text, allow_private=False, resolver=_resolver)
    except SourceFailed as exc:
        assert exc.error_type in {"invalid_url", "forbidden_address", "network_error"}
        return
    assert vetted.scheme in {"http", "https"}
    assert "\\" not in vetted.url
    assert vetted.host.isascii()
    assert "@" not in vetted.url.split("//", 1)[1].split("/", 1)[0]
    assert vetted.addresses
    reparsed = parse_url(vetted.url)
    assert vetted.host == (reparsed.host or "").strip("[]")
    assert vetted == vet_url(vetted.url, allow_private=False, resolver=_resolver)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "message": message,
    "watchlist": watchlist,
    "csv_rows": csv_rows,
    "api_items": api_items,
    "webhook": webhook,
    "url_guard": url_guard,
}


def seeds(target: str) -> list[bytes]:
    """The committed seed corpus of *target*."""
    folder = CORPUS / target
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
