"""Traffic of the Cloudflare adapters, recorded by the emulator, checked against the API schemas.

Every operation the adapters use (and the emulator serves) is exercised,
including error answers; each recorded exchange is validated with
``jsonschema`` against the OpenAPI subset (or the SDK shapes for publish),
and the validator itself is shown to reject traffic that breaks them.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.cloudflare._http import CloudflareAPIError, CloudflareClient
from atlasreg_cursor.adapters.cloudflare.kv import KVConfigSource
from atlasreg_cursor.adapters.cloudflare.queue import CloudflareQueue
from atlasreg_cursor.domain.errors import ConfigError, QueueConfigurationError
from tests.emulator.cloudflare import CloudflareEmulator, running
from tests.emulator.schema import Exchange, find_operation, validate_exchange

pytestmark = pytest.mark.cloudflare

ACCOUNT = "0123456789abcdef0123456789abcdef"
QUEUE = "fedcba9876543210fedcba9876543210"
PULL = f"/client/v4/accounts/{ACCOUNT}/queues/{QUEUE}/messages/pull"
ACK = f"/client/v4/accounts/{ACCOUNT}/queues/{QUEUE}/messages/ack"
PUBLISH = f"/client/v4/accounts/{ACCOUNT}/queues/{QUEUE}/messages"
KV_VALUE = f"/client/v4/accounts/{ACCOUNT}/storage/kv/namespaces/{'a' * 32}/values/k"
JSON_HEADERS = {"authorization": "Bearer t", "content-type": "application/json"}


def client_for(emulator: CloudflareEmulator) -> CloudflareClient:
    """A client for the emulator's account."""
    return CloudflareClient(
        api_endpoint=emulator.url, token=emulator.token, account_id=emulator.account_id
    )


def exercise(emulator: CloudflareEmulator) -> None:
    """Use every operation through the adapters and the client, successes and failures."""
    dlq = emulator.create_queue()
    queue_id = emulator.create_queue(max_retries=5)
    namespace = emulator.create_namespace()
    queue = CloudflareQueue(client_for(emulator), queue_id=queue_id, dlq_queue_id=dlq)
    kv = KVConfigSource(client_for(emulator), namespace_id=namespace)
    client = client_for(emulator)

    queue.send(b'{"date":"2026-11-24","type":"start_daily_ingest"}')
    queue.send(b"plain text body")
    client.request_envelope(
        "POST",
        f"queues/{queue_id}/messages/batch",
        body={
            "delay_seconds": 0,
            "messages": [
                {"body": {"n": 1}, "content_type": "json"},
                {"body": "x", "content_type": "text", "delay_seconds": 0},
            ],
        },
    )
    emulator.inject_message(queue_id, b"\x00\x01", content_type="bytes")
    first, second, third, fourth, fifth = queue.receive(5, wait_seconds=0)
    queue.ack(first)
    queue.retry(second, 0)
    queue.retry(third, 30)
    queue.dead_letter(fourth, "poison")
    queue.extend(fifth, 60)
    queue.ack(fifth)
    queue.ack(fifth)  # a late (repeated) ack is accepted

    kv.put_value("NEWS_WATCHLIST_CONFIG", b'{"sources": []}', metadata={"v": 1})
    client.request_raw(
        "PUT",
        f"storage/kv/namespaces/{namespace}/values/raw%3Akey",
        body=b"raw value",
        headers={"Content-Type": "application/octet-stream"},
        query={"expiration_ttl": 3600},
    )
    kv.load()
    assert ["NEWS_WATCHLIST_CONFIG", "raw:key"] == list(kv.list_keys())
    client.request_json("GET", f"storage/kv/namespaces/{namespace}/metadata/NEWS_WATCHLIST_CONFIG")

    assert kv.get_value("missing") is None
    with pytest.raises(ConfigError):
        KVConfigSource(client_for(emulator), namespace_id="b" * 32).load()
    with pytest.raises(CloudflareAPIError):
        client.request_json("GET", f"storage/kv/namespaces/{namespace}/metadata/missing")
    with pytest.raises(QueueConfigurationError):
        CloudflareQueue(client_for(emulator), queue_id="e" * 32).receive(1)
    emulator.fail_next(1, status=429, retry_after=0)
    queue.receive(1, wait_seconds=0)
    emulator.fail_next(1, status=403, code=10106, message="Unauthorized")
    with pytest.raises(QueueConfigurationError):
        queue.ack(second)


@pytest.mark.parametrize("shape", ["object", "list"])
def test_adapter_traffic_matches_the_schemas(shape: str) -> None:
    """Every exchange of a full workout conforms, for both pull result shapes."""
    with running(pull_result_shape=shape) as emulator:
        exercise(emulator)

    operations = Counter(
        found[0].op_id
        for e in emulator.requests
        if (found := find_operation(e.method, e.path)) is not None
    )
    statuses = {e.status for e in emulator.requests}
    assert [] == emulator.schema_violations
    assert {
        "queue-v2-messages-pull",
        "queue-v2-messages-ack",
        "queue-messages-push",
        "queue-messages-bulk-push",
        "workers-kv-namespace-read-key-value-pair",
        "workers-kv-namespace-write-key-value-pair-with-metadata",
        "workers-kv-namespace-read-the-metadata-for-a-key",
        "workers-kv-namespace-list-a-namespace'-s-keys",
    } == set(operations)
    assert {200, 403, 404, 429} <= statuses


