"""CeleryGateway against a real worker on the local Redis."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from atlasreg_cursor.adapters.core.celery import (
    CeleryGateway,
    TaskFailed,
    TaskNotRegistered,
    TaskTimeout,
    as_processing_failed,
    as_source_failed,
)
from atlasreg_cursor.domain.errors import ExecutorUnavailable, ProcessingFailed, SourceFailed
from tests.support.celery_worker import CeleryWorker, celery_worker, core_calls  # noqa: F401
from tests.support.services import free_port

pytestmark = [pytest.mark.celery, pytest.mark.redis]


@pytest.fixture
def gateway(celery_worker: CeleryWorker):
    """A gateway sending to the worker's queue."""
    gw = celery_worker.gateway()
    yield gw
    gw.close()


def test_call_returns_the_result_and_the_worker_got_the_arguments(gateway, core_calls):
    """A task sent by name returns its JSON result; the worker saw the kwargs."""
    result = gateway.call("atlasreg_test.add", kwargs={"x": 2, "y": 3}, timeout=10)

    assert 5 == result
    assert [{"task": "atlasreg_test.add", "arguments": {"x": 2, "y": 3}}] == core_calls(None)


def test_call_with_positional_args_and_chosen_task_id(gateway):
    """Positional args and a caller-chosen task id are honoured."""
    task_id = f"atlasreg-{uuid.uuid4()}"

    result = gateway.call("atlasreg_test.add", args=(40, 2), timeout=10, task_id=task_id)

    assert 42 == result
    assert "SUCCESS" == gateway.app.AsyncResult(task_id).state


def test_failing_task_carries_the_remote_error(gateway):
    """A task that raised gives TaskFailed with the remote type and message."""
    with pytest.raises(TaskFailed) as info:
        gateway.call("atlasreg_test.fail", args=("the pipeline broke",), timeout=10)

    assert "ValueError" == info.value.remote_type
    assert "the pipeline broke" == info.value.remote_message
    assert "ValueError: the pipeline broke" in str(info.value)
    assert "task_failed" == info.value.error_type


def test_failing_task_with_a_class_only_the_worker_knows(gateway):
    """An exception class unknown to the client is reported by its name."""
    with pytest.raises(TaskFailed) as info:
        gateway.call("atlasreg_test.fail_custom", args=("stage 3",), timeout=10)

    assert "PipelineError" == info.value.remote_type
    assert "stage 3" == info.value.remote_message


def test_timeout_revokes_the_running_task(gateway, celery_worker):
    """Past the deadline the call raises TaskTimeout and the task is terminated."""
    marker = uuid.uuid4().hex
    records = redis.Redis.from_url(celery_worker.backend_url, decode_responses=True)
    started = time.monotonic()

    with pytest.raises(TaskTimeout) as info:
        gateway.call("atlasreg_test.sleep", args=(4, marker), timeout=1.0)
    elapsed = time.monotonic() - started

    assert "timeout" == info.value.error_type
    assert elapsed < 3.0
    result = gateway.app.AsyncResult(info.value.task_id)
    deadline = time.monotonic() + 10
    while result.state != "REVOKED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "REVOKED" == result.state
    assert "1" == records.get(f"{celery_worker.prefix}sleep:{marker}:started")
    time.sleep(4.0)
    assert None is records.get(f"{celery_worker.prefix}sleep:{marker}:finished")
    records.close()


def test_unknown_task_is_reported_as_not_registered(gateway):
    """A name no worker knows fails at once with a clear message."""
    started = time.monotonic()

    with pytest.raises(TaskNotRegistered) as info:
        gateway.call("no_such_task", kwargs={"a": 1}, timeout=10)

    assert time.monotonic() - started < 5
    assert "task no_such_task is not registered on any worker" == str(info.value)


def test_task_errors_become_source_or_processing_errors(gateway):
    """Callers choose the error family; the error type survives."""
    with pytest.raises(TaskNotRegistered) as info:
        gateway.call("no_such_task", timeout=10)

    source = as_source_failed(info.value)
    processing = as_processing_failed(info.value)
    assert isinstance(source, SourceFailed)
    assert "task_not_registered" == source.error_type
    assert isinstance(processing, ProcessingFailed)
    assert "not registered on any worker" in str(processing)


def test_broker_down_is_executor_unavailable():
    """A broker on a closed port gives ExecutorUnavailable within seconds."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    gw = CeleryGateway(broker_url=url, result_backend=url)
    started = time.monotonic()
    try:
        with pytest.raises(ExecutorUnavailable) as info:
            gw.call("atlasreg_test.add", args=(1, 2), timeout=30)
    finally:
        gw.close()

    assert time.monotonic() - started < 15
    assert "unreachable" in str(info.value)
    assert info.value.transient


def test_result_backend_down_is_executor_unavailable(celery_worker):
    """A reachable broker with a dead result backend fails fast, not after ~20 s."""
    backend = f"redis://127.0.0.1:{free_port()}/0"
    gw = CeleryGateway(
        broker_url=celery_worker.broker_url, result_backend=backend, queue=celery_worker.queue
    )
    started = time.monotonic()
    try:
        with pytest.raises(ExecutorUnavailable):
            gw.call("atlasreg_test.add", args=(1, 2), timeout=30)
    finally:
        gw.close()

    assert time.monotonic() - started < 10


def test_call_many_bounds_concurrency_and_reports_each_outcome(gateway, core_calls):
    """Every call gets its own outcome; failures do not stop the others."""
    kwargs = [{"doc_id": f"doc-{n}", "run_id": "run_0123456789ab"} for n in range(6)]
    kwargs.append({"doc_id": "doc-fail", "run_id": "run_0123456789ab"})

    outcomes = gateway.call_many("process_document", kwargs, concurrency=3, timeout=20)

    assert [True] * 6 + [False] == [o.ok for o in outcomes]
    assert {"doc_id": "doc-0", "status": "processed"} == outcomes[0].value
    assert isinstance(outcomes[-1].error, TaskFailed)
    assert "cannot process document doc-fail" in str(outcomes[-1].error)
    received = sorted(c["arguments"]["doc_id"] for c in core_calls("process_document"))
    assert sorted(k["doc_id"] for k in kwargs) == received


def test_call_many_shares_one_deadline(gateway):
    """Calls left when the shared deadline passes are timeouts, not hangs."""
    marker = uuid.uuid4().hex
    kwargs = [{"seconds": 3, "marker": f"{marker}-{n}"} for n in range(3)]
    started = time.monotonic()

    outcomes = gateway.call_many("atlasreg_test.sleep", kwargs, concurrency=1, timeout=1.0)

    assert time.monotonic() - started < 4
    assert all(isinstance(o.error, TaskTimeout) for o in outcomes)


def test_call_many_broker_down_raises_executor_unavailable():
    """A dead broker fails the whole batch as ExecutorUnavailable."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    gw = CeleryGateway(broker_url=url, result_backend=url)
    try:
        with pytest.raises(ExecutorUnavailable):
            gw.call_many(
                "process_document", [{"doc_id": "a", "run_id": "r"}] * 3, concurrency=2, timeout=30
            )
    finally:
        gw.close()


def test_repr_hides_the_password():
    """Credentials in the broker URL never show in the repr."""
    gw = CeleryGateway(
        broker_url="redis://:s3cret-pw@127.0.0.1:6379/0",
        result_backend="redis://:s3cret-pw@127.0.0.1:6379/1",
    )
    try:
        text = repr(gw)
    finally:
        gw.close()

    assert "s3cret-pw" not in text
    assert "127.0.0.1:6379" in text
