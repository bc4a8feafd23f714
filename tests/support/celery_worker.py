"""A real Celery worker running ``tests.fixtures.core_tasks`` on the local Redis.

One worker per test session (prefork, two children, so a running task can
be revoked with ``terminate=True``) with Redis DB 14 as broker and DB 13 for
results and the calls the tasks record. Each session has its own queue,
worker name and key prefix, so test sessions running at the same time on
one machine do not take each other's tasks; its queue is purged before the
worker starts and its keys are deleted at the end. Ready when the worker
answers a ping; stopped (warm, then killed) by its process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from atlasreg_cursor.adapters.core.celery import CeleryGateway

from .services import missing_service, wait_until

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("TEST_CELERY_BROKER", "redis://127.0.0.1:6379/14")
BACKEND_URL = os.environ.get("TEST_CELERY_BACKEND", "redis://127.0.0.1:6379/13")
START_TIMEOUT = 60.0


@attrs.frozen(kw_only=True)
class CeleryWorker:
    """Where the worker listens, its queue, and where its tasks record."""

    broker_url: str
    backend_url: str
    queue: str
    hostname: str
    prefix: str
    pid: int
    log_path: Path

    @property
    def calls_key(self) -> str:
        """The Redis list of the calls the tasks received."""
        return self.prefix + "calls"

    def gateway(self) -> CeleryGateway:
        """A new gateway sending to this worker's queue."""
        return CeleryGateway(
            broker_url=self.broker_url, result_backend=self.backend_url, queue=self.queue
        )


_lock = threading.Lock()
_state: dict[str, Any] = {}


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _ping(app: Any, hostname: str) -> bool:
    replies = app.control.ping(destination=[hostname], timeout=0.5) or []
    return any(hostname in reply for reply in replies)


def _delete_prefix(url: str, pattern: str) -> None:
    client = _redis(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _start() -> CeleryWorker:
    import redis
    from celery import Celery

    for url in (BROKER_URL, BACKEND_URL):
        client = _redis(url)
        try:
            client.ping()
        except redis.RedisError as exc:
            missing_service(f"Redis for the Celery worker at {url} ({exc})")
        finally:
            client.close()
    session = uuid.uuid4().hex[:10]
    queue = f"atlasreg-test-{session}"
    hostname = f"test-{session}@localhost"
    prefix = f"core-tasks:{session}:"
    _delete_prefix(BROKER_URL, f"{queue}*")  # purge: the queue is the session's own
    log_path = Path(tempfile.mkdtemp(prefix="celery-worker-")) / "worker.log"
    env = {
        **os.environ,
        "CORE_TASKS_BROKER": BROKER_URL,
        "CORE_TASKS_BACKEND": BACKEND_URL,
        "CORE_TASKS_RECORDS": BACKEND_URL,
        "CORE_TASKS_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.fixtures.core_tasks",
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--queues={queue}",
                f"--hostname={hostname}",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _state["proc"] = proc
    _state["cleanup"] = (queue, prefix)
    client = Celery("worker-probe", broker=BROKER_URL, backend=BACKEND_URL, set_as_current=False)
    client.conf.update(accept_content=["json"], result_accept_content=["json"])
    try:
        ready = wait_until(
            lambda: proc.poll() is None and _ping(client, hostname),
            timeout=START_TIMEOUT,
            interval=0.2,
        )
    finally:
        client.close()
    if not ready:
        _stop()
        tail = log_path.read_text(errors="replace")[-3000:]
        pytest.fail(f"the Celery worker did not answer a ping within {START_TIMEOUT:.0f}s:\n{tail}")
    return CeleryWorker(
        broker_url=BROKER_URL,
        backend_url=BACKEND_URL,
        queue=queue,
        hostname=hostname,
        prefix=prefix,
        pid=proc.pid,
        log_path=log_path,
    )


def _stop() -> None:
    proc: subprocess.Popen[bytes] | None = _state.pop("proc", None)
    cleanup: tuple[str, str] | None = _state.pop("cleanup", None)
    _state.pop("worker", None)
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if cleanup is not None:
        queue, prefix = cleanup
        for pattern in (f"{queue}*", f"_kombu.binding*.{queue}"):
            _delete_prefix(BROKER_URL, pattern)
        _delete_prefix(BACKEND_URL, f"{prefix}*")


@pytest.fixture(scope="session")
def celery_worker() -> Iterator[CeleryWorker]:
    """The session's one real worker (started on first use, stopped at the end)."""
    with _lock:
        worker = _state.get("worker")
        if worker is None:
            worker = _state["worker"] = _start()
    yield worker
    with _lock:
        _stop()


@pytest.fixture
def core_calls(
    celery_worker: CeleryWorker,
) -> Iterator[Callable[[str | None], list[dict[str, Any]]]]:
    """Forget recorded calls; return a function listing the calls since (by task)."""
    client = _redis(celery_worker.backend_url)
    client.delete(celery_worker.calls_key)

    def calls(task: str | None = None) -> list[dict[str, Any]]:
        entries = [json.loads(raw) for raw in client.lrange(celery_worker.calls_key, 0, -1)]
        return [e for e in entries if task is None or e["task"] == task]

    try:
        yield calls
    finally:
        client.close()
