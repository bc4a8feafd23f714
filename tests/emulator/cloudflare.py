"""A local Cloudflare API emulator: Queues (pull consumer, publish) and Workers KV.

A real HTTP server on 127.0.0.1 (werkzeug, threaded, free port) speaking
``/client/v4`` the way the reference describes Cloudflare. The parts:

- :mod:`tests.emulator.server`: the server, bearer token check (403, code
  10000 for KV, 10106 for Queues), routing (unknown route 404/7003), the
  envelope, and faults injected on demand: error answers (429 with
  ``Retry-After``, 5xx) with :meth:`CloudflareEmulator.fail_next`, replies
  lost after the request was applied with ``drop_reply_next``;
- :mod:`tests.emulator.queues`: pull, ack, publish, batch publish;
- :mod:`tests.emulator.kv`: values, metadata, keys.

:class:`CloudflareEmulator` puts them together as one account with its test
hooks. Every exchange is recorded (``requests``; the token is never kept) and
checked against the OpenAPI shapes by :mod:`tests.emulator.schema`; problems
are collected in ``schema_violations``. The ``cloudflare_emulator`` fixture
fails the test when there are any.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from tests.emulator.kv import KVApi, KVEntry
from tests.emulator.queues import ContentType, EmulatedMessage, EmulatedQueue, QueuesApi
from tests.emulator.schema import Exchange
from tests.emulator.server import (
    API_PREFIX,
    DEFAULT_ACCOUNT,
    DEFAULT_TOKEN,
    ApiError,
    ApiServer,
    DropRule,
    FailureRule,
)

__all__ = [
    "API_PREFIX",
    "DEFAULT_ACCOUNT",
    "DEFAULT_TOKEN",
    "ApiError",
    "CloudflareEmulator",
    "ContentType",
    "DropRule",
    "EmulatedMessage",
    "EmulatedQueue",
    "FailureRule",
    "KVEntry",
    "cloudflare_emulator",
    "running",
]


class CloudflareEmulator:
    """
    The emulated account: queues, KV namespaces, the HTTP server and test hooks.

    Args:
        token: the only API token accepted.
        account_id: the only account served.
        pull_result_shape: ``"object"`` (current API) or ``"list"`` (2024 schema).
        json_body_encoding: ``"base64"`` (documented) or ``"plain"``.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        account_id: str = DEFAULT_ACCOUNT,
        pull_result_shape: Literal["object", "list"] = "object",
        json_body_encoding: Literal["base64", "plain"] = "base64",
    ) -> None:
        self.queues_api = QueuesApi(
            pull_result_shape=pull_result_shape, json_body_encoding=json_body_encoding
        )
        self.kv_api = KVApi()
        self.server = ApiServer(
            {"queues": self.queues_api, "storage": self.kv_api},
            token=token,
            account_id=account_id,
        )
        # The record and the state, shared with the parts (the same objects).
        self.requests: list[Exchange] = self.server.requests
        self.schema_violations: list[str] = self.server.schema_violations
        self.failures: list[FailureRule] = self.server.failures
        self.queues: dict[str, EmulatedQueue] = self.queues_api.queues
        self.namespaces: dict[str, dict[str, KVEntry]] = self.kv_api.namespaces
        # Injected faults are the server's: see ApiServer.fail_next and drop_reply_next.
        self.fail_next = self.server.fail_next
        self.drop_reply_next = self.server.drop_reply_next
        self.clear_drop = self.server.clear_drop

    # --- settings a test may change while serving ------------------------------

    @property
    def token(self) -> str:
        """The only API token accepted."""
        return self.server.token

    @token.setter
    def token(self, value: str) -> None:
        self.server.token = value

    @property
    def account_id(self) -> str:
        """The only account served."""
        return self.server.account_id

    @property
    def pull_result_shape(self) -> Literal["object", "list"]:
        """``"object"`` (current API) or ``"list"`` (2024 schema)."""
        return self.queues_api.pull_result_shape

    @pull_result_shape.setter
    def pull_result_shape(self, value: Literal["object", "list"]) -> None:
        self.queues_api.pull_result_shape = value

    @property
    def json_body_encoding(self) -> Literal["base64", "plain"]:
        """``"base64"`` (documented) or ``"plain"`` for pulled ``json`` bodies."""
        return self.queues_api.json_body_encoding

    @json_body_encoding.setter
    def json_body_encoding(self, value: Literal["base64", "plain"]) -> None:
        self.queues_api.json_body_encoding = value

    # --- server ----------------------------------------------------------------

    def start(self) -> CloudflareEmulator:
        """Serve on a free port of 127.0.0.1 in a background thread."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    @property
    def url(self) -> str:
        """The endpoint, without a path (clients append ``/client/v4``)."""
        return self.server.url

    def clear_failure(self, rule: FailureRule | None = None) -> None:
        """Lift one injected failure rule, or all of them."""
        self.server.clear_failure(rule)

    def exchanges(self, path_contains: str = "") -> list[Exchange]:
        """Recorded exchanges whose path contains *path_contains*."""
        return self.server.exchanges(path_contains)

    # --- queues ----------------------------------------------------------------

    def create_queue(
        self,
        queue_id: str | None = None,
        *,
        max_retries: int = 3,
        dead_letter_queue: str | None = None,
    ) -> str:
        """Create a queue (a fresh 32-hex id by default) and return its id."""
        return self.queues_api.create_queue(
            queue_id, max_retries=max_retries, dead_letter_queue=dead_letter_queue
        )

    def inject_message(
        self,
        queue_id: str,
        body: Any,
        *,
        content_type: ContentType = "json",
        metadata: Any = ...,
        delay: float = 0.0,
    ) -> str:
        """
        Put a message on a queue directly (``bytes``/``v8`` bodies are raw bytes).

        ``metadata`` replaces the usual ``{"CF-Content-Type": ...}`` object
        when given (``None`` or a string, as seen in the wild).
        """
        return self.queues_api.inject_message(
            queue_id, body, content_type=content_type, metadata=metadata, delay=delay
        )

    def expire_leases(self, queue_id: str) -> int:
        """End every lease on a queue now (as if its visibility timeout passed); return how many."""
        return self.queues_api.expire_leases(queue_id)

    def messages(self, queue_id: str) -> list[EmulatedMessage]:
        """The messages still in a queue (ready, delayed or leased), oldest first."""
        return self.queues_api.messages(queue_id)

    def acked(self, queue_id: str) -> list[str]:
        """Ids of the messages acked on a queue, in order."""
        return self.queues_api.acked(queue_id)

    def dropped(self, queue_id: str) -> list[str]:
        """Ids of messages deleted after ``max_retries`` with no dead-letter queue."""
        return self.queues_api.dropped(queue_id)

    # --- KV --------------------------------------------------------------------

    def create_namespace(self, namespace_id: str | None = None) -> str:
        """Create a KV namespace and return its id."""
        return self.kv_api.create_namespace(namespace_id)

    def kv_get(self, namespace_id: str, key: str) -> bytes | None:
        """The value stored at *key*, or ``None``."""
        return self.kv_api.get(namespace_id, key)

    def kv_put(self, namespace_id: str, key: str, value: bytes, metadata: Any = None) -> None:
        """Store a value directly."""
        self.kv_api.put(namespace_id, key, value, metadata)

    def kv_delete(self, namespace_id: str, key: str) -> None:
        """Delete a value directly."""
        self.kv_api.delete(namespace_id, key)


@pytest.fixture
def cloudflare_emulator() -> Iterator[CloudflareEmulator]:
    """A started emulator; the test fails if any exchange broke the API schemas."""
    emulator = CloudflareEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()
    assert [] == emulator.schema_violations


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[CloudflareEmulator]:
    """Run an emulator for the duration of a ``with`` block."""
    emulator = CloudflareEmulator(**kwargs).start()
    try:
        yield emulator
    finally:
        emulator.stop()
