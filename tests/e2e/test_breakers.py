"""Circuit breakers on real dependencies: a refused webhook port, a real receiver, real Redis."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlasreg_cursor.adapters import metrics
from atlasreg_cursor.adapters.breakers import (
    BreakerBoard,
    CircuitOpen,
    NotifierCircuitOpen,
    SourceCircuitOpen,
)
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain import notifications as notes
from atlasreg_cursor.domain.errors import NotificationUnavailable, SourceFailed
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import RunContext, RunStatus
from atlasreg_cursor.domain.sources import SourceConfig
from atlasreg_cursor.entrypoints.bootstrap import App, build
from atlasreg_cursor.entrypoints.receiver import WebhookReceiver
from atlasreg_cursor.entrypoints.settings import load_settings
from tests.support.redis_server import redis_url  # noqa: F401
from tests.support.services import free_port

SECRET = "whsec_" + base64.b64encode(b"breaker-test-key-0123456789abcd!").decode()
RUN = RunContext(
    run_id="run_0123456789ab",
    date=dt.date(2026, 11, 24),
    message_type=MessageType.START_DAILY_INGEST,
    identity="m-1",
)


def _note(n: int) -> notes.Notification:
    return notes.ingest_complete(
        run_id=f"run_{n:012x}",
        status=RunStatus.SUCCESS,
        completed_at=dt.datetime.now(dt.UTC),
        file_path="gold/2026-11-24/run_x.json",
        sha256="0" * 64,
        documents_count=1,
        errors_count=0,
    )


def _app(tmp_path: Path, port: int, **extra: str) -> App:
    settings = load_settings(
        {
            "CURSOR_HOME": str(tmp_path),
            "HOOK_ENDPOINT": f"http://127.0.0.1:{port}",
            "HOOK_HMAC_SECRET": SECRET,
            "HOOK_ATTEMPTS": "1",
            "HOOK_TIMEOUT_SECONDS": "1",
            "BREAKER_FAIL_MAX": "2",
            "BREAKER_RESET_SECONDS": "1",
            **extra,
        },
        env_file=None,
    )
    return build(settings)


def _state(dependency: str) -> float:
    return float(metrics.BREAKER_STATE.labels(dependency=dependency)._value.get())


def test_webhook_breaker_opens_fails_fast_and_closes_after_a_trial(tmp_path: Path) -> None:
    """Refused twice: open, the next send fails at once; a receiver appears: the trial closes it."""
    port = free_port()
    app = _app(tmp_path, port)
    for n in range(2):
        with pytest.raises(NotificationUnavailable) as refused:
            app.notifier.send(_note(n))
        assert not isinstance(refused.value, CircuitOpen)
    started = time.monotonic()
    with pytest.raises(NotifierCircuitOpen) as fast:
        app.notifier.send(_note(3))
    fail_fast_seconds = time.monotonic() - started
    assert app.breakers is not None
    (row,) = [r for r in app.breakers.snapshot() if r["dependency"] == "webhook"]
    app.breakers.export()
    assert ("open", 2.0) == (row["state"], _state("webhook"))
    assert row["open_since"] is not None
    assert isinstance(fast.value, NotificationUnavailable)  # still the port's transient error
    assert fail_fast_seconds < 0.2

    receiver = WebhookReceiver((SECRET,), port=port)
    try:
        time.sleep(1.1)  # the cooldown
        receipt = app.notifier.send(_note(4))
    finally:
        receiver.stop()
    (row,) = [r for r in app.breakers.snapshot() if r["dependency"] == "webhook"]
    assert (204, "closed", None) == (receipt.status_code, row["state"], row["open_since"])
    assert 1 == len(receiver.received)


@pytest.mark.redis
def test_breaker_state_is_shared_between_daemons_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """With the Redis queue, a breaker one process opened fails fast in another."""
    import uuid

    import redis

    queue_name = f"breaker-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    extra = {"QUEUE_BACKEND": "redis", "REDIS_URL": redis_url, "QUEUE_NAME": queue_name}
    first, second = _app(tmp_path / "a", port, **extra), _app(tmp_path / "b", port, **extra)
    try:
        for n in range(2):
            with pytest.raises(NotificationUnavailable):
                first.notifier.send(_note(n))
        started = time.monotonic()
        with pytest.raises(NotifierCircuitOpen):
            second.notifier.send(_note(3))
        assert time.monotonic() - started < 0.2
        assert second.breakers is not None
        assert second.breakers.shared
        (row,) = [r for r in second.breakers.snapshot() if r["dependency"] == "webhook"]
        assert "open" == row["state"]
    finally:
        first.close()
        second.close()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"cursor:{queue_name}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_source_host_breaker_fails_fast_with_a_typed_error(tmp_path: Path) -> None:
    """A source host refusing connections opens its breaker; its sources then fail as circuit_open."""
    from atlasreg_cursor.adapters.breakers import BreakerExecutor

    port = free_port()
    board = BreakerBoard(fail_max=2, reset_seconds=60)
    executor = BreakerExecutor(
        LocalExecutor(work_dir=tmp_path, scrapy_project_path=None, allow_private_sources=True),
        board,
    )
    source = SourceConfig(
        id="down",
        handler_id="DOWNLOAD_CSV",
        url_feed=f"http://127.0.0.1:{port}/dados.csv",
        timeout_seconds=5,
        csv={"delimiter": ";", "fields": {"title": "t", "url": "u"}},
    )
    errors = []
    for _ in range(3):
        try:
            executor.run_source(source, RUN)
        except SourceFailed as exc:
            errors.append(exc)
    executor.close()

    assert {"network_error", "timeout"} >= {e.error_type for e in errors[:2]}
    assert "circuit_open" == errors[2].error_type
    assert isinstance(errors[2], SourceCircuitOpen)
    assert "source:127.0.0.1" == errors[2].dependency
    assert [("source:127.0.0.1", "open")] == [
        (r["dependency"], r["state"]) for r in board.snapshot()
    ]


@pytest.fixture
def board() -> Iterator[BreakerBoard]:
    """An in-memory board."""
    b = BreakerBoard(fail_max=1, reset_seconds=60)
    yield b
    b.close()


def test_answers_are_not_failures(board: BreakerBoard) -> None:
    """A dependency that answers (a rejection, a business error) keeps its breaker closed."""
    from atlasreg_cursor.domain.errors import NotificationRejected

    breaker = board.breaker_for(
        "webhook",
        counts=lambda e: isinstance(e, NotificationUnavailable),
        open_error=NotifierCircuitOpen,
    )

    def rejected() -> None:
        raise NotificationRejected("400", status_code=400)

    for _ in range(3):
        with pytest.raises(NotificationRejected):
            breaker.call(rejected)

    assert ("closed", 0) == (breaker.state, breaker.failures)


def test_airflow_breaker_fails_fast_while_airflow_is_down(tmp_path: Path) -> None:
    """Airflow refused twice: the breaker opens and the next call fails at once, typed."""
    from atlasreg_cursor.adapters.breakers import ExecutorCircuitOpen
    from atlasreg_cursor.adapters.core.airflow import AirflowClient
    from atlasreg_cursor.domain.errors import ExecutorUnavailable

    board = BreakerBoard(fail_max=2, reset_seconds=60)
    client = AirflowClient(
        base_url=f"http://127.0.0.1:{free_port()}",
        username="u",
        password="p",
        api_version="v1",
        timeout=1,
        breaker=board.breaker_for("airflow", open_error=ExecutorCircuitOpen),
    )
    for _ in range(2):
        with pytest.raises(ExecutorUnavailable) as refused:
            client.check_dag("atlasreg_success")
        assert not isinstance(refused.value, CircuitOpen)
    started = time.monotonic()
    with pytest.raises(ExecutorCircuitOpen) as fast:
        client.check_dag("atlasreg_success")
    elapsed = time.monotonic() - started

    assert "airflow" == fast.value.dependency
    assert elapsed < 0.5
    assert 2.0 == _state("airflow")


def test_celery_breaker_opens_while_the_broker_is_down() -> None:
    """The broker on a closed port twice: the celery breaker opens, the next call fails at once."""
    from atlasreg_cursor.adapters.breakers import ExecutorCircuitOpen
    from atlasreg_cursor.adapters.core.celery import CeleryGateway
    from atlasreg_cursor.domain.errors import ExecutorUnavailable

    board = BreakerBoard(fail_max=2, reset_seconds=60)
    url = f"redis://127.0.0.1:{free_port()}/0"
    gateway = CeleryGateway(
        broker_url=url,
        result_backend=url,
        breaker=board.breaker_for("celery", open_error=ExecutorCircuitOpen),
    )
    try:
        for _ in range(2):
            with pytest.raises(ExecutorUnavailable) as refused:
                gateway.call("atlasreg_test.add", args=(1, 2), timeout=30)
            assert not isinstance(refused.value, CircuitOpen)
        started = time.monotonic()
        with pytest.raises(ExecutorCircuitOpen) as fast:
            gateway.call("atlasreg_test.add", args=(1, 2), timeout=30)
        elapsed = time.monotonic() - started
    finally:
        gateway.close()
        board.export()

    assert "celery" == fast.value.dependency
    assert isinstance(fast.value, ExecutorUnavailable)  # still the port's transient error
    assert elapsed < 0.5
    assert 2.0 == _state("celery")


def test_storage_breaker_opens_after_the_store_failed_n_times() -> None:
    """An S3 endpoint refusing connections three times: open; reads and writes then fail fast."""
    from atlasreg_cursor.adapters.breakers import BreakerStore, StorageCircuitOpen
    from atlasreg_cursor.adapters.s3 import S3ObjectStore
    from atlasreg_cursor.domain.errors import StorageUnavailable

    board = BreakerBoard(fail_max=3, reset_seconds=60)
    store = BreakerStore(
        S3ObjectStore(
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            bucket="gold",
            access_key="cursor",
            secret_key="cursor-secret",
            timeout=2,
        ),
        board,
    )
    failures = []
    for key in ("runs/a.json", "runs/b.json", "runs/c.json"):
        with pytest.raises(StorageUnavailable) as down:
            store.head(key)
        failures.append(down.value)
    started = time.monotonic()
    with pytest.raises(StorageCircuitOpen) as fast_read:
        store.get("runs/a.json")
    with pytest.raises(StorageCircuitOpen):
        store.put("runs/d.json", b"{}", if_none_match=True)
    elapsed = time.monotonic() - started
    board.export()

    assert not any(isinstance(f, CircuitOpen) for f in failures)
    assert "storage" == fast_read.value.dependency
    assert elapsed < 0.5
    assert [("storage", "open", 3)] == [
        (r["dependency"], r["state"], r["failures"]) for r in board.snapshot()
    ]
    assert 2.0 == _state("storage")
