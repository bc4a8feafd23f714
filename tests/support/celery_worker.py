"""A real Celery worker running ``tests.fixtures.core_tasks`` on the local Redis.

One worker per test session (prefork, two children, so a running task can
be revoked with ``terminate=True``), on Redis DB 14 (broker) and DB 13
(results and the calls the tasks record); both are flushed before it starts.
Ready when it answers a ping; stopped (warm, then killed) by its process
group at the end of the session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from .services import missing_service, wait_until

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("TEST_CELERY_BROKER", "redis://127.0.0.1:6379/14")
BACKEND_URL = os.environ.get("TEST_CELERY_BACKEND", "redis://127.0.0.1:6379/13")
HOSTNAME = "test@localhost"
START_TIMEOUT = 60.0


@attrs.frozen
class CeleryWorker:
    """Where the worker listens, and its process."""

    broker_url: str
    backend_url: str
    hostname: str
    pid: int
    log_path: Path


_lock = threading.Lock()
_state: dict[str, Any] = {}


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def _ping(app: Any) -> bool:
    replies = app.control.ping(destination=[HOSTNAME], timeout=0.5) or []
    return any(HOSTNAME in reply for reply in replies)


def _start() -> CeleryWorker:
    import redis
    from celery import Celery

    for url in (BROKER_URL, BACKEND_URL):
        client = redis.Redis.from_url(url)
        try:
            client.ping()
        except redis.RedisError as exc:
            missing_service(f"Redis for the Celery worker at {url} ({exc})")
        finally:
            client.close()
    _flush(BROKER_URL)
    _flush(BACKEND_URL)
    log_path = Path(tempfile.mkdtemp(prefix="celery-worker-")) / "worker.log"
    env = {
        **os.environ,
        "CORE_TASKS_BROKER": BROKER_URL,
        "CORE_TASKS_BACKEND": BACKEND_URL,
        "CORE_TASKS_RECORDS": BACKEND_URL,
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
                f"--hostname={HOSTNAME}",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _state["proc"] = proc
    client = Celery("worker-probe", broker=BROKER_URL, backend=BACKEND_URL, set_as_current=False)
    client.conf.update(accept_content=["json"], result_accept_content=["json"])
    try:
        ready = wait_until(
            lambda: proc.poll() is None and _ping(client), timeout=START_TIMEOUT, interval=0.2
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
        hostname=HOSTNAME,
        pid=proc.pid,
        log_path=log_path,
    )


def _stop() -> None:
    proc: subprocess.Popen[bytes] | None = _state.pop("proc", None)
    _state.pop("worker", None)
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


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
    import redis

    from tests.fixtures.core_tasks import CALLS_KEY

    client = redis.Redis.from_url(celery_worker.backend_url, decode_responses=True)
    client.delete(CALLS_KEY)

    def calls(task: str | None = None) -> list[dict[str, Any]]:
        entries = [json.loads(raw) for raw in client.lrange(CALLS_KEY, 0, -1)]
        return [e for e in entries if task is None or e["task"] == task]

    try:
        yield calls
    finally:
        client.close()
