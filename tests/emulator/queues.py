"""The emulated Cloudflare Queues API: pull consumer and publish.

``messages/pull`` (``batch_size`` ≤ 100, ``visibility_timeout_ms`` ≤ 12 h;
leases expire, ``attempts`` grows per delivery; ``result`` is the newer
object form, or the 2024 list form with ``pull_result_shape="list"``),
``messages/ack`` (acks and retries with ``delay_seconds``; late acks are
accepted silently, as Cloudflare does, even once the message went to another
consumer; an ack or retry naming the lease of a message already acked is
accepted and changes nothing, so a repeated ack never brings a message
back), ``messages`` and ``messages/batch``
(publish, answered without ``result``). A message whose ``attempts`` reached
the queue's ``max_retries`` is moved to its dead-letter queue, or dropped.
``json`` bodies are returned base64 (``json_body_encoding="plain"`` returns
them as plain JSON text, as seen in production). An unknown queue is
404/10104, a malformed queue id 400/10107.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, Literal

import attrs
from werkzeug.wrappers import Response

from tests.emulator.schema import Exchange
from tests.emulator.server import ApiError, envelope, json_body, json_response, no_route

MESSAGE_LIMIT = 128_000
BATCH_BYTES_LIMIT = 256_000
MAX_VISIBILITY_MS = 43_200_000
_QUEUE_ID = re.compile(r"^[0-9a-f]{32}$")

ContentType = Literal["json", "text", "bytes", "v8"]


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


_Handler = Callable[[EmulatedQueue, dict[str, Any]], Response]


class QueuesApi:
    """
    The queues of the emulated account, served under ``.../queues/``.

    Args:
        pull_result_shape: ``"object"`` (current API) or ``"list"`` (2024 schema).
        json_body_encoding: ``"base64"`` (documented) or ``"plain"``.
    """

    auth_code = 10106
    auth_message = "Unauthorized"

    def __init__(
        self,
        *,
        pull_result_shape: Literal["object", "list"] = "object",
        json_body_encoding: Literal["base64", "plain"] = "base64",
    ) -> None:
        self.pull_result_shape = pull_result_shape
        self.json_body_encoding = json_body_encoding
        self.queues: dict[str, EmulatedQueue] = {}
        self._lock = threading.RLock()
        self._seq = 0

    # --- test hooks ------------------------------------------------------------

    def create_queue(
        self, queue_id: str | None = None, *, max_retries: int, dead_letter_queue: str | None
    ) -> str:
        """Create a queue (a fresh 32-hex id by default) and return its id."""
        queue_id = queue_id or uuid.uuid4().hex
        with self._lock:
            self.queues[queue_id] = EmulatedQueue(queue_id, max_retries, dead_letter_queue)
            if dead_letter_queue and dead_letter_queue not in self.queues:
                self.queues[dead_letter_queue] = EmulatedQueue(dead_letter_queue)
        return queue_id

    def inject_message(
        self, queue_id: str, body: Any, *, content_type: ContentType, metadata: Any, delay: float
    ) -> str:
        """Put a message on a queue directly; ``metadata=...`` keeps the usual object."""
        with self._lock:
            message = self._enqueue(self.queues[queue_id], body, content_type, delay)
            if metadata is not ...:
                message.metadata = metadata
            return message.id

    def expire_leases(self, queue_id: str) -> int:
        """End every lease on a queue now; return how many."""
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

    # --- routing -----------------------------------------------------------------

    def serves(self, parts: list[str]) -> bool:
        """Every path under ``queues/`` is routed here."""
        return True

    def route(self, ex: Exchange, parts: list[str]) -> Response:
        """Answer ``{queue_id}/messages[/pull|/ack|/batch]`` (POST only)."""
        queue_id = urllib.parse.unquote(parts[0])
        action = "/".join(parts[1:])
        routes: dict[str, _Handler] = {"messages/pull": self._pull, "messages/ack": self._ack}
        routes |= {"messages": self._publish, "messages/batch": self._publish_batch}
        handler = routes.get(action)
        if handler is None or ex.method != "POST":
            raise no_route()
        if not _QUEUE_ID.match(queue_id):
            raise ApiError(400, 10107, "QueueIDMalformed")
        body = json_body(ex)
        with self._lock:
            queue = self.queues.get(queue_id)
            if queue is None:
                raise ApiError(404, 10104, "QueueNotFound")
            self._expire(queue, time.monotonic())
            return handler(queue, body)

    # --- queue state -------------------------------------------------------------

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

    # --- operations --------------------------------------------------------------

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
            return json_response(envelope(out))
        result = {"message_backlog_count": len(queue.messages), "messages": out}
        return json_response(envelope(result))

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
        return json_response(envelope(result))

    @staticmethod
    def _by_lease(queue: EmulatedQueue, entry: Any, warnings: list[str]) -> EmulatedMessage | None:
        """The message a lease was issued for, even if that lease has expired (``None`` once acked)."""
        lease = entry.get("lease_id") if isinstance(entry, dict) else None
        message_id = queue.leases.get(lease) if isinstance(lease, str) else None
        message = queue.messages.get(message_id) if message_id else None
        if message is None and message_id is None:
            warnings.append("unknown lease_id")
        return message

    @staticmethod
    def _check_publish(entry: Any) -> tuple[Any, str, float]:
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
        return json_response(envelope(with_result=False))

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
        return json_response(envelope(with_result=False))
