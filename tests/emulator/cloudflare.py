"""A local Cloudflare API emulator: Queues (pull consumer, publish) and Workers KV.

A real HTTP server on 127.0.0.1 (werkzeug, threaded, free port) speaking
``/client/v4`` the way the reference describes Cloudflare:

- Queues: ``messages/pull`` (``batch_size`` ≤ 100, ``visibility_timeout_ms``
  ≤ 12 h; leases expire, ``attempts`` grows per delivery; ``result`` is the
  newer object form, or the 2024 list form with ``pull_result_shape="list"``),
  ``messages/ack`` (acks and retries with ``delay_seconds``; late acks are
  accepted silently, as Cloudflare does), ``messages`` and ``messages/batch``
  (publish, answered without ``result``). A message whose ``attempts``
  reached the queue's ``max_retries`` is moved to its dead-letter queue, or
  dropped. ``json`` bodies are returned base64 (``json_body_encoding="plain"``
  returns them as plain JSON text, as seen in production).
- KV: ``values/{key}`` GET (raw bytes, not enveloped) and PUT (raw body or
  multipart ``value`` + ``metadata``; ``expiration``/``expiration_ttl``),
  ``metadata/{key}``, ``keys`` (prefix, limit, cursor pagination).
- Bearer token check (403, code 10000 for KV, 10106 for Queues), unknown
  queue 404/10104, malformed queue id 400/10107, unknown namespace 404/10013,
  unknown route 404/7003, and failures injected on demand (429 with
  ``Retry-After``, 5xx) with :meth:`CloudflareEmulator.fail_next`.

Every exchange is recorded (``requests``; the token is never kept) and
checked against the OpenAPI shapes by :mod:`tests.emulator.schema`; problems
are collected in ``schema_violations``. The ``cloudflare_emulator`` fixture
fails the test when there are any.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.emulator.schema import Exchange, validate_exchange

API_PREFIX = "/client/v4"
DEFAULT_TOKEN = "cf-test-token-0123456789abcdef"
DEFAULT_ACCOUNT = "0123456789abcdef0123456789abcdef"
MESSAGE_LIMIT = 128_000
BATCH_BYTES_LIMIT = 256_000
MAX_VISIBILITY_MS = 43_200_000
_QUEUE_ID = re.compile(r"^[0-9a-f]{32}$")

ContentType = Literal["json", "text", "bytes", "v8"]


class _QuietHandler(WSGIRequestHandler):
    """Request handling without a log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class ApiError(Exception):
    """An error answer of the emulated API."""

    def __init__(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@attrs.define
class EmulatedMessage:
    """A message in an emulated queue."""

    id: str
    body: Any
    content_type: str
    timestamp_ms: int
    seq: int
    attempts: int = 0
    visible_at: float = 0.0
    lease_id: str | None = None
    lease_deadline: float = 0.0
    metadata: Any = None

    @property
    def leased(self) -> bool:
        """Whether a consumer holds it right now."""
        return self.lease_id is not None

    def raw(self) -> bytes:
        """The body as the bytes a consumer should end up with."""
        if self.content_type == "json":
            return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()
        if isinstance(self.body, bytes):
            return self.body
        return str(self.body).encode()


@attrs.define
class EmulatedQueue:
    """One queue: its messages, settings and what happened to them."""

    queue_id: str
    max_retries: int = 3
    dead_letter_queue: str | None = None
    messages: dict[str, EmulatedMessage] = attrs.field(factory=dict)
    leases: dict[str, str] = attrs.field(factory=dict)
    acked: list[str] = attrs.field(factory=list)
    dropped: list[str] = attrs.field(factory=list)


@attrs.define
class KVEntry:
    """One KV value."""

    value: bytes = attrs.field(repr=False)
    metadata: Any = None
    expiration: int | None = None


@attrs.define
class FailureRule:
    """Answer matching requests with an error; ``remaining=None`` means until removed."""

    status: int
    code: int
    message: str
    path_contains: str = ""
    method: str | None = None
    retry_after: str | None = None
    remaining: int | None = 1


def _envelope(result: Any = None, *, with_result: bool = True, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"success": True, "errors": [], "messages": []}
    if with_result:
        doc["result"] = result
    doc.update(extra)
    return doc


class CloudflareEmulator:
    """
    The emulated account: queues, KV namespaces, the HTTP server and test hooks.

    Args:
        token: the only API token accepted.
        account_id: the only account served.
        pull_result_shape: ``"object"`` (current API) or ``"list"`` (2024 schema).
        json_body_encoding: ``"base64"`` (documented) or ``"plain"``.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        account_id: str = DEFAULT_ACCOUNT,
        pull_result_shape: Literal["object", "list"] = "object",
        json_body_encoding: Literal["base64", "plain"] = "base64",
    ) -> None:
        self.token = token
        self.account_id = account_id
        self.pull_result_shape = pull_result_shape
        self.json_body_encoding = json_body_encoding
        self.queues: dict[str, EmulatedQueue] = {}
        self.namespaces: dict[str, dict[str, KVEntry]] = {}
        self.requests: list[Exchange] = []
        self.schema_violations: list[str] = []
        self.failures: list[FailureRule] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- server lifecycle ----------------------------------------------------

    def start(self) -> CloudflareEmulator:
        """Serve on a free port of 127.0.0.1 in a background thread."""
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """The endpoint, without a path (clients append ``/client/v4``)."""
        assert self._server is not None, "emulator not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    # --- test hooks ------------------------------------------------------------

    def create_queue(
        self,
        queue_id: str | None = None,
        *,
        max_retries: int = 3,
        dead_letter_queue: str | None = None,
    ) -> str:
        """Create a queue (a fresh 32-hex id by default) and return its id."""
        queue_id = queue_id or uuid.uuid4().hex
        with self._lock:
            self.queues[queue_id] = EmulatedQueue(queue_id, max_retries, dead_letter_queue)
            if dead_letter_queue and dead_letter_queue not in self.queues:
                self.queues[dead_letter_queue] = EmulatedQueue(dead_letter_queue)
        return queue_id

    def create_namespace(self, namespace_id: str | None = None) -> str:
        """Create a KV namespace and return its id."""
        namespace_id = namespace_id or uuid.uuid4().hex
        with self._lock:
            self.namespaces[namespace_id] = {}
        return namespace_id

    def inject_message(
        self,
        queue_id: str,
        body: Any,
        *,
        content_type: ContentType = "json",
        metadata: Any = ...,
        delay: float = 0.0,
    ) -> str:
        """
        Put a message on a queue directly (``bytes``/``v8`` bodies are raw bytes).

        ``metadata`` replaces the usual ``{"CF-Content-Type": ...}`` object
        when given (``None`` or a string, as seen in the wild).
        """
        with self._lock:
            message = self._enqueue(self.queues[queue_id], body, content_type, delay)
            if metadata is not ...:
                message.metadata = metadata
            return message.id

    def expire_leases(self, queue_id: str) -> int:
        """End every lease on a queue now (as if its visibility timeout passed); return how many."""
        with self._lock:
            leased = [m for m in self.queues[queue_id].messages.values() if m.leased]
            for message in leased:
                message.lease_deadline = 0.0
            return len(leased)

    def messages(self, queue_id: str) -> list[EmulatedMessage]:
        """The messages still in a queue (ready, delayed or leased), oldest first."""
        with self._lock:
            queue = self.queues[queue_id]
            self._expire(queue, time.monotonic())
            return sorted(queue.messages.values(), key=lambda m: m.seq)

    def acked(self, queue_id: str) -> list[str]:
        """Ids of the messages acked on a queue, in order."""
        with self._lock:
            return list(self.queues[queue_id].acked)

    def dropped(self, queue_id: str) -> list[str]:
        """Ids of messages deleted after ``max_retries`` with no dead-letter queue."""
        with self._lock:
            return list(self.queues[queue_id].dropped)

    def kv_get(self, namespace_id: str, key: str) -> bytes | None:
        """The value stored at *key*, or ``None``."""
        with self._lock:
            entry = self._kv_entry(namespace_id, key)
            return None if entry is None else entry.value

    def kv_put(self, namespace_id: str, key: str, value: bytes, metadata: Any = None) -> None:
        """Store a value directly."""
        with self._lock:
            self.namespaces[namespace_id][key] = KVEntry(value, metadata)

    def kv_delete(self, namespace_id: str, key: str) -> None:
        """Delete a value directly."""
        with self._lock:
            self.namespaces[namespace_id].pop(key, None)

    def fail_next(
        self,
        count: int | None = 1,
        *,
        status: int = 429,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        path_contains: str = "",
        method: str | None = None,
    ) -> FailureRule:
        """
        Answer the next *count* matching requests (all, with ``None``) with an error.

        Returns:
            The rule; pass it to :meth:`clear_failure` to lift it.
        """
        default_code = 10250 if status == 429 else 15000 if status >= 500 else 10000
        rule = FailureRule(
            status=status,
            code=code or default_code,
            message=message or ("Too Many Requests" if status == 429 else "Injected failure"),
            path_contains=path_contains,
            method=method,
            retry_after=None if retry_after is None else f"{retry_after:g}",
            remaining=count,
        )
        with self._lock:
            self.failures.append(rule)
        return rule

    def clear_failure(self, rule: FailureRule | None = None) -> None:
        """Lift one injected failure rule, or all of them."""
        with self._lock:
            if rule is None:
                self.failures.clear()
            elif rule in self.failures:
                self.failures.remove(rule)

    def exchanges(self, path_contains: str = "") -> list[Exchange]:
        """Recorded exchanges whose path contains *path_contains*."""
        with self._lock:
            return [e for e in self.requests if path_contains in e.path]

    # --- WSGI --------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or request.full_path
        raw_path, _, raw_query = raw_uri.partition("?")
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        exchange = Exchange(
            method=request.method,
            raw_path=raw_path,
            query=dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True)),
            request_headers=headers,
            request_body=body,
        )
        try:
            response = self._dispatch(exchange)
        except ApiError as exc:
            response = self._error_response(exc)
        exchange.status = response.status_code
        exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
        exchange.response_body = response.get_data()
        problems = validate_exchange(exchange)
        # Keep no secret: the token is replaced before the exchange is stored.
        if "authorization" in headers:
            headers["authorization"] = "Bearer <redacted>"
        with self._lock:
            self.requests.append(exchange)
            self.schema_violations.extend(problems)
        return response(environ, start_response)

    @staticmethod
    def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(doc), status=status, headers=headers, content_type="application/json"
        )

    def _error_response(self, exc: ApiError) -> Response:
        doc = {
            "success": False,
            "errors": [{"code": exc.code, "message": exc.message}],
            "messages": [],
            "result": None,
        }
        return self._json(doc, exc.status, exc.headers)

    def _dispatch(self, ex: Exchange) -> Response:
        self._injected_failure(ex)
        path = ex.path
        if not ex.raw_path.startswith(API_PREFIX + "/accounts/"):
            raise ApiError(404, 7003, "No route for the URI")
        parts = path.split("/")
        # ['', 'accounts', account, kind, ...]
        if len(parts) < 5:
            raise ApiError(404, 7003, "No route for the URI")
        account, kind = urllib.parse.unquote(parts[2]), parts[3]
        if kind == "queues":
            self._auth(ex, 10106, "Unauthorized")
            self._account(account)
            return self._queues(ex, parts[4:])
        if kind == "storage" and parts[4:6] == ["kv", "namespaces"] and len(parts) >= 8:
            self._auth(ex, 10000, "Authentication error")
            self._account(account)
            return self._kv(ex, urllib.parse.unquote(parts[6]), parts[7], parts[8:])
        raise ApiError(404, 7003, "No route for the URI")

    def _injected_failure(self, ex: Exchange) -> None:
        with self._lock:
            for rule in self.failures:
                if rule.path_contains not in ex.path:
                    continue
                if rule.method is not None and rule.method != ex.method:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.failures.remove(rule)
                headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
                raise ApiError(rule.status, rule.code, rule.message, headers)

    def _auth(self, ex: Exchange, code: int, message: str) -> None:
        auth = ex.request_headers.get("authorization", "")
        if not secrets.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            raise ApiError(403, code, message)

    def _account(self, account: str) -> None:
        if account != self.account_id:
            raise ApiError(403, 10000, "Authentication error")

    # --- queues ------------------------------------------------------------------

    def _queues(self, ex: Exchange, parts: list[str]) -> Response:
        queue_id = urllib.parse.unquote(parts[0])
        action = "/".join(parts[1:])
        routes = {"messages/pull": self._pull, "messages/ack": self._ack}
        routes |= {"messages": self._publish, "messages/batch": self._publish_batch}
        handler = routes.get(action)
        if handler is None or ex.method != "POST":
            raise ApiError(404, 7003, "No route for the URI")
        if not _QUEUE_ID.match(queue_id):
            raise ApiError(400, 10107, "QueueIDMalformed")
        body = self._json_body(ex)
        with self._lock:
            queue = self.queues.get(queue_id)
            if queue is None:
                raise ApiError(404, 10104, "QueueNotFound")
            self._expire(queue, time.monotonic())
            return handler(queue, body)

    @staticmethod
    def _json_body(ex: Exchange) -> dict[str, Any]:
        try:
            body = json.loads(ex.request_body or b"null")
        except ValueError:
            raise ApiError(400, 10208, "JSONRequestBodyMalformed") from None
        if not isinstance(body, dict):
            raise ApiError(400, 10207, "JSONRequestBodyInvalid")
        return body

    def _enqueue(
        self, queue: EmulatedQueue, body: Any, content_type: str, delay: float
    ) -> EmulatedMessage:
        self._seq += 1
        message = EmulatedMessage(
            id=uuid.uuid4().hex,
            body=body,
            content_type=content_type,
            timestamp_ms=int(time.time() * 1000),
            seq=self._seq,
            visible_at=time.monotonic() + delay,
            metadata={"CF-sourceMessageSource": "api", "CF-Content-Type": content_type},
        )
        queue.messages[message.id] = message
        return message

    def _expire(self, queue: EmulatedQueue, now: float) -> None:
        """Give back every message whose lease ran out."""
        for message in list(queue.messages.values()):
            if message.leased and message.lease_deadline <= now:
                message.lease_id = None
                self._give_back(queue, message, now)

    def _give_back(self, queue: EmulatedQueue, message: EmulatedMessage, visible_at: float) -> None:
        """Return a message to the queue, or retire it once ``max_retries`` is reached."""
        message.lease_id = None
        if message.attempts < queue.max_retries:
            message.visible_at = visible_at
            return
        del queue.messages[message.id]
        if queue.dead_letter_queue:
            dlq = self.queues.setdefault(
                queue.dead_letter_queue, EmulatedQueue(queue.dead_letter_queue)
            )
            self._enqueue(dlq, message.body, message.content_type, 0.0)
        else:
            queue.dropped.append(message.id)

    def _wire_body(self, message: EmulatedMessage) -> str:
        if message.content_type == "text":
            return str(message.body)
        raw = message.raw()
        if message.content_type == "json" and self.json_body_encoding == "plain":
            return raw.decode()
        return base64.b64encode(raw).decode()

    def _pull(self, queue: EmulatedQueue, body: dict[str, Any]) -> Response:
        size = body.get("batch_size", 5)
        visibility = body.get("visibility_timeout_ms", 30_000)
        if not isinstance(size, int | float) or not 1 <= size <= 100:
            raise ApiError(400, 10207, "batch_size must be between 1 and 100")
        if not isinstance(visibility, int | float) or not 0 < visibility <= MAX_VISIBILITY_MS:
            raise ApiError(400, 10207, "visibility_timeout_ms must be at most 12 hours")
        now = time.monotonic()
        due = sorted(
            (m for m in queue.messages.values() if not m.leased and m.visible_at <= now),
            key=lambda m: m.seq,
        )[: int(size)]
        out = []
        for message in due:
            message.attempts += 1
            message.lease_id = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode()
            message.lease_deadline = now + visibility / 1000
            queue.leases[message.lease_id] = message.id
            out.append(
                {
                    "id": message.id,
                    "body": self._wire_body(message),
                    "timestamp_ms": message.timestamp_ms,
                    "attempts": message.attempts,
                    "metadata": message.metadata,
                    "lease_id": message.lease_id,
                }
            )
        if self.pull_result_shape == "list":
            return self._json(_envelope(out))
        result = {"message_backlog_count": len(queue.messages), "messages": out}
        return self._json(_envelope(result))

    def _ack(self, queue: EmulatedQueue, body: dict[str, Any]) -> Response:
        acks, retries = body.get("acks") or [], body.get("retries") or []
        if not isinstance(acks, list) or not isinstance(retries, list):
            raise ApiError(400, 10207, "JSONRequestBodyInvalid")
        warnings: list[str] = []
        ack_count = retry_count = 0
        now = time.monotonic()
        for entry in acks:
            message = self._by_lease(queue, entry, warnings)
            if message is not None:
                del queue.messages[message.id]
                queue.acked.append(message.id)
                ack_count += 1
        for entry in retries:
            message = self._by_lease(queue, entry, warnings)
            if message is None:
                continue
            delay = entry.get("delay_seconds") or 0
            if not isinstance(delay, int | float) or not 0 <= delay <= 86_400:
                raise ApiError(400, 10202, "BatchDelayInvalid")
            self._give_back(queue, message, now + delay)
            retry_count += 1
        result = {"ackCount": ack_count, "retryCount": retry_count, "warnings": warnings}
        return self._json(_envelope(result))

    @staticmethod
    def _by_lease(queue: EmulatedQueue, entry: Any, warnings: list[str]) -> EmulatedMessage | None:
        """The message a lease was issued for, even if that lease has expired."""
        lease = entry.get("lease_id") if isinstance(entry, dict) else None
        message_id = queue.leases.get(lease) if isinstance(lease, str) else None
        message = queue.messages.get(message_id) if message_id else None
        if message is None and message_id is None:
            warnings.append("unknown lease_id")
        return message

    def _check_publish(self, entry: Any) -> tuple[Any, str, float]:
        if not isinstance(entry, dict) or "body" not in entry:
            raise ApiError(400, 10207, "JSONRequestBodyInvalid")
        content_type = entry.get("content_type", "json")
        if content_type not in {"json", "text"}:
            raise ApiError(400, 10203, "MessageMetadataInvalid")
        body = entry["body"]
        if content_type == "text" and not isinstance(body, str):
            raise ApiError(400, 10207, "JSONRequestBodyInvalid")
        delay = entry.get("delay_seconds") or 0
        if not isinstance(delay, int | float) or not 0 <= delay <= 43_200:
            raise ApiError(400, 10203, "MessageMetadataInvalid")
        size = len(body.encode()) if isinstance(body, str) else len(json.dumps(body))
        if size > MESSAGE_LIMIT:
            raise ApiError(413, 10204, "MessageSizeOutOfBounds")
        return body, content_type, float(delay)

    def _publish(self, queue: EmulatedQueue, body: dict[str, Any]) -> Response:
        message, content_type, delay = self._check_publish(body)
        self._enqueue(queue, message, content_type, delay)
        return self._json(_envelope(with_result=False))

    def _publish_batch(self, queue: EmulatedQueue, body: dict[str, Any]) -> Response:
        entries = body.get("messages")
        if not isinstance(entries, list) or not entries:
            raise ApiError(400, 10207, "JSONRequestBodyInvalid")
        if len(entries) > 100:
            raise ApiError(400, 10206, "BatchCountOutOfBounds")
        if len(json.dumps(entries)) > BATCH_BYTES_LIMIT:
            raise ApiError(413, 10205, "BatchSizeOutOfBounds")
        batch_delay = body.get("delay_seconds") or 0
        checked = [self._check_publish(e) for e in entries]
        for (message, content_type, delay), entry in zip(checked, entries, strict=True):
            chosen = delay if "delay_seconds" in entry else float(batch_delay)
            self._enqueue(queue, message, content_type, chosen)
        return self._json(_envelope(with_result=False))

    # --- KV ------------------------------------------------------------------------

    def _kv_entry(self, namespace_id: str, key: str) -> KVEntry | None:
        entries = self.namespaces[namespace_id]
        entry = entries.get(key)
        if entry is not None and entry.expiration is not None and entry.expiration <= time.time():
            del entries[key]
            return None
        return entry

    def _kv(self, ex: Exchange, namespace_id: str, what: str, rest: list[str]) -> Response:
        with self._lock:
            if namespace_id not in self.namespaces:
                raise ApiError(404, 10013, "namespace not found")
        if what == "keys" and not rest and ex.method == "GET":
            return self._kv_list(namespace_id, ex.query)
        if what not in {"values", "metadata"} or len(rest) != 1 or not rest[0]:
            raise ApiError(404, 7003, "No route for the URI")
        key = urllib.parse.unquote(rest[0])
        if len(key.encode()) > 512:
            raise ApiError(414, 10033, "key name too long")
        if what == "metadata" and ex.method == "GET":
            return self._kv_metadata(namespace_id, key)
        if what == "values" and ex.method == "GET":
            return self._kv_read(namespace_id, key)
        if what == "values" and ex.method == "PUT":
            return self._kv_write(ex, namespace_id, key)
        raise ApiError(405, 10000, "method not allowed")

    def _kv_read(self, namespace_id: str, key: str) -> Response:
        with self._lock:
            entry = self._kv_entry(namespace_id, key)
        if entry is None:
            raise ApiError(404, 10009, "get: 'key not found'")
        headers = {} if entry.expiration is None else {"expiration": str(entry.expiration)}
        return Response(
            entry.value, status=200, headers=headers, content_type="application/octet-stream"
        )

    def _kv_metadata(self, namespace_id: str, key: str) -> Response:
        with self._lock:
            entry = self._kv_entry(namespace_id, key)
        if entry is None:
            raise ApiError(404, 10009, "metadata: 'key not found'")
        return self._json(_envelope(entry.metadata if entry.metadata is not None else {}))

    def _kv_write(self, ex: Exchange, namespace_id: str, key: str) -> Response:
        content_type = ex.request_headers.get("content-type", "")
        metadata = None
        if content_type.startswith("multipart/form-data"):
            value, metadata = self._kv_form(ex)
        else:
            value = ex.request_body
        if len(value) > 25 * 1024 * 1024:
            raise ApiError(413, 10011, "value too large")
        expiration = self._kv_expiration(ex.query)
        with self._lock:
            self.namespaces[namespace_id][key] = KVEntry(value, metadata, expiration)
        return self._json(_envelope({}))

    @staticmethod
    def _kv_form(ex: Exchange) -> tuple[bytes, Any]:
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
    def _kv_expiration(query: dict[str, str]) -> int | None:
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

    def _kv_list(self, namespace_id: str, query: dict[str, str]) -> Response:
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
            names = [n for n in names if self._kv_entry(namespace_id, n) is not None]
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
        return self._json(_envelope(items, result_info={"count": len(items), "cursor": cursor}))


@pytest.fixture
def cloudflare_emulator() -> Iterator[CloudflareEmulator]:
    """A started emulator; the test fails if any exchange broke the API schemas."""
    emulator = CloudflareEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert [] == emulator.schema_violations


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[CloudflareEmulator]:
    """Run an emulator for the duration of a ``with`` block."""
    emulator = CloudflareEmulator(**kwargs).start()
    try:
        yield emulator
    finally:
        emulator.stop()
