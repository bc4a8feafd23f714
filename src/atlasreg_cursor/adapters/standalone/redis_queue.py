"""A reliable MessageQueue on a Redis list, compatible with the seed's producers.

Implements ``MessageQueue`` and ``DeadLetterBox`` (DESIGN §6). Producers
``RPUSH`` plain JSON onto ``<key_prefix><queue_name>``
(``cursor:queue:ingest-queue``) and ``LLEN`` of that list keeps meaning
"messages waiting". Every state change is one Lua script, so several
consumers (threads, processes, machines) never hold the same message at
once. Deadlines use the Redis server clock, so consumer clocks may disagree.

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
  returns is the ``Delivery.message_id``.
- ``L:sent:<id>``: a marker (24 h) that ``send`` of that id already pushed.
- ``L:receipt:<call>``: what one ``receive`` call leased (ids and tokens),
  kept for the visibility timeout.
- ``L:dead``: dead letters, JSON ``{body, reason, attempts, message_id, dead_at}``
  (a body that is not UTF-8 is base64 with ``"body_encoding": "base64"``).

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

import base64
import binascii
import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import stamina
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from atlasreg_cursor.domain.errors import (
    LeaseExpired,
    QueueConfigurationError,
    QueueError,
    QueueUnavailable,
)
from atlasreg_cursor.ports.queue import DeadLetter, Delivery, QueueStats

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
MARKER = "@envelope:"
SEND_MARKER_MS = 24 * 3600 * 1000

# --- Lua ------------------------------------------------------------------

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local MARKER = '@envelope:'
local function lease(inflight, envelopes, id, token)
  local raw = redis.call('HGET', envelopes, id)
  if not raw then return nil, -1 end
  local env = cjson.decode(raw)
  if env.token ~= token then
    if env.released == token then return nil, 2 end
    return nil, 0
  end
  local deadline = redis.call('ZSCORE', inflight, id)
  if not deadline or tonumber(deadline) <= now then return nil, 0 end
  return env, 1
end
"""

# KEYS: list, inflight, delayed, envelopes, bodies, sent, receipt of this call
# ARGV: n, visibility_ms, promote_limit, then per slot k: fresh id, token
_RECEIVE = (
    _PRELUDE
    + """
local list, inflight, delayed, envelopes, bodies, sent, receipt = unpack(KEYS)
local n, vis, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local prior = redis.call('GET', receipt)
if prior then
  -- this call ran before and its reply was lost: hand out the same leases
  local again = {0}
  local pairs_ = cjson.decode(prior)
  for i = 1, #pairs_, 2 do
    local id, token = pairs_[i], pairs_[i + 1]
    local raw = redis.call('HGET', envelopes, id)
    local body = redis.call('HGET', bodies, id)
    local deadline = redis.call('ZSCORE', inflight, id)
    if raw and body and deadline and tonumber(deadline) > now then
      local env = cjson.decode(raw)
      if env.token == token then
        again[#again + 1] = id
        again[#again + 1] = body
        again[#again + 1] = env.attempts
        again[#again + 1] = token
      end
    end
  end
  return again
end
for _, zset in ipairs({inflight, delayed}) do
  local ids = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)
  for i = #ids, 1, -1 do
    local id = ids[i]
    redis.call('ZREM', zset, id)
    local raw = redis.call('HGET', envelopes, id)
    if raw then
      local env = cjson.decode(raw)
      env.token = ''
      redis.call('HSET', envelopes, id, cjson.encode(env))
      redis.call('LPUSH', list, MARKER .. id)
    end
  end
end
local out = {}
local taken, scanned = 0, 0
while taken < n and scanned < n + 100 do
  local item = redis.call('LPOP', list)
  if not item then break end
  scanned = scanned + 1
  local slot = taken + 1
  local id, env, body
  if string.sub(item, 1, #MARKER) == MARKER then
    id = string.sub(item, #MARKER + 1)
    local raw = redis.call('HGET', envelopes, id)
    body = redis.call('HGET', bodies, id)
    if raw and body then env = cjson.decode(raw) end
  else
    id = ARGV[2 + 2 * slot]
    if redis.call('HLEN', sent) > 0 then
      local h = redis.sha1hex(item)
      local pending = redis.call('HGET', sent, h)
      if pending then
        local first, rest = string.match(pending, '^(%S+)%s*(.*)$')
        id = first
        if rest == '' then redis.call('HDEL', sent, h) else redis.call('HSET', sent, h, rest) end
      end
    end
    body = item
    env = {message_id = id, attempts = 0, first_seen = now}
    redis.call('HSET', bodies, id, item)
  end
  if env then
    taken = slot
    env.attempts = env.attempts + 1
    env.token = ARGV[3 + 2 * slot]
    redis.call('HSET', envelopes, id, cjson.encode(env))
    redis.call('ZADD', inflight, now + vis, id)
    out[#out + 1] = id
    out[#out + 1] = body
    out[#out + 1] = env.attempts
    out[#out + 1] = env.token
  end
end
if #out > 0 then
  local leased = {}
  for i = 1, #out, 4 do
    leased[#leased + 1] = out[i]
    leased[#leased + 1] = out[i + 3]
  end
  redis.call('SET', receipt, cjson.encode(leased), 'PX', math.max(vis, 1000))
end
local wait = -1
for _, zset in ipairs({inflight, delayed}) do
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if first[2] then
    local d = tonumber(first[2]) - now
    if wait < 0 or d < wait then wait = d end
  end
end
table.insert(out, 1, math.max(wait, -1))
return out
"""
)