def test_recorded_traffic_never_holds_the_token() -> None:
    """The emulator's record keeps no bearer token."""
    with running() as emulator:
        exercise(emulator)

    assert all(emulator.token.encode() not in e.request_body for e in emulator.requests)
    assert all(emulator.token not in json.dumps(e.request_headers) for e in emulator.requests)


# --- the validator rejects what breaks the schemas -------------------------------------


def request(
    path: str, body: object, *, status: int = 200, answer: object = None, method: str = "POST"
) -> Exchange:
    """An exchange with a JSON request and (by default) a valid-looking JSON response."""
    if answer is None:
        answer = {"success": True, "errors": [], "messages": [], "result": []}
    return Exchange(
        method=method,
        raw_path=path,
        query={},
        request_headers=dict(JSON_HEADERS),
        request_body=json.dumps(body).encode(),
        status=status,
        response_headers={"content-type": "application/json"},
        response_body=json.dumps(answer).encode(),
    )


@pytest.mark.parametrize(
    ("exchange", "fragment"),
    [
        (request(PULL, {"batch_size": 10, "visibility_timeout": 1000}), "visibility_timeout"),
        (request(PULL, {"batch_size": "10"}), "batch_size"),
        (request(ACK, {"acks": [{"lease": "x"}]}), "lease"),
        (request(ACK, {"retries": [{"lease_id": "x", "delay_seconds": "10"}]}), "delay_seconds"),
        (request(PUBLISH, {"body": {"a": 1}, "content_type": "v8"}), "request"),
        (request(PUBLISH, {"body": {"a": 1}, "content_type": "text"}), "request"),
        (
            request(
                PULL,
                {},
                answer={
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": {"messages": [{"id": 5}]},
                },
            ),
            "id",
        ),
        (
            request(
                ACK,
                {},
                status=404,
                answer={"success": False, "errors": [], "messages": [], "result": None},
            ),
            "errors",
        ),
        (
            request(
                ACK,
                {},
                status=400,
                answer={
                    "success": True,
                    "errors": [{"code": 10207}],
                    "messages": [],
                    "result": None,
                },
            ),
            "success",
        ),
    ],
    ids=[
        "misspelt-visibility",
        "batch-size-string",
        "ack-field-name",
        "delay-string",
        "publish-v8",
        "publish-text-object",
        "pull-id-number",
        "failure-without-errors",
        "failure-says-success",
    ],
)
def test_validator_rejects_broken_exchanges(exchange: Exchange, fragment: str) -> None:
    """Requests and responses that break the shapes are reported."""
    problems = validate_exchange(exchange)

    assert problems
    assert any(fragment in p for p in problems), problems


def test_validator_requires_a_bearer_token() -> None:
    """A request without ``Authorization: Bearer`` is reported."""
    exchange = request(PULL, {})
    exchange.request_headers.pop("authorization")

    assert ["POST"] == [p.split()[0] for p in validate_exchange(exchange) if "Bearer" in p]


def test_validator_checks_kv_media_types() -> None:
    """A KV value answered as JSON (instead of raw bytes) is reported."""
    exchange = Exchange(
        method="GET",
        raw_path=KV_VALUE,
        query={},
        request_headers={"authorization": "Bearer t"},
        request_body=b"",
        status=200,
        response_headers={"content-type": "application/json"},
        response_body=b'{"result": "v"}',
    )

    assert any("application/octet-stream" in p for p in validate_exchange(exchange))


def test_valid_pull_forms_pass() -> None:
    """Both the 2024 list form and the newer object form of a pull response conform."""
    message = {
        "id": "1ad27d24c83de78953da635dc2ea208f",
        "body": base64.b64encode(b'{"task":"run"}').decode(),
        "timestamp_ms": 1689615013586,
        "attempts": 1,
        "metadata": {"CF-sourceMessageSource": "dash", "CF-Content-Type": "json"},
        "lease_id": "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2Q0JDLUhTNTEyIn0..NXmbr8h6",
    }
    envelope = {"success": True, "errors": [], "messages": []}
    as_list = request(PULL, {"batch_size": 10}, answer={**envelope, "result": [message]})
    as_object = request(
        PULL,
        {"batch_size": 10, "visibility_timeout_ms": 300000},
        answer={**envelope, "result": {"message_backlog_count": 10, "messages": [message]}},
    )

    assert [] == validate_exchange(as_list)
    assert [] == validate_exchange(as_object)


def test_schema_file_is_the_reference_subset() -> None:
    """The copy the validator reads has the six operations of the reference subset."""
    spec = json.loads(
        (Path(__file__).parents[1] / "emulator" / "cloudflare-openapi-subset.json").read_text()
    )

    assert 6 == sum(len(methods) for methods in spec["paths"].values())
