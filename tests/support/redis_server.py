"""The real Redis server for tests: its URL, a fresh key prefix, cleanup.

Tests that break Redis (kill it, restart it, cut its connections) use a
:class:`ThrowawayRedis` of their own on a free loopback port, never the
shared server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .services import free_port, missing_service, wait_until

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis (DB 15 unless TEST_REDIS_URL says otherwise)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis at {REDIS_URL} ({exc})")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    import redis

    prefix = f"test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@attrs.define
class ThrowawayRedis:
    """A redis-server process on a free port with its data in *directory*.

    The append-only file is on (``appendfsync`` *fsync*, ``always`` by
    default), so a restart, or a crash of the server (:meth:`kill`), keeps
    every write it answered.
    """

    port: int
    directory: Path
    fsync: str = "always"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING with its data loaded."""
        import redis

        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            if not wait_until(lambda: bool(client.ping()), timeout=10):
                raise RuntimeError("throwaway redis-server did not start")
        finally:
            client.close()

    def stop(self) -> None:
        """Stop it the way an operator restarts it (SIGTERM: it flushes and exits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)

    def kill(self) -> None:
        """Kill it (SIGKILL, like a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A throwaway Redis for tests that break it."""
    if shutil.which("redis-server") is None:
        missing_service("redis-server binary for the tests that break Redis")
    server = ThrowawayRedis(port=free_port(), directory=tmp_path)
    server.start()
    yield server
    server.kill()