# KEYS: inflight, envelopes, bodies; ARGV: id, token
_ACK = (
    _PRELUDE
    + """
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""
)

# KEYS: inflight, envelopes, delayed, list; ARGV: id, token, delay_ms
_RETRY = (
    _PRELUDE
    + """
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
local delay = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
env.token = ''
env.released = ARGV[2]
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(env))
if delay > 0 then
  redis.call('ZADD', KEYS[3], now + delay, ARGV[1])
else
  redis.call('LPUSH', KEYS[4], MARKER .. ARGV[1])
end
return 1
"""
)

# KEYS: inflight, envelopes, bodies, dead; ARGV: id, token, dead letter JSON
_DEAD = (
    _PRELUDE
    + """
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[3])
return 1
"""
)

# KEYS: inflight, envelopes; ARGV: id, token, seconds_ms
_EXTEND = (
    _PRELUDE
    + """
local env, code = lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not env then return code end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

# KEYS: list, sent, marker of this id; ARGV: body, id, marker_ttl_ms
_SEND = """
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return 0 end
local h = redis.sha1hex(ARGV[1])
local pending = redis.call('HGET', KEYS[2], h)
if pending then
  redis.call('HSET', KEYS[2], h, pending .. ' ' .. ARGV[2])
else
  redis.call('HSET', KEYS[2], h, ARGV[2])
end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""

# KEYS: dead, list, envelopes, bodies; ARGV: exact dead entry, id, body, envelope JSON
_REPLAY = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  -- 2: an earlier run of this call (reply lost) already put it back
  local back = redis.call('HEXISTS', KEYS[3], ARGV[2]) + redis.call('HEXISTS', KEYS[4], ARGV[2])
  if back == 2 then
    return 2
  end
  return 0
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('RPUSH', KEYS[2], '@envelope:' .. ARGV[2])
return 1
"""

# KEYS: dead
_PURGE = """
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
"""


