"""The emulated Workers KV API.

``values/{key}`` GET (raw bytes, not enveloped) and PUT (raw body or
multipart ``value`` + ``metadata``; ``expiration``/``expiration_ttl``),
``metadata/{key}``, ``keys`` (prefix, limit, cursor pagination), served under
``.../storage/kv/namespaces/{namespace_id}/``. An unknown namespace is
404/10013.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
import uuid
from typing import Any

import attrs
from werkzeug.wrappers import Response

from tests.emulator.schema import Exchange
from tests.emulator.server import ApiError, envelope, json_response, no_route

VALUE_LIMIT = 25 * 1024 * 1024


@attrs.define
class KVEntry:
    """One KV value."""

    value: bytes = attrs.field(repr=False)
    metadata: Any = None
    expiration: int | None = None


class KVApi:
    """The KV namespaces of the emulated account, served under ``.../storage/``."""

    auth_code = 10000
    auth_message = "Authentication error"

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[str, KVEntry]] = {}
        self._lock = threading.RLock()

    # --- test hooks ------------------------------------------------------------

    def create_namespace(self, namespace_id: str | None = None) -> str:
        """Create a KV namespace and return its id."""
        namespace_id = namespace_id or uuid.uuid4().hex
        with self._lock:
            self.namespaces[namespace_id] = {}
        return namespace_id

    def get(self, namespace_id: str, key: str) -> bytes | None:
        """The value stored at *key*, or ``None``."""
        with self._lock:
            entry = self._entry(namespace_id, key)
            return None if entry is None else entry.value

    def put(self, namespace_id: str, key: str, value: bytes, metadata: Any = None) -> None:
        """Store a value directly."""
        with self._lock:
            self.namespaces[namespace_id][key] = KVEntry(value, metadata)

    def delete(self, namespace_id: str, key: str) -> None:
        """Delete a value directly."""
        with self._lock:
            self.namespaces[namespace_id].pop(key, None)

    # --- routing -----------------------------------------------------------------

    def serves(self, parts: list[str]) -> bool:
        """Only ``kv/namespaces/{namespace_id}/...`` is served under ``storage/``."""
        return parts[:2] == ["kv", "namespaces"] and len(parts) >= 4

    def route(self, ex: Exchange, parts: list[str]) -> Response:
        """Answer ``kv/namespaces/{namespace_id}/{values|metadata|keys}[/{key}]``."""
        namespace_id, what, rest = urllib.parse.unquote(parts[2]), parts[3], parts[4:]
        with self._lock:
            if namespace_id not in self.namespaces:
                raise ApiError(404, 10013, "namespace not found")
        if what == "keys" and not rest and ex.method == "GET":
            return self._list(namespace_id, ex.query)
        if what not in {"values", "metadata"} or len(rest) != 1 or not rest[0]:
            raise no_route()
        key = urllib.parse.unquote(rest[0])
        if len(key.encode()) > 512:
            raise ApiError(414, 10033, "key name too long")
        if what == "metadata" and ex.method == "GET":
            return self._metadata(namespace_id, key)
        if what == "values" and ex.method == "GET":
            return self._read(namespace_id, key)
        if what == "values" and ex.method == "PUT":
            return self._write(ex, namespace_id, key)
        raise ApiError(405, 10000, "method not allowed")

    # --- operations --------------------------------------------------------------

    def _entry(self, namespace_id: str, key: str) -> KVEntry | None:
        entries = self.namespaces[namespace_id]
        entry = entries.get(key)
        if entry is not None and entry.expiration is not None and entry.expiration <= time.time():
            del entries[key]
            return None
        return entry

    def _read(self, namespace_id: str, key: str) -> Response:
        with self._lock:
            entry = self._entry(namespace_id, key)
        if entry is None:
            raise ApiError(404, 10009, "get: 'key not found'")
        headers = {} if entry.expiration is None else {"expiration": str(entry.expiration)}
        return Response(
            entry.value, status=200, headers=headers, content_type="application/octet-stream"
        )

    def _metadata(self, namespace_id: str, key: str) -> Response:
        with self._lock:
            entry = self._entry(namespace_id, key)
        if entry is None:
            raise ApiError(404, 10009, "metadata: 'key not found'")
        return json_response(envelope(entry.metadata if entry.metadata is not None else {}))

    def _write(self, ex: Exchange, namespace_id: str, key: str) -> Response:
        content_type = ex.request_headers.get("content-type", "")
        metadata = None
        if content_type.startswith("multipart/form-data"):
            value, metadata = self._form(ex)
        else:
            value = ex.request_body
        if len(value) > VALUE_LIMIT:
            raise ApiError(413, 10011, "value too large")
        expiration = self._expiration(ex.query)
        with self._lock:
            self.namespaces[namespace_id][key] = KVEntry(value, metadata, expiration)
        return json_response(envelope({}))

    @staticmethod
    def _form(ex: Exchange) -> tuple[bytes, Any]:
        from werkzeug.formparser import parse_form_data
        from werkzeug.test import EnvironBuilder

        environ = EnvironBuilder(
            method="PUT", data=ex.request_body, content_type=ex.request_headers["content-type"]
        ).get_environ()
        _, form, files = parse_form_data(environ)
        if "value" in files:
            value = files["value"].read()
        elif "value" in form:
            value = form["value"].encode()
        else:
            raise ApiError(400, 10021, "value is required")
        metadata = None
        if form.get("metadata"):
            try:
                metadata = json.loads(form["metadata"])
            except ValueError:
                raise ApiError(400, 10022, "metadata is not valid JSON") from None
            if len(form["metadata"].encode()) > 1024:
                raise ApiError(413, 10023, "metadata too large")
        return value, metadata

    @staticmethod
    def _expiration(query: dict[str, str]) -> int | None:
        try:
            if "expiration_ttl" in query:
                ttl = int(query["expiration_ttl"])
                if ttl < 60:
                    raise ApiError(400, 10033, "expiration_ttl must be at least 60")
                return int(time.time()) + ttl
            if "expiration" in query:
                return int(query["expiration"])
        except ValueError:
            raise ApiError(400, 10033, "invalid expiration") from None
        return None

    def _list(self, namespace_id: str, query: dict[str, str]) -> Response:
        prefix = query.get("prefix", "")
        try:
            limit = int(query.get("limit", "1000"))
        except ValueError:
            raise ApiError(400, 10026, "invalid limit") from None
        if not 10 <= limit <= 1000:
            raise ApiError(400, 10026, "limit must be between 10 and 1000")
        after = ""
        if query.get("cursor"):
            try:
                after = base64.urlsafe_b64decode(query["cursor"].encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, 10024, "invalid cursor") from None
        with self._lock:
            names = sorted(
                (n for n in list(self.namespaces[namespace_id]) if n.startswith(prefix)),
                key=lambda n: n.encode(),
            )
            names = [n for n in names if self._entry(namespace_id, n) is not None]
            page = [n for n in names if n.encode() > after.encode()][:limit]
            more = bool(page) and page[-1] != names[-1]
            items = []
            for name in page:
                entry = self.namespaces[namespace_id][name]
                item: dict[str, Any] = {"name": name}
                if entry.expiration is not None:
                    item["expiration"] = entry.expiration
                if entry.metadata is not None:
                    item["metadata"] = entry.metadata
                items.append(item)
        cursor = base64.urlsafe_b64encode(page[-1].encode()).decode() if more else ""
        return json_response(envelope(items, result_info={"count": len(items), "cursor": cursor}))
