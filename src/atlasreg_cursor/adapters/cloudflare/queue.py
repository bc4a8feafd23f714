"""MessageQueue on Cloudflare Queues through the HTTP pull-consumer API.

``receive`` pulls (``POST .../messages/pull`` with ``batch_size`` and
``visibility_timeout_ms``). Pulls are short polls, so between empty pulls it
sleeps ``poll_min`` seconds, doubling up to ``poll_max``, until
``wait_seconds`` pass. Bodies are decoded by ``metadata["CF-Content-Type"]``:
``json`` is tried as base64 first and then as plain JSON (both forms are seen
in practice), ``bytes`` is base64, ``text`` is taken as it is; ``v8`` or an
undecodable body is delivered as the raw text, which the service
dead-letters as a poison message. The Cloudflare message id is the
delivery's ``queue_message_id``, and the run identity
(``Delivery.identity_from_queue``) of a body without a producer's
``message_id`` of its own.

``ack`` and ``retry`` go through ``.../messages/ack`` (``retry`` delays are
capped at 12 h). ``dead_letter`` publishes ``{"body", "reason",
"message_id", "attempts", ...}`` (``message_id``: the queue's id, under the
name stored letters have always used) to the dead-letter queue
``CF_DLQ_QUEUE_ID`` and then acks; without one, the same JSON goes to the
object store under ``dead-letters/<date>/<queue_message_id>.json``. ``send`` publishes a body as
``json`` when that is lossless (compact JSON, as ``enqueue`` writes it),
else as ``text``; the API returns no id, so ``send`` returns a local UUID.

Re-running after a lost reply (the client sends again by itself, the caller
may too):

- ``ack`` and ``retry`` name a lease. An ack of a lease already acked finds
  no message and changes nothing; Cloudflare accepts an ack after the lease
  expired, even once the message went to another consumer (processing must
  be idempotent), so a repeated ack never brings a message back. A repeated
  retry puts the message back again (its delay counted anew).
- A pull whose reply was lost leased its messages to nobody: they stay
  invisible until the visibility timeout (``VISIBILITY_TIMEOUT_SECONDS``),
  then come back with one more attempt. Nothing is lost; they are late.
- ``dead_letter`` first writes a create-only record of the letter in the
  object store (:mod:`._dead_letters`), so a re-run publishes no second
  letter; a DLQ publish that may have landed unanswered is not sent again.
- The publish API has no idempotency key, so a ``send`` retried after its
  reply was lost can land twice; the two copies carry the same body, and so
  the same ``message_id`` (``enqueue`` always sets one), which is what the
  service derives the run from: the second copy is acked as a duplicate.

Cloudflare cannot renew a lease over HTTP (``extend`` is a no-op) and
accepts late acks silently, so processing must stay idempotent. ``stats``
reports the ``message_backlog_count`` of the latest pull as ``ready`` (it
counts every unacknowledged message); other counts are unknown (``None``).

Settings read (by the composition root): ``CF_QUEUE_ID``, ``CF_DLQ_QUEUE_ID``,
``VISIBILITY_TIMEOUT_SECONDS`` and the client's ``CF_*`` settings.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import threading
import time
import uuid
from typing import Any

import structlog

from atlasreg_cursor.domain.errors import (
    QueueConfigurationError,
    QueueError,
    QueueUnavailable,
)
from atlasreg_cursor.ports.queue import Delivery, QueueStats
from atlasreg_cursor.ports.storage import ObjectStore

from ._dead_letters import DeadLetterRecords, Record, State, dead_letter_body
from ._http import (
    CloudflareAPIError,
    CloudflareClient,
    CloudflareConfigurationError,
    CloudflareUnanswered,
    CloudflareUnavailable,
)

log = structlog.get_logger()

MAX_BATCH = 100
MAX_DELAY_SECONDS = 43_200
MAX_VISIBILITY_SECONDS = 43_200.0


def decode_body(body: Any, metadata: Any) -> bytes:
    """
    Decode a pulled message body by its ``CF-Content-Type``.

    ``json`` (also the default when the metadata says nothing): base64 whose
    bytes are JSON, else the body itself when it is JSON, else the raw text.
    ``bytes``: base64, else the raw text. ``text``: as it is. ``v8`` and
    anything else: the raw text, so the message is dead-lettered as poison.

    Returns:
        The message bytes the service parses.
    """
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    raw = text.encode("utf-8")
    content_type = metadata.get("CF-Content-Type") if isinstance(metadata, dict) else None
    content_type = content_type or "json"
    if content_type == "text":
        return raw
    if content_type == "json":
        decoded = _b64(text)
        if decoded is not None and _is_json(decoded):
            return decoded
        return raw
    if content_type == "bytes":
        decoded = _b64(text)
        return raw if decoded is None else decoded
    return raw


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def publish_payload(body: bytes) -> dict[str, Any]:
    """
    Return the publish request for *body*: ``json`` when lossless, else ``text``.

    Raises:
        QueueError: *body* is not UTF-8 (HTTP publish carries text and JSON only).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise QueueError(
            "Cloudflare Queues HTTP publish carries text and JSON only; body is not UTF-8"
        ) from None
    try:
        value = json.loads(text)
    except ValueError:
        return {"body": text, "content_type": "text"}
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if compact == text:
        return {"body": value, "content_type": "json"}
    return {"body": text, "content_type": "text"}


