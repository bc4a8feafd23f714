"""ConfigSource on a Cloudflare Workers KV key (``NEWS_WATCHLIST_CONFIG``).

Reads ``GET .../storage/kv/namespaces/{id}/values/{url-encoded key}``, whose
200 body is the raw stored bytes, through :class:`CachingConfigSource` (TTL
300 s, last good copy served when a fetch fails). A 404 with code 10009 is
``ConfigNotFound``; any other 404 (unknown namespace 10013, no route 7003),
401/403 are configuration errors (``ConfigError``, with a hint naming the
setting); network errors, 429 and 5xx are ``ConfigUnavailable``.

``put_value`` writes a key (multipart ``value`` + ``metadata``, the form the
API documents) for the ``config push`` admin command; ``get_value`` and
``list_keys`` serve ``config show`` and tooling. KV is eventually consistent:
a write can take a minute or more to be seen everywhere.

Settings read (by the composition root): ``CF_KV_NAMESPACE_ID``,
``WATCHLIST_KEY``, and the client's ``CF_*`` settings.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import structlog

from atlasreg_cursor.adapters.config_cache import DEFAULT_TTL_SECONDS, CachingConfigSource
from atlasreg_cursor.domain.errors import ConfigError, ConfigNotFound, ConfigUnavailable
from atlasreg_cursor.domain.sources import BUILTIN_HANDLERS, WatchlistConfig

from ._http import (
    CloudflareAPIError,
    CloudflareClient,
    CloudflareConfigurationError,
    CloudflareUnavailable,
)

log = structlog.get_logger()

DEFAULT_KEY = "NEWS_WATCHLIST_CONFIG"
KEY_NOT_FOUND = 10009
MAX_KEY_BYTES = 512


def quote_key(key: str) -> str:
    """
    Percent-encode a KV key for the URL path.

    Raises:
        ValueError: the key is empty or longer than 512 bytes.
    """
    if not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError("a KV key must have 1 to 512 bytes")
    return urllib.parse.quote(key, safe="")


class KVConfigSource:
    """
    The watchlist from one Workers KV key, cached.

    Args:
        client: the account's API client.
        namespace_id: ``CF_KV_NAMESPACE_ID``.
        key: ``WATCHLIST_KEY``.
        ttl_seconds: how long a fetched config is served without refetching.
        known_handlers: handler ids that make a source valid.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        client: CloudflareClient,
        *,
        namespace_id: str,
        key: str = DEFAULT_KEY,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        known_handlers: Iterable[str] = BUILTIN_HANDLERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not namespace_id or "/" in namespace_id:
            raise ValueError("a KV namespace id is required (CF_KV_NAMESPACE_ID)")
        quote_key(key)
        self._client = client
        self.namespace_id = namespace_id
        self.key = key
        self._cache = CachingConfigSource(
            self.fetch,
            origin=f"kv:{namespace_id}/{key}",
            ttl_seconds=ttl_seconds,
            known_handlers=known_handlers,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"KVConfigSource(namespace_id={self.namespace_id!r}, key={self.key!r})"

    def load(self) -> WatchlistConfig:
        """
        Return the watchlist (cached, or the last good one when a fetch fails).

        Raises:
            ConfigNotFound: the key does not exist and nothing is cached.
            ConfigUnavailable: KV could not be reached and nothing is cached.
            ConfigError: a setting is wrong and nothing is cached.
            InvalidConfig: the value is unusable and nothing is cached.
        """
        return self._cache.load()

    def probe(self) -> WatchlistConfig:
        """
        Fetch and parse the watchlist from its origin, bypassing the cache (readiness).

        Raises:
            ConfigError: the origin cannot be read.
            InvalidConfig: what it holds is not a usable watchlist.
        """
        return self._cache.probe()

    def invalidate(self) -> None:
        """Make the next ``load`` fetch again."""
        self._cache.invalidate()

    def fetch(self) -> bytes:
        """
        Fetch the raw watchlist bytes, uncached.

        Raises:
            ConfigNotFound: the key does not exist.
            ConfigUnavailable: KV could not be reached.
            ConfigError: a setting is wrong.
        """
        value = self.get_value(self.key)
        if value is None:
            raise ConfigNotFound(
                f"key {self.key!r} not found in KV namespace {self.namespace_id!r}"
            )
        return value

    def get_value(self, key: str) -> bytes | None:
        """
        Return the bytes stored at *key*, or ``None`` when it does not exist.

        Raises:
            ConfigUnavailable: KV could not be reached.
            ConfigError: a setting is wrong.
        """
        path = f"{self._base}/values/{quote_key(key)}"
        try:
            response = self._client.request_raw("GET", path)
        except CloudflareAPIError as exc:
            if exc.status == 404 and KEY_NOT_FOUND in exc.codes:
                return None
            raise self._translate(exc, key) from exc
        log.debug("config.kv_fetched", namespace_id=self.namespace_id, key=key)
        return response.data

    def put_value(
        self, key: str, value: bytes, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """
        Store *value* at *key* (overwriting it), with optional JSON *metadata*.

        Raises:
            ConfigUnavailable: KV could not be reached.
            ConfigError: a setting is wrong or the write was refused.
        """
        path = f"{self._base}/values/{quote_key(key)}"
        fields = {
            "value": ("value", value, "application/octet-stream"),
            "metadata": json.dumps(dict(metadata or {}), separators=(",", ":")),
        }
        try:
            self._client.request_raw("PUT", path, fields=fields)
        except CloudflareAPIError as exc:
            raise self._translate(exc, key) from exc
        if key == self.key:
            self._cache.invalidate()
        log.info("config.kv_written", namespace_id=self.namespace_id, key=key, size=len(value))

    def list_keys(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[str]:
        """
        Yield the namespace's key names starting with *prefix*, in order.

        Raises:
            ConfigUnavailable: KV could not be reached.
            ConfigError: a setting is wrong.
        """
        cursor = ""
        while True:
            query: dict[str, str | int] = {"limit": max(10, min(page_size, 1000))}
            if prefix:
                query["prefix"] = prefix
            if cursor:
                query["cursor"] = cursor
            try:
                doc = self._client.request_envelope("GET", f"{self._base}/keys", query=query)
            except CloudflareAPIError as exc:
                raise self._translate(exc, prefix) from exc
            for item in doc.get("result") or []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    yield item["name"]
            info = doc.get("result_info") or {}
            cursor = str(info.get("cursor") or "") if isinstance(info, dict) else ""
            if not cursor:
                return

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    @property
    def _base(self) -> str:
        return f"storage/kv/namespaces/{self.namespace_id}"

    def _translate(self, exc: CloudflareAPIError, key: str) -> ConfigError:
        where = f"KV key {key!r} in namespace {self.namespace_id!r}"
        if isinstance(exc, CloudflareUnavailable):
            return ConfigUnavailable(f"{where}: {exc}")
        if isinstance(exc, CloudflareConfigurationError) or exc.status == 404:
            return ConfigError(f"{where}: configuration error: {exc}")
        return ConfigError(f"{where}: {exc}")
