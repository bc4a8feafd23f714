"""The Redis queue's client: built from a URL, or checked when given."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from atlasreg_cursor.domain.errors import QueueConfigurationError


def queue_client(client_or_url: str | redis.Redis, *, poll_cap: float) -> tuple[redis.Redis, bool]:
    """
    Return a client fit for the queue and whether the queue owns it.

    A URL gets a client with socket timeouts above *poll_cap*, keepalive,
    health checks and no retries of its own (the queue retries). A given
    client must not decode responses and must not time out a blocking read
    of *poll_cap* seconds.

    Raises:
        QueueConfigurationError: the given client does not fit.
    """
    if isinstance(client_or_url, str):
        client = redis.Redis.from_url(
            client_or_url,
            socket_timeout=poll_cap + 10.0,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 0),
        )
        owned = True
    else:
        client, owned = client_or_url, False
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("decode_responses"):
        raise QueueConfigurationError("the Redis client must not decode responses")
    socket_timeout = kwargs.get("socket_timeout")
    if socket_timeout is not None and socket_timeout <= poll_cap:
        raise QueueConfigurationError(
            f"the Redis client's socket_timeout ({socket_timeout} s) must exceed"
            f" poll_cap ({poll_cap} s), or blocking reads time out"
        )
    return client, owned
