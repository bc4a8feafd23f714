"""AirflowClient against real Airflow stacks: 3.3.2 (/api/v2) and 2.10.5 (/api/v1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest

from atlasreg_cursor.adapters.core.airflow import AirflowClient, error_message, parse_xcom_value
from atlasreg_cursor.domain.errors import ExecutorUnavailable, SourceFailed
from tests.support.airflow_stack import AirflowStack, airflow2, airflow3  # noqa: F401
from tests.support.services import free_port

pytestmark = pytest.mark.airflow

RUN_TIMEOUT = 120.0


@pytest.fixture(params=["v3", "v2"])
def stack(request: pytest.FixtureRequest) -> AirflowStack:
    """Each test runs once against Airflow 3 and once against Airflow 2."""
    return request.getfixturevalue("airflow3" if request.param == "v3" else "airflow2")


@pytest.fixture
def client(stack: AirflowStack):
    """A client with version detection on."""
    c = AirflowClient(base_url=stack.base_url, username=stack.username, password=stack.password)
    yield c
    c.close()


def _run_id() -> str:
    return f"atlasreg__{uuid.uuid4().hex[:12]}"


def test_version_is_detected(client, stack):
    """``auto`` finds the API version the server speaks."""
    assert stack.api_version == client.api_version


def test_success_run_with_xcom_documents(client):
    """A triggered run finishes and its return value is read back as data."""
    run_id = _run_id()
    conf = {"run_id": "run_0123456789ab", "source_config": {"id": "sigel", "documents": 3}}

    triggered = client.trigger("atlasreg_success", run_id, conf)
    finished = client.wait(
        "atlasreg_success", run_id, timeout=RUN_TIMEOUT, poll_initial=0.5, poll_max=2
    )
    value = client.xcom_return_value("atlasreg_success", run_id, "collect")

    assert (run_id, False) == (triggered.dag_run_id, triggered.adopted)
    assert conf == dict(triggered.conf)
    assert "success" == finished.state
    assert {
        "document_ids": [f"run_0123456789ab-sigel-{n}" for n in range(3)],
        "items_count": 3,
    } == value


def test_failed_run_is_reported_with_its_failed_task(client):
    """A failing DAG ends ``failed``; the failed task is named."""
    run_id = _run_id()

    client.trigger("atlasreg_failing", run_id, {})
    finished = client.wait(
        "atlasreg_failing", run_id, timeout=RUN_TIMEOUT, poll_initial=0.5, poll_max=2
    )

    assert "failed" == finished.state
    assert ["explode"] == client.failed_tasks("atlasreg_failing", run_id)


def test_paused_dag_fails_clearly_without_a_run(client):
    """A paused DAG is refused before triggering (the run would stay queued)."""
    run_id = _run_id()

    with pytest.raises(SourceFailed) as info:
        client.trigger("atlasreg_paused", run_id, {})

    assert "dag_paused" == info.value.error_type
    assert "paused" in str(info.value)
    with pytest.raises(SourceFailed) as missing:
        client.get_run("atlasreg_paused", run_id)
    assert "dag_run_not_found" == missing.value.error_type


def test_retrigger_adopts_the_existing_run(client):
    """Triggering the same dag_run_id again adopts the run instead of a second one."""
    run_id = _run_id()
    conf = {"run_id": "run_0123456789ab", "source_config": {"id": "again", "documents": 1}}

    first = client.trigger("atlasreg_success", run_id, conf)
    second = client.trigger("atlasreg_success", run_id, conf)
    finished = client.wait(
        "atlasreg_success", run_id, timeout=RUN_TIMEOUT, poll_initial=0.5, poll_max=2
    )
    third = client.trigger("atlasreg_success", run_id, conf)

    assert not first.adopted
    assert second.adopted
    assert (run_id, run_id) == (second.dag_run_id, third.dag_run_id)
    assert "success" == finished.state
    assert ("success", True) == (third.state, third.adopted)
    response = client.api.call("GET", "/dags/atlasreg_success/dagRuns?limit=100")
    ids = [r["dag_run_id"] for r in response.data["dag_runs"]]
    assert 1 == ids.count(run_id)


def test_unknown_dag(client):
    """An unknown DAG id is ``dag_not_found``."""
    with pytest.raises(SourceFailed) as info:
        client.trigger("no_such_dag", _run_id(), {})

    assert "dag_not_found" == info.value.error_type
    assert "no_such_dag" in str(info.value)


def test_wait_times_out(client):
    """A run still going at the deadline is a ``timeout``."""
    run_id = _run_id()
    client.trigger("atlasreg_slow", run_id, {"source_config": {"seconds": 10}})
    started = time.monotonic()

    with pytest.raises(SourceFailed) as info:
        client.wait("atlasreg_slow", run_id, timeout=1.5, poll_initial=0.2, poll_max=0.5)

    assert "timeout" == info.value.error_type
    # Well before the run itself could end; room for a slow API call on a loaded machine.
    assert time.monotonic() - started < 8


def test_wrong_password_is_an_auth_error(stack):
    """Bad credentials are a clear, permanent ``airflow_auth`` error."""
    c = AirflowClient(base_url=stack.base_url, username=stack.username, password="wrong-password")
    try:
        with pytest.raises(SourceFailed) as info:
            c.check_dag("atlasreg_success")
    finally:
        c.close()

    assert "airflow_auth" == info.value.error_type
    assert "wrong-password" not in str(info.value)
    assert "wrong-password" not in repr(c)


def test_pinned_version_that_does_not_exist_fails(stack):
    """Pinning the other API version gives a clear error, not a crash."""
    other = "v1" if stack.api_version == "v2" else "v2"
    c = AirflowClient(
        base_url=stack.base_url, username=stack.username, password=stack.password, api_version=other
    )
    try:
        with pytest.raises(SourceFailed) as info:
            c.check_dag("atlasreg_success")
    finally:
        c.close()

    assert info.value.error_type in {"dag_not_found", "airflow_error", "airflow_auth"}


# --- v2 tokens (Airflow 3 only) ---------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _expired_copy(token: str, secret: str) -> str:
    """The same claims with ``exp`` an hour ago, signed with the stack's secret."""
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    now = int(time.time())
    payload.update(exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[
        header["alg"]
    ]
    signing_input = f"{header_b64}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def client3(airflow3: AirflowStack):
    """A client of the Airflow 3 stack."""
    c = AirflowClient(
        base_url=airflow3.base_url, username=airflow3.username, password=airflow3.password
    )
    yield c
    c.close()


def test_invalid_token_is_renewed(client3):
    """A 403 "Invalid JWT token" makes the client fetch a new token once."""
    client3.check_dag("atlasreg_success")
    assert 1 == client3.token_requests
    client3.api._token = "not-a-jwt"

    client3.check_dag("atlasreg_success")

    assert 2 == client3.token_requests
    assert "not-a-jwt" != client3.api._token


def test_expired_token_is_renewed(client3, airflow3):
    """A 401 "Token Expired" (a genuinely expired token) makes the client re-authenticate."""
    client3.check_dag("atlasreg_success")
    expired = _expired_copy(client3.api._token, airflow3.jwt_secret)
    client3.api._token, client3.api._token_expiry = expired, None

    run = client3.trigger("atlasreg_success", _run_id(), {})

    assert 2 == client3.token_requests
    assert "queued" == run.state or run.state in {"running", "success"}


def test_token_near_expiry_is_renewed_before_use(client3):
    """A token about to expire is replaced before the request is sent."""
    client3.check_dag("atlasreg_success")
    client3.api._token_expiry = time.time() + 5

    client3.check_dag("atlasreg_success")

    assert 2 == client3.token_requests


# --- no server --------------------------------------------------------------


def test_nothing_listening_is_executor_unavailable():
    """A closed port is ExecutorUnavailable (transient), not a crash."""
    c = AirflowClient(base_url=f"http://127.0.0.1:{free_port()}", username="u", password="p")

    with pytest.raises(ExecutorUnavailable) as info:
        c.trigger("atlasreg_success", _run_id(), {})

    assert info.value.transient


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            {"detail": "Dag with dag_id: 'nope' not found"},
            "HTTP 404: Dag with dag_id: 'nope' not found",
        ),
        (
            409,
            {"detail": {"reason": "Unique constraint violation", "statement": "hidden"}},
            "HTTP 409: Unique constraint violation",
        ),
        (
            422,
            {
                "detail": [
                    {"type": "missing", "loc": ["body", "logical_date"], "msg": "Field required"}
                ]
            },
            "HTTP 422: body.logical_date: Field required",
        ),
        (
            404,
            {
                "detail": "The DAG with dag_id nope",
                "status": 404,
                "title": "DAG not found",
                "type": "x",
            },
            "HTTP 404: DAG not found: The DAG with dag_id nope",
        ),
        (401, {"detail": None, "status": 401, "title": "Unauthorized"}, "HTTP 401: Unauthorized"),
        (500, None, "HTTP 500"),
    ],
)
def test_error_bodies_of_both_versions_are_normalised(status, body, expected):
    """v2 ``detail`` (string, list, object) and v1 problem+json read the same."""
    assert expected == error_message(status, body)


def test_v1_xcom_repr_is_parsed_safely():
    """v1's repr strings are literals; code is refused, never run."""
    assert {"echo": {"k": "v"}, "n": (1, 2)} == parse_xcom_value(
        "{'echo': {'k': 'v'}, 'n': (1, 2)}", repr_string=True
    )
    assert {"a": None} == parse_xcom_value('{"a": null}', repr_string=True)
    with pytest.raises(SourceFailed) as info:
        parse_xcom_value("__import__('os').system('true')", repr_string=True)
    assert "xcom_invalid" == info.value.error_type
