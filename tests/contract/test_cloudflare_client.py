"""``CloudflareClient`` against the emulator: URL building, retries, typed errors, no token leaks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import stamina
from structlog.testing import capture_logs

from atlasreg_cursor.adapters.cloudflare._http import (
    CloudflareAPIError,
    CloudflareClient,
    CloudflareConfigurationError,
    CloudflareUnavailable,
    api_base,
    parse_retry_after,
)
from tests.emulator.cloudflare import CloudflareEmulator, cloudflare_emulator  # noqa: F401
from tests.support.services import free_port

pytestmark = pytest.mark.cloudflare

TOKEN = "cf-secret-token-do-not-leak-4242"


@pytest.fixture
def emulator(cloudflare_emulator: CloudflareEmulator) -> CloudflareEmulator:
    """The per-test emulator, accepting :data:`TOKEN`."""
    cloudflare_emulator.token = TOKEN
    return cloudflare_emulator


@pytest.fixture
def client(emulator: CloudflareEmulator) -> Iterator[CloudflareClient]:
    """A client for the emulator's account."""
    made = CloudflareClient(api_endpoint=emulator.url, token=TOKEN, account_id=emulator.account_id)
    yield made
    made.close()


def pull(client: CloudflareClient, queue_id: str) -> object:
    """One pull of at most one message."""
    return client.request_json("POST", f"queues/{queue_id}/messages/pull", body={"batch_size": 1})


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://api.cloudflare.com", "https://api.cloudflare.com/client/v4"),
        ("https://api.cloudflare.com/", "https://api.cloudflare.com/client/v4"),
        ("https://api.cloudflare.com/client/v4/", "https://api.cloudflare.com/client/v4"),
        ("http://127.0.0.1:8787/custom", "http://127.0.0.1:8787/custom"),
    ],
)
def test_api_base(endpoint: str, expected: str) -> None:
    """``/client/v4`` is appended only when the endpoint has no path."""
    assert expected == api_base(endpoint)


@pytest.mark.parametrize("endpoint", ["api.cloudflare.com", "ftp://x", "http://"])
def test_api_base_refuses_non_urls(endpoint: str) -> None:
    """Anything but an http(s) URL with a host is refused at construction."""
    with pytest.raises(ValueError, match="http"):
        CloudflareClient(api_endpoint=endpoint, token=TOKEN, account_id="a")


@pytest.mark.parametrize(
    ("value", "expected"), [("3", 3.0), ("0", 0.0), ("9999", 60.0), (None, None), ("soon", None)]
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """``Retry-After`` seconds are read and capped; junk is ignored."""
    assert expected == parse_retry_after(value)


def test_explicit_api_path_is_kept(emulator: CloudflareEmulator) -> None:
    """An endpoint given with ``/client/v4`` reaches the same routes."""
    queue_id = emulator.create_queue()
    client = CloudflareClient(
        api_endpoint=emulator.url + "/client/v4/", token=TOKEN, account_id=emulator.account_id
    )

    result = pull(client, queue_id)

    assert {"message_backlog_count": 0, "messages": []} == result


def test_retry_after_is_honoured(emulator: CloudflareEmulator, client: CloudflareClient) -> None:
    """A 429 with ``Retry-After: 2`` waits that long (more than the first backoff), then succeeds."""
    queue_id = emulator.create_queue()
    emulator.fail_next(1, status=429, retry_after=2)
    stamina.set_testing(False)

    start = time.monotonic()
    pull(client, queue_id)
    elapsed = time.monotonic() - start

    assert [429, 200] == [e.status for e in emulator.requests]
    assert "2" == emulator.requests[0].response_headers["retry-after"]
    assert 1.9 <= elapsed < 6


def test_5xx_then_success(emulator: CloudflareEmulator, client: CloudflareClient) -> None:
    """Two 5xx answers are retried; the third attempt's result is returned."""
    queue_id = emulator.create_queue()
    emulator.fail_next(1, status=500)
    emulator.fail_next(1, status=502)

    result = pull(client, queue_id)

    assert {"message_backlog_count": 0, "messages": []} == result
    assert [500, 502, 200] == [e.status for e in emulator.requests]


def test_persistent_429_is_unavailable(
    emulator: CloudflareEmulator, client: CloudflareClient
) -> None:
    """Rate limiting that does not end gives ``CloudflareUnavailable`` with the code."""
    queue_id = emulator.create_queue()
    emulator.fail_next(None, status=429, retry_after=0)

    with pytest.raises(CloudflareUnavailable) as info:
        pull(client, queue_id)

    assert 429 == info.value.status
    assert (10250,) == info.value.codes
    assert 3 == len(emulator.requests)


def test_connection_refused_is_unavailable() -> None:
    """Nobody listening is ``CloudflareUnavailable`` with no status."""
    client = CloudflareClient(
        api_endpoint=f"http://127.0.0.1:{free_port()}", token=TOKEN, account_id="acc", timeout=2
    )

    with pytest.raises(CloudflareUnavailable) as info:
        client.request_json("POST", "queues/x/messages/pull", body={})

    assert info.value.status is None
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("setup", "setting"),
    [
        ("token", "CF_API_TOKEN"),
        ("account", "CF_ACCOUNT_ID"),
        ("queue", "CF_QUEUE_ID"),
        ("malformed", "CF_QUEUE_ID"),
        ("route", "CF_API_ENDPOINT"),
    ],
)
def test_configuration_errors_are_fatal_and_name_the_setting(
    emulator: CloudflareEmulator, setup: str, setting: str
) -> None:
    """403, 10104, 10107 and 7003 are not retried and say which setting to check."""
    queue_id = emulator.create_queue()
    token, account, endpoint = TOKEN, emulator.account_id, emulator.url
    if setup == "token":
        token = "wrong-" + TOKEN
    elif setup == "account":
        account = "f" * 32
    elif setup == "queue":
        queue_id = "e" * 32
    elif setup == "malformed":
        queue_id = "my-queue"
    else:
        endpoint += "/client/v9"
    client = CloudflareClient(api_endpoint=endpoint, token=token, account_id=account)

    with pytest.raises(CloudflareConfigurationError, match=setting) as info:
        pull(client, queue_id)

    assert 1 == len(emulator.requests)
    assert TOKEN not in str(info.value)
    emulator.schema_violations.clear()  # a malformed queue id breaks the path schema on purpose


def test_other_4xx_is_a_plain_api_error(
    emulator: CloudflareEmulator, client: CloudflareClient
) -> None:
    """A 400 for a bad body is neither fatal configuration nor transient."""
    queue_id = emulator.create_queue()

    with pytest.raises(CloudflareAPIError) as info:
        client.request_json("POST", f"queues/{queue_id}/messages/pull", body={"batch_size": 500})

    assert type(info.value) is CloudflareAPIError
    assert 400 == info.value.status
    assert 1 == len(emulator.requests)


def test_token_never_in_repr_logs_or_errors(
    emulator: CloudflareEmulator, client: CloudflareClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries, failures and reprs never show the token."""
    queue_id = emulator.create_queue()
    emulator.fail_next(2, status=503)
    emulator.fail_next(None, status=403, code=10000, message="Authentication error")
    stamina.set_testing(True, attempts=3)
    caplog.set_level(logging.DEBUG)

    with capture_logs() as logs, pytest.raises(CloudflareConfigurationError) as info:
        pull(client, queue_id)

    assert TOKEN not in repr(client)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert TOKEN not in str(logs)
    assert TOKEN not in caplog.text
    assert any(entry["event"] == "cloudflare.request" for entry in logs)
    assert 3 == len(emulator.requests)