def _ms(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1000))


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        if isinstance(client_or_url, str):
            self._client = redis.Redis.from_url(
                client_or_url,
                socket_timeout=poll_cap + 10.0,
                socket_connect_timeout=5.0,
                socket_keepalive=True,
                health_check_interval=30,
                retry=Retry(NoBackoff(), 0),
            )
            self._owned = True
        else:
            self._client = client_or_url
            self._owned = False
        kwargs = self._client.connection_pool.connection_kwargs
        if kwargs.get("decode_responses"):
            raise QueueConfigurationError("the Redis client must not decode responses")
        socket_timeout = kwargs.get("socket_timeout")
        if socket_timeout is not None and socket_timeout <= poll_cap:
            raise QueueConfigurationError(
                f"the Redis client's socket_timeout ({socket_timeout} s) must exceed"
                f" poll_cap ({poll_cap} s), or blocking reads time out"
            )
        self.list_key = f"{key_prefix}{queue_name}"
        self.visibility_timeout = visibility_timeout
        self.poll_cap = poll_cap
        self._inflight = f"{self.list_key}:inflight"
        self._delayed = f"{self.list_key}:delayed"
        self._envelopes = f"{self.list_key}:envelopes"
        self._bodies = f"{self.list_key}:bodies"
        self._sent = f"{self.list_key}:sent"
        self.dead_key = f"{self.list_key}:dead"
        register = self._client.register_script
        self._receive_script = register(_RECEIVE)
        self._ack_script = register(_ACK)
        self._retry_script = register(_RETRY)
        self._dead_script = register(_DEAD)
        self._extend_script = register(_EXTEND)
        self._send_script = register(_SEND)
        self._replay_script = register(_REPLAY)
        self._purge_script = register(_PURGE)

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
            lambda: self._ack_script(
                keys=[self._inflight, self._envelopes, self._bodies],
                args=[delivery.message_id, delivery.lease_token],
            ),
        )
        log.debug("queue.acked", queue=self.list_key, message_id=delivery.message_id)

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
            lambda: self._retry_script(
                keys=[self._inflight, self._envelopes, self._delayed, self.list_key],
                args=[delivery.message_id, delivery.lease_token, _ms(delay_seconds)],
            ),
        )
        log.debug(
            "queue.retried",
            queue=self.list_key,
            message_id=delivery.message_id,
            delay_seconds=delay_seconds,
        )

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """
        Move a delivered message to ``<list>:dead`` with *reason*.

        Raises:
            LeaseExpired: the lease expired or went to another consumer.
            QueueUnavailable: Redis could not be reached.
        """
        record: dict[str, Any] = {
            "message_id": delivery.message_id,
            "reason": reason,
            "attempts": delivery.attempts,
            "dead_at": _now_iso(),
        }
        try:
            record["body"] = delivery.body.decode("utf-8")
        except UnicodeDecodeError:
            record["body"] = base64.b64encode(delivery.body).decode("ascii")
            record["body_encoding"] = "base64"
        entry = json.dumps(record, ensure_ascii=False, sort_keys=True)
        self._leased(
            "dead_letter",
            delivery,
            lambda: self._dead_script(
                keys=[self._inflight, self._envelopes, self._bodies, self.dead_key],
                args=[delivery.message_id, delivery.lease_token, entry],
            ),
        )
        log.info(
            "queue.dead_lettered",
            queue=self.list_key,
            message_id=delivery.message_id,
            reason=reason,
        )

    def send(self, body: bytes) -> str:
        """
        ``RPUSH`` *body* unchanged, as the seed's producers do.

        Returns:
            The id the message will carry as ``Delivery.message_id``.

        Raises:
            QueueUnavailable: Redis could not be reached.
        """
        message_id = uuid.uuid4().hex  # once, before the retries: a re-run finds its marker
        marker = f"{self._sent}:{message_id}"
        self._run(
            "send",
            lambda: self._send_script(
                keys=[self.list_key, self._sent, marker], args=[body, message_id, SEND_MARKER_MS]
            ),
        )
        log.debug("queue.sent", queue=self.list_key, message_id=message_id)
        return message_id

    def extend(self, delivery: Delivery, seconds: float) -> None:
        """
        Renew the lease to end *seconds* from now (server clock).

        Raises:
            LeaseExpired: the lease expired or went to another consumer.
            QueueUnavailable: Redis could not be reached.
        """
        result, _ = self._run(
            "extend",
            lambda: self._extend_script(
                keys=[self._inflight, self._envelopes],
                args=[delivery.message_id, delivery.lease_token, _ms(seconds)],
            ),
        )
        if int(result) != 1:
            raise LeaseExpired(f"lease of {delivery.message_id} on {self.list_key} expired")

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

        def read() -> tuple[dict[str, Any], dict[str, Any], str | None]:
            persistence = dict(self._client.info("persistence"))
            memory = dict(self._client.info("memory"))
            try:
                raw: dict[Any, Any] = dict(self._client.config_get("save"))
            except redis.ResponseError:
                return persistence, memory, None
            value = raw.get("save", raw.get(b"save"))
            return persistence, memory, None if value is None else _text(value)

        (persistence, memory, save), _ = self._run("server_check", read)
        warnings = []
        if not int(persistence.get("aof_enabled", 0)):
            if save == "":
                warnings.append(
                    'Redis has no persistence (appendonly no, save ""): a restart loses every'
                    " queued and in-flight message. Fix: appendonly yes and appendfsync"
                    " everysec in redis.conf (or CONFIG SET appendonly yes)"
                )
            else:
                warnings.append(
                    "Redis keeps the queue in RDB snapshots only (appendonly no): a crash"
                    " loses what changed since the last snapshot. Fix: appendonly yes and"
                    " appendfsync everysec in redis.conf (or CONFIG SET appendonly yes)"
                )
        policy = _text(memory.get("maxmemory_policy", "noeviction"))
        if policy != "noeviction":
            warnings.append(
                f"Redis maxmemory-policy is {policy}: under memory pressure it deletes keys,"
                " queued messages and their leases included. Fix: maxmemory-policy noeviction"
                " (CONFIG SET maxmemory-policy noeviction) and enough maxmemory"
            )
        return warnings

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
        return [letter for entry in raw if (letter := _parse_dead(entry)) is not None]

    def replay_dead(self, message_id: str) -> bool:
        """
        Move the dead letter *message_id* back to the tail with attempts reset.

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
                letter = _parse_dead(entry)
                if letter is None or letter.message_id != message_id:
                    continue
                if self._replay(entry, letter):
                    log.info("queue.dead_replayed", queue=self.list_key, message_id=message_id)
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
        count, _ = self._run("purge_dead", lambda: self._purge_script(keys=[self.dead_key]))
        log.info("queue.dead_purged", queue=self.list_key, count=int(count))
        return int(count)

    # --- internals --------------------------------------------------------

    def _dead_page(self, start: int, size: int) -> list[bytes]:
        chunk, _ = self._run(
            "replay_dead", lambda: self._client.lrange(self.dead_key, start, start + size - 1)
        )
        return [e if isinstance(e, bytes) else e.encode("utf-8") for e in chunk]

    def _replay(self, entry: bytes, letter: DeadLetter) -> bool:
        envelope = json.dumps({"message_id": letter.message_id, "attempts": 0, "token": ""})
        done, _ = self._run(
            "replay_dead",
            lambda: self._replay_script(
                keys=[self.dead_key, self.list_key, self._envelopes, self._bodies],
                args=[entry, letter.message_id, letter.body, envelope],
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
        reply, _ = self._run("receive", lambda: self._receive_script(keys=keys, args=args))
        wait_ms = int(reply[0])
        deliveries = [
            Delivery(
                message_id=reply[i].decode("ascii"),
                body=bytes(reply[i + 1]),
                attempts=int(reply[i + 2]),
                lease_token=reply[i + 3].decode("ascii"),
                identity_from_queue=False,
            )
            for i in range(1, len(reply), 4)
        ]
        return wait_ms, deliveries

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
            log.debug("queue.lease_done_earlier", op=op, message_id=delivery.message_id)
            return
        raise LeaseExpired(f"lease of {delivery.message_id} on {self.list_key} expired")

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


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _parse_dead(entry: bytes | str) -> DeadLetter | None:
    try:
        record = json.loads(entry)
        text = str(record.get("body", ""))
        if record.get("body_encoding") == "base64":
            body = base64.b64decode(text, validate=True)
        else:
            body = text.encode("utf-8")
        dead_at = record.get("dead_at")
        return DeadLetter(
            message_id=str(record.get("message_id", "")),
            body=body,
            reason=str(record.get("reason", "")),
            attempts=int(record.get("attempts", 0)),
            dead_at=dt.datetime.fromisoformat(dead_at) if dead_at else None,
        )
    except (ValueError, TypeError, AttributeError, binascii.Error):
        log.warning("queue.dead_unreadable", size=len(entry))
        return None
