"""A reliable MessageQueue on a Redis list, compatible with the seed's producers.

Implements ``MessageQueue`` and ``DeadLetterBox`` (architecture §6). Producers
``RPUSH`` plain JSON onto ``<key_prefix><queue_name>``
(``cursor:queue:ingest-queue``) and ``LLEN`` of that list keeps meaning
"messages waiting". Every state change is one Lua script (``lua/*.lua``,
loaded by ``_scripts.py``), so several consumers (threads, processes,
machines) never hold the same message at once. Deadlines use the Redis
server clock, so consumer clocks may disagree.

Keys, with ``L`` the list key:

- ``L``: waiting messages. Producer bodies exactly as written; a message that
  comes back (expired lease, retry) is pushed to the head as the marker
  ``@envelope:<id>`` so its id and attempt count survive.
- ``L:inflight``: ZSET of leased message ids scored by deadline (ms).
- ``L:delayed``: ZSET of retried message ids scored by due time (ms).
- ``L:envelopes``: HASH id → JSON ``{message_id, attempts, token, first_seen}``
  (plus ``released``: the lease token that last released it with ``retry``).
- ``L:bodies``: HASH id → the body bytes, unchanged (binary safe).
- ``L:sent``: HASH sha1(body) → ids handed out by ``send``, so the id it
  returns is the ``Delivery.queue_message_id``.
- ``L:sent:<id>``: a marker (24 h) that ``send`` of that id already pushed.
- ``L:receipt:<call>``: what one ``receive`` call leased (ids and tokens),
  kept for the visibility timeout.
- ``L:dead``: dead letters, JSON ``{body, reason, attempts, message_id, dead_at}``
  (a body that is not UTF-8 is base64 with ``"body_encoding": "base64"``).

The stored ``message_id`` fields hold the queue's id (``queue_message_id``),
under the name stored entries have always used.

``receive`` first moves expired in-flight and due delayed messages back to
the head, then leases up to ``max_messages``; when none is ready it blocks on
the server (``BLMOVE L L LEFT LEFT``, which leaves the list unchanged) for at
most ``poll_cap`` seconds or until the next deadline, never busy polling.
Connection errors are retried with stamina, then raised as
``QueueUnavailable``; nothing acked is redelivered and nothing un-acked is
lost across reconnects and Redis restarts (with Redis persistence on).

Every script is safe to run again after its reply was lost (the server ran
it, the connection dropped before the answer): ids and tokens are made once
per logical call, before the retries, and each script recognises its own
earlier effect. A repeated ``receive`` returns what the first run leased
(its receipt) instead of leasing more; a repeated ``send`` finds its marker
and pushes nothing; ``ack``, ``retry`` and ``dead_letter`` find the message
already settled by their lease; ``extend`` is idempotent by nature.
:meth:`RedisListQueue.server_warnings` reports a server that would lose the
queue (no persistence, an evicting ``maxmemory-policy``).

Needs Redis 6.2 or later (``BLMOVE``) on a single server or a primary with
replicas; the keys are not hash-tagged for Redis Cluster, so that the list
key stays exactly the seed's.

Settings read (by the composition root): ``REDIS_URL``, ``QUEUE_NAME``,
``VISIBILITY_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import stamina
import structlog

from atlasreg_cursor.domain.errors import (
    LeaseExpired,
    QueueConfigurationError,
    QueueError,
    QueueUnavailable,
)
from atlasreg_cursor.ports.queue import DeadLetter, Delivery, QueueStats

from ._client import queue_client
from ._dead_letters import dead_entry, parse_dead
from ._durability import durability_warnings, server_settings
from ._scripts import QueueScripts, leased_from

log = structlog.get_logger()

T = TypeVar("T")

#: Library errors worth retrying: the server is away, restarting or slow.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)

RETRY_ATTEMPTS = 6
RETRY_TIMEOUT = 30.0
MAX_BATCH = 100
PROMOTE_LIMIT = 1000
MIN_BLOCK_SECONDS = 0.01
#: How the list spells a message that came back (the scripts spell it too).
MARKER = "@envelope:"
SEND_MARKER_MS = 24 * 3600 * 1000


def _ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1000))


class RedisListQueue:
    """
    ``MessageQueue`` and ``DeadLetterBox`` on a Redis list with leases.

    Args:
        client_or_url: a ``redis://`` URL (a client with socket timeouts and
            health checks is built and owned) or an existing ``redis.Redis``
            created with ``decode_responses=False`` and a ``socket_timeout``
            above *poll_cap* (or none).
        queue_name: the list name after the prefix (``QUEUE_NAME``).
        key_prefix: prefix of the list key.
        visibility_timeout: seconds a received message stays leased.
        poll_cap: longest single server-side block in ``receive`` (seconds);
            bounds how late a retry due elsewhere is noticed.

    Raises:
        QueueConfigurationError: a bad timeout or a client that decodes responses.
    """

    def __init__(
        self,
        client_or_url: str | redis.Redis,
        *,
        queue_name: str = "ingest-queue",
        key_prefix: str = "cursor:queue:",
        visibility_timeout: float = 1800.0,
        poll_cap: float = 1.0,
    ) -> None:
        if visibility_timeout <= 0 or poll_cap <= 0:
            raise QueueConfigurationError("visibility_timeout and poll_cap must be positive")
        if not queue_name:
            raise QueueConfigurationError("queue name must not be empty")
        self._client, self._owned = queue_client(client_or_url, poll_cap=poll_cap)
        self.list_key = f"{key_prefix}{queue_name}"
        self.visibility_timeout = visibility_timeout
        self.poll_cap = poll_cap
        self._inflight = f"{self.list_key}:inflight"
        self._delayed = f"{self.list_key}:delayed"
        self._envelopes = f"{self.list_key}:envelopes"
        self._bodies = f"{self.list_key}:bodies"
        self._sent = f"{self.list_key}:sent"
        self.dead_key = f"{self.list_key}:dead"
        self._scripts = QueueScripts.register(self._client)

    def __repr__(self) -> str:
        return f"RedisListQueue(list_key={self.list_key!r})"

    # --- MessageQueue -----------------------------------------------------

    def receive(self, max_messages: int = 1, wait_seconds: float = 0.0) -> list[Delivery]:
        """
        Lease up to *max_messages* (at most 100), blocking up to *wait_seconds*.

        Returns:
            The deliveries, ``[]`` when nothing came in time.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        n = max(1, min(int(max_messages), MAX_BATCH))
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            wait_ms, deliveries = self._take(n)
            if deliveries:
                log.debug("queue.received", queue=self.list_key, count=len(deliveries))
                return deliveries
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            block = min(left, self.poll_cap)
            if wait_ms >= 0:
                block = min(block, wait_ms / 1000)
            self._block(max(block, MIN_BLOCK_SECONDS))

    def ack(self, delivery: Delivery) -> None:
        """
        Delete a delivered message for good.

        Raises:
            LeaseExpired: the lease expired or went to another consumer.
            QueueUnavailable: Redis could not be reached.
        """
        self._leased(
            "ack",
            delivery,
            lambda: self._scripts.ack(
                keys=[self._inflight, self._envelopes, self._bodies],
                args=[delivery.queue_message_id, delivery.lease_token],
            ),
        )
        log.debug("queue.acked", queue=self.list_key, queue_message_id=delivery.queue_message_id)

    def retry(self, delivery: Delivery, delay_seconds: float) -> None:
        """
        Release a delivered message, receivable again after *delay_seconds*.

        Raises:
            LeaseExpired: the lease expired or went to another consumer.
            QueueUnavailable: Redis could not be reached.
        """
        self._leased(
            "retry",
            delivery,
            lambda: self._scripts.retry(
                keys=[self._inflight, self._envelopes, self._delayed, self.list_key],
                args=[delivery.queue_message_id, delivery.lease_token, _ms(delay_seconds)],
            ),
        )
        log.debug(
            "queue.retried",
            queue=self.list_key,
            queue_message_id=delivery.queue_message_id,
            delay_seconds=delay_seconds,
        )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """
        Move a delivered message to ``<list>:dead`` with *reason*.

        Raises:
            LeaseExpired: the lease expired or went to another consumer.
            QueueUnavailable: Redis could not be reached.
        """
        entry = dead_entry(delivery, reason)
        self._leased(
            "dead_letter",
            delivery,
            lambda: self._scripts.dead_letter(
                keys=[self._inflight, self._envelopes, self._bodies, self.dead_key],
                args=[delivery.queue_message_id, delivery.lease_token, entry],
            ),
        )
        log.info(
            "queue.dead_lettered",
            queue=self.list_key,
            queue_message_id=delivery.queue_message_id,
            reason=reason,
        )

    def send(self, body: bytes) -> str:
        """
        ``RPUSH`` *body* unchanged, as the seed's producers do.

        Returns:
            The id the message will carry as ``Delivery.queue_message_id``.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        queue_message_id = uuid.uuid4().hex  # once, before the retries: a re-run finds its marker
        marker = f"{self._sent}:{queue_message_id}"
        self._run(
            "send",
            lambda: self._scripts.send(
                keys=[self.list_key, self._sent, marker],
                args=[body, queue_message_id, SEND_MARKER_MS],
            ),
        )
        log.debug("queue.sent", queue=self.list_key, queue_message_id=queue_message_id)
        return queue_message_id

    def extend(self, delivery: Delivery, seconds: float) -> None:
        """
        Renew the lease to end *seconds* from now (server clock).

        Raises:
            LeaseExpired: the lease expired or went to another consumer.
            QueueUnavailable: Redis could not be reached.
        """
        result, _ = self._run(
            "extend",
            lambda: self._scripts.extend(
                keys=[self._inflight, self._envelopes],
                args=[delivery.queue_message_id, delivery.lease_token, _ms(seconds)],
            ),
        )
        if int(result) != 1:
            raise LeaseExpired(f"lease of {delivery.queue_message_id} on {self.list_key} expired")

    def stats(self) -> QueueStats:
        """
        Return ``LLEN``/``ZCARD`` of the waiting, in-flight, delayed and dead keys.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """

        def counts() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.llen(self.list_key)
            pipe.zcard(self._inflight)
            pipe.zcard(self._delayed)
            pipe.llen(self.dead_key)
            return list(pipe.execute())

        (ready, in_flight, delayed, dead), _ = self._run("stats", counts)
        return QueueStats(
            ready=int(ready), in_flight=int(in_flight), delayed=int(delayed), dead=int(dead)
        )

    def server_warnings(self) -> list[str]:
        """
        Tell what about the Redis server would lose queued messages, with the fix.

        Reads ``INFO persistence`` and ``INFO memory`` (and ``CONFIG GET save``
        where allowed; managed servers often refuse ``CONFIG``).

        Returns:
            One sentence per problem; ``[]`` when the server keeps the queue.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        settings, _ = self._run("server_check", lambda: server_settings(self._client))
        return durability_warnings(*settings)

    def close(self) -> None:
        """Close the client when this queue built it from a URL."""
        if self._owned:
            self._client.close()

    # --- DeadLetterBox ----------------------------------------------------

    def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """
        Return up to *limit* dead letters, oldest first.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        if limit <= 0:
            return []
        raw, _ = self._run("list_dead", lambda: self._client.lrange(self.dead_key, 0, limit - 1))
        return [letter for entry in raw if (letter := parse_dead(entry)) is not None]

    def replay_dead(self, queue_message_id: str) -> bool:
        """
        Move the dead letter *queue_message_id* back to the tail with attempts reset.

        Returns:
            ``False`` when no dead letter has that id.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        page = 500
        start = 0
        while True:
            chunk = self._dead_page(start, page)
            for entry in chunk:
                letter = parse_dead(entry)
                if letter is None or letter.queue_message_id != queue_message_id:
                    continue
                if self._replay(entry, letter):
                    log.info(
                        "queue.dead_replayed",
                        queue=self.list_key,
                        queue_message_id=queue_message_id,
                    )
                    return True
            if len(chunk) < page:
                return False
            start += page

    def purge_dead(self) -> int:
        """
        Delete every dead letter.

        Returns:
            How many were deleted.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        count, _ = self._run("purge_dead", lambda: self._scripts.purge_dead(keys=[self.dead_key]))
        log.info("queue.dead_purged", queue=self.list_key, count=int(count))
        return int(count)

    # --- internals --------------------------------------------------------

    def _dead_page(self, start: int, size: int) -> list[bytes]:
        chunk, _ = self._run(
            "replay_dead", lambda: self._client.lrange(self.dead_key, start, start + size - 1)
        )
        return [e if isinstance(e, bytes) else e.encode("utf-8") for e in chunk]

    def _replay(self, entry: bytes, letter: DeadLetter) -> bool:
        envelope = json.dumps({"message_id": letter.queue_message_id, "attempts": 0, "token": ""})
        done, _ = self._run(
            "replay_dead",
            lambda: self._scripts.replay_dead(
                keys=[self.dead_key, self.list_key, self._envelopes, self._bodies],
                args=[entry, letter.queue_message_id, letter.body, envelope],
            ),
        )
        return int(done) in {1, 2}

    def _take(self, n: int) -> tuple[int, list[Delivery]]:
        # Ids, tokens and the receipt are made once per call, before the
        # retries: a re-run after a lost reply returns the same leases.
        args: list[Any] = [n, _ms(self.visibility_timeout), PROMOTE_LIMIT]
        for _ in range(n):
            args += [uuid.uuid4().hex, uuid.uuid4().hex]
        keys = [
            self.list_key,
            self._inflight,
            self._delayed,
            self._envelopes,
            self._bodies,
            self._sent,
            f"{self.list_key}:receipt:{uuid.uuid4().hex}",
        ]
        reply, _ = self._run("receive", lambda: self._scripts.receive(keys=keys, args=args))
        return leased_from(reply)

    def _block(self, seconds: float) -> None:
        # Same source and destination, LEFT to LEFT: wakes when the list has
        # an element and leaves it where it was.
        self._run(
            "receive",
            lambda: self._client.blmove(self.list_key, self.list_key, seconds, "LEFT", "LEFT"),  # type: ignore[arg-type]
        )

    def _leased(self, op: str, delivery: Delivery, call: Callable[[], Any]) -> None:
        result, attempt = self._run(op, call)
        code = int(result)
        if code == 1:
            return
        if code in {-1, 2} and attempt > 1:
            # An earlier attempt whose reply was lost already finished the job
            # (-1: the message is gone; 2: this lease released it).
            log.debug("queue.lease_done_earlier", op=op, queue_message_id=delivery.queue_message_id)
            return
        raise LeaseExpired(f"lease of {delivery.queue_message_id} on {self.list_key} expired")

    def _run(self, op: str, call: Callable[[], T]) -> tuple[T, int]:
        try:
            for attempt in stamina.retry_context(
                on=TRANSIENT_ERRORS, attempts=RETRY_ATTEMPTS, timeout=RETRY_TIMEOUT
            ):
                with attempt:
                    return call(), attempt.num
        except TRANSIENT_ERRORS as exc:
            log.warning("queue.unavailable", queue=self.list_key, op=op, error=str(exc))
            raise QueueUnavailable(
                f"Redis queue {self.list_key} unreachable ({op}): {exc}"
            ) from exc
        except redis.ResponseError as exc:
            raise QueueConfigurationError(f"Redis refused {op} on {self.list_key}: {exc}") from exc
        except redis.RedisError as exc:
            raise QueueError(f"Redis error during {op} on {self.list_key}: {exc}") from exc
        raise QueueUnavailable(f"Redis queue {self.list_key}: no attempt made ({op})")