class CloudflareQueue:
    """
    A Cloudflare Queue consumed with HTTP pulls.

    Args:
        client: the account's API client (closed by :meth:`close`).
        queue_id: ``CF_QUEUE_ID``.
        dlq_queue_id: ``CF_DLQ_QUEUE_ID``, where dead letters are published.
        dead_letter_store: where the dead letters' records are kept (what
            makes ``dead_letter`` safe to re-run), and the letters too when
            there is no DLQ queue.
        visibility_timeout: seconds a pulled message stays leased (≤ 12 h).
        batch_size: most messages per pull (≤ 100).
        poll_min: first pause after an empty pull, in seconds.
        poll_max: longest pause between empty pulls, in seconds.
    """

    def __init__(
        self,
        client: CloudflareClient,
        *,
        queue_id: str,
        dlq_queue_id: str | None = None,
        dead_letter_store: ObjectStore | None = None,
        visibility_timeout: float = 1800.0,
        batch_size: int = 10,
        poll_min: float = 0.5,
        poll_max: float = 2.0,
    ) -> None:
        if not queue_id:
            raise ValueError("a queue id is required (CF_QUEUE_ID)")
        if not 0 < visibility_timeout <= MAX_VISIBILITY_SECONDS:
            raise ValueError("visibility_timeout must be between 0 and 43200 seconds")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError("batch_size must be between 1 and 100")
        if not 0 < poll_min <= poll_max:
            raise ValueError("need 0 < poll_min <= poll_max")
        self._client = client
        self.queue_id = queue_id
        self.dlq_queue_id = dlq_queue_id or None
        self._records = (
            None if dead_letter_store is None else DeadLetterRecords(dead_letter_store, queue_id)
        )
        self._visibility_ms = max(1, int(visibility_timeout * 1000))
        self._batch_size = batch_size
        self._poll_min = poll_min
        self._poll_max = poll_max
        self._closed = threading.Event()
        self._backlog: int | None = None

    def __repr__(self) -> str:
        return f"CloudflareQueue(queue_id={self.queue_id!r}, dlq_queue_id={self.dlq_queue_id!r})"

    # --- consuming -----------------------------------------------------------

    def receive(self, max_messages: int = 1, wait_seconds: float = 0.0) -> list[Delivery]:
        """
        Pull up to *max_messages*, polling with backoff for up to *wait_seconds*.

        Raises:
            QueueUnavailable: the API could not be reached.
            QueueConfigurationError: token, account or queue id is wrong.
        """
        size = max(1, min(max_messages, self._batch_size))
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        pause = self._poll_min
        while True:
            got = self._pull(size)
            left = deadline - time.monotonic()
            if got or left <= 0 or self._closed.is_set():
                return got
            if self._closed.wait(min(pause, left)):
                return []
            pause = min(pause * 2, self._poll_max)

    def _pull(self, size: int) -> list[Delivery]:
        result = self._call(
            f"queues/{self.queue_id}/messages/pull",
            {"batch_size": size, "visibility_timeout_ms": self._visibility_ms},
        )
        if isinstance(result, dict):
            messages = result.get("messages") or []
            backlog = result.get("message_backlog_count")
            if isinstance(backlog, int | float):
                self._backlog = int(backlog)
        elif isinstance(result, list):
            messages = result
        else:
            messages = []
        deliveries = [d for d in map(self._delivery, messages) if d is not None]
        if deliveries:
            log.debug("queue.received", queue_id=self.queue_id, count=len(deliveries))
        return deliveries

    def _delivery(self, message: Any) -> Delivery | None:
        if not isinstance(message, dict) or not message.get("lease_id"):
            log.warning("queue.malformed_message", queue_id=self.queue_id)
            return None
        queue_message_id = str(message.get("id") or "")
        attempts = message.get("attempts")
        return Delivery(
            queue_message_id=queue_message_id
            or "lease-" + uuid.uuid5(uuid.NAMESPACE_URL, message["lease_id"]).hex,
            body=decode_body(message.get("body", ""), message.get("metadata")),
            attempts=max(1, int(attempts)) if isinstance(attempts, int | float) else 1,
            lease_token=str(message["lease_id"]),
            identity_from_queue=bool(queue_message_id),
        )

    def ack(self, delivery: Delivery) -> None:
        """
        Acknowledge *delivery* (Cloudflare accepts late acks, so this never raises
        ``LeaseExpired``).

        Raises:
            QueueUnavailable: the API could not be reached.
        """
        self._ack_call(acks=[{"lease_id": delivery.lease_token}], retries=[])
        log.debug("queue.acked", queue_id=self.queue_id, queue_message_id=delivery.queue_message_id)

    def retry(self, delivery: Delivery, delay_seconds: float) -> None:
        """
        Release *delivery*, receivable again after *delay_seconds* (≤ 12 h).

        Raises:
            QueueUnavailable: the API could not be reached.
        """
        entry: dict[str, Any] = {"lease_id": delivery.lease_token}
        if delay_seconds > 0:
            entry["delay_seconds"] = min(MAX_DELAY_SECONDS, max(1, math.ceil(delay_seconds)))
        self._ack_call(acks=[], retries=[entry])
        log.debug(
            "queue.retried",
            queue_id=self.queue_id,
            queue_message_id=delivery.queue_message_id,
            delay_seconds=entry.get("delay_seconds", 0),
        )

    def _ack_call(self, *, acks: list[dict[str, Any]], retries: list[dict[str, Any]]) -> None:
        result = self._call(
            f"queues/{self.queue_id}/messages/ack", {"acks": acks, "retries": retries}
        )
        warnings = result.get("warnings") if isinstance(result, dict) else None
        if warnings:
            log.warning("queue.ack_warnings", queue_id=self.queue_id, warnings=warnings[:5])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """
        Publish *delivery* with *reason* to the DLQ queue (or the store), then ack.

        Safe to re-run: the letter's record in the store is written first
        and read back on a re-run (:mod:`._dead_letters`), so the letter is
        published once, or, when a publish went unanswered, at most once.

        Raises:
            QueueUnavailable: the API or the store could not be reached, or
                the publish went unanswered (a re-run does not publish again).
            QueueConfigurationError: the DLQ queue id is wrong.
        """
        body, encoding = dead_letter_body(delivery.body)
        letter: dict[str, Any] = {
            "body": body,
            "body_encoding": encoding,
            "reason": reason,
            "message_id": delivery.queue_message_id,
            "attempts": delivery.attempts,
            "queue_id": self.queue_id,
            "dead_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        record = None
        if self._records is not None:
            record = self._records.claim(delivery.queue_message_id, letter)
        where = self._deliver(delivery, record.letter if record else letter, record)
        self.ack(delivery)
        log.info(
            "queue.dead_lettered",
            queue_id=self.queue_id,
            queue_message_id=delivery.queue_message_id,
            reason=reason,
            where=where,
        )

    def _deliver(self, delivery: Delivery, letter: dict[str, Any], record: Record | None) -> str:
        """Put *letter* where dead letters go, unless its record says it went already."""
        records = self._records
        if record is not None and record.state == "sent":
            return record.where or "sent before"
        if self.dlq_queue_id:
            where = f"queue:{self.dlq_queue_id}"
            if record is not None and record.state == "unconfirmed":
                log.warning(
                    "queue.dead_letter_unconfirmed",
                    queue_id=self.queue_id,
                    queue_message_id=delivery.queue_message_id,
                    record=record.key,
                )
                return f"{where} (unconfirmed; the letter is kept at store:{record.key})"
            self._publish_letter(letter, record)
        elif records is not None:
            where = records.put_letter(letter)
        else:
            log.error(
                "queue.dead_letter_dropped",
                queue_id=self.queue_id,
                queue_message_id=delivery.queue_message_id,
                reason=letter.get("reason"),
            )
            return "dropped"
        if records is not None and record is not None:
            self._mark(records, record, "sent", where)
        return where

    def _publish_letter(self, letter: dict[str, Any], record: Record | None) -> None:
        """Publish *letter* to the DLQ queue; once sent unanswered, never again."""
        path = f"queues/{self.dlq_queue_id}/messages"
        once = record is not None
        try:
            self._call(path, {"body": letter, "content_type": "json"}, dlq=True, once=once)
        except _Unanswered:
            if self._records is not None and record is not None:
                self._mark(self._records, record, "unconfirmed")
            raise

    @staticmethod
    def _mark(
        records: DeadLetterRecords, record: Record, state: State, where: str | None = None
    ) -> None:
        """Write *record*'s new state; a failure is logged (the ack follows, a re-run is rare)."""
        try:
            records.mark(record, state, where)
        except QueueError as exc:
            log.warning("queue.dead_letter_record_failed", record=record.key, error=str(exc))

    # --- producing and the rest ------------------------------------------------

    def send(self, body: bytes) -> str:
        """
        Publish *body* (``json`` when lossless, else ``text``).

        Returns:
            A local UUID: the publish API returns no message id.

        Raises:
            QueueError: *body* is not UTF-8, or the API refused it (too large).
            QueueUnavailable: the API could not be reached.
        """
        self._call(f"queues/{self.queue_id}/messages", publish_payload(body))
        local_id = uuid.uuid4().hex
        log.debug("queue.sent", queue_id=self.queue_id, local_id=local_id, size=len(body))
        return local_id

    def extend(self, delivery: Delivery, seconds: float) -> None:
        """Do nothing: Cloudflare cannot renew a lease over HTTP."""
        log.debug(
            "queue.extend_unsupported",
            queue_id=self.queue_id,
            queue_message_id=delivery.queue_message_id,
        )

    def stats(self) -> QueueStats:
        """Return the latest pull's backlog as ``ready``; other counts are unknown."""
        return QueueStats(ready=self._backlog, in_flight=None, delayed=None, dead=None)

    def close(self) -> None:
        """Stop a waiting ``receive`` and close the client's connections."""
        self._closed.set()
        self._client.close()

    def _call(
        self, path: str, body: dict[str, Any], *, dlq: bool = False, once: bool = False
    ) -> Any:
        """
        POST *body* to *path*; translate client errors into queue errors.

        Args:
            once: not sent again once it may have landed unanswered
                (:class:`_Unanswered` then).
        """
        try:
            return self._client.request_json("POST", path, body=body, retry_unanswered=not once)
        except CloudflareUnanswered as exc:
            raise _Unanswered(str(exc)) from exc
        except CloudflareConfigurationError as exc:
            what = "dead-letter queue (CF_DLQ_QUEUE_ID)" if dlq else "queue"
            raise QueueConfigurationError(f"{what} {path.split('/')[1]}: {exc}") from exc
        except CloudflareUnavailable as exc:
            raise QueueUnavailable(str(exc)) from exc
        except CloudflareAPIError as exc:
            raise QueueError(str(exc)) from exc


class _Unanswered(QueueUnavailable):
    """A publish that may have landed: the API got it and no answer came."""
