"""The MessageQueue contract on the real Redis: ``RedisListQueue``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue
from atlasreg_cursor.ports.queue import MessageQueue
from tests.contract.queue_contract import QueueContract, QueueFactory
from tests.support.redis_server import redis_prefix, redis_url  # noqa: F401

pytestmark = pytest.mark.redis


class TestRedisListQueue(QueueContract):
    """Each test gets its own list under a fresh key prefix on DB 15."""

    MIN_VISIBILITY = 1.0
    REDELIVERY_SLACK = 2.0

    @pytest.fixture
    def queue_factory(self, redis_url: str, redis_prefix: str) -> Iterator[QueueFactory]:
        """Consumers with their own connections on one fresh list."""
        made: list[RedisListQueue] = []

        def make(visibility_timeout: float) -> MessageQueue:
            queue = RedisListQueue(
                redis_url,
                key_prefix=f"{redis_prefix}:queue:",
                visibility_timeout=visibility_timeout,
                poll_cap=0.5,
            )
            made.append(queue)
            return queue

        yield make
        for queue in made:
            queue.close()
