"""What the Worker tests share: requests, Gold objects, notifications, log lookups.

The Worker runs in workerd through ``tests/support/worker_runtime.py``; the
Gold and the notifications are built and hashed by the project's own code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import urllib3

from atlasreg_cursor.adapters.webhook import WebhookNotifier
from atlasreg_cursor.domain.gold import (
    Company,
    Entity,
    EntityType,
    EventType,
    GoldErrorEntry,
    GoldEvent,
    SerializedGold,
    build_gold,
    serialize_gold,
)
from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.notifications import Notification, ingest_complete, processing_error
from atlasreg_cursor.domain.runs import RunStatus, derive_run_id, gold_key
from atlasreg_cursor.domain.signing import WebhookSigner
from tests.support.worker_runtime import CURRENT_SECRET, WorkerRuntime

DAY = dt.date(2026, 11, 24)
COMPLETE_PATH = "/api/v1/hooks/ingest-complete"
ERROR_PATH = "/api/v1/hooks/processing-error"
OTHER_SECRET = "whsec_" + base64.b64encode(b"a key the Worker has never seen").decode()


@attrs.frozen
class Answer:
    """What the Worker answered."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def reason(self) -> str:
        """The ``error`` of a JSON error body."""
        reason: str = json.loads(self.body)["error"]
        return reason


def post(
    http: urllib3.PoolManager,
    url: str,
    body: bytes | Iterable[bytes],
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    chunked: bool = False,
) -> Answer:
    """Send one request exactly as given (*chunked*: no ``Content-Length``)."""
    response = http.request(
        method,
        url,
        body=body,
        headers=dict(headers),
        retries=False,
        redirect=False,
        timeout=30,
        chunked=chunked,
    )
    return Answer(response.status, dict(response.headers), response.data)


def raw_post(url: str, head: Mapping[str, str], sent: bytes) -> Answer:
    """
    Send a request head and then *sent*, the start of its body, over a plain
    socket, and read the answer without sending anything more.

    A body the Worker refuses part-way is never sent whole: bytes it did not
    read when it answered and closed could make the kernel reset the
    connection and drop the answer before it is read.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in head.items()]
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + sent)
        response = http.client.HTTPResponse(sock, method="POST")
        try:
            response.begin()
            body = response.read()
        finally:
            response.close()
    return Answer(response.status, dict(response.getheaders()), body)


def signed_post(
    http: urllib3.PoolManager,
    url: str,
    notification: Notification,
    signer: WebhookSigner | None = None,
) -> Answer:
    """Send *notification* to *url* with the headers the Cursor's signer makes now."""
    headers = (signer or WebhookSigner(CURRENT_SECRET)).headers(
        notification.webhook_id, notification.body, timestamp=int(time.time())
    )
    return post(http, url, notification.body, headers)


def new_run_id() -> str:
    """A run id no other test uses."""
    return derive_run_id(MessageType.START_DAILY_INGEST, uuid.uuid4().hex)


def make_gold(run_id: str) -> SerializedGold:
    """A Gold with one event and one error, serialized and hashed by the project."""
    event = GoldEvent(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, run_id)),
        title="ANEEL multa transmissora",
        summary="Multa de R$ 1,25 milhão por falha na transmissão",
        event_type=EventType.MULTA,
        company=Company(id="c-1", name="Transmissora Exemplo S.A.", cnpj="00.000.000/0001-91"),
        amount=1250000.0,
        date=DAY.isoformat(),
        source="aneel_news",
        source_url="https://www.aneel.gov.br/noticias/1",
        confidence_score=0.93,
        is_critical=True,
        entities=(Entity(type=EntityType.MONEY, text="R$ 1,25 milhão", confidence=0.9),),
        tags=("transmissão",),
    )
    error = GoldErrorEntry(
        source_id="ons_ocorrencias",
        error_type="timeout",
        error_message="no answer in 30 s",
        timestamp="2026-11-24T09:10:00Z",
    )
    document = build_gold(
        run_id=run_id,
        date=DAY,
        generated_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        sources_processed=2,
        documents_count=1,
        events=[event],
        errors=[error],
    )
    return serialize_gold(document)


def complete(run_id: str, *, sha256: str, key: str | None = None) -> Notification:
    """The ``ingest_complete`` notification of *run_id*, as the ingest service builds it."""
    return ingest_complete(
        run_id=run_id,
        status=RunStatus.PARTIAL,
        completed_at=dt.datetime(2026, 11, 24, 9, 31, tzinfo=dt.UTC),
        file_path=key or gold_key(run_id, DAY),
        sha256=sha256,
        documents_count=1,
        errors_count=1,
        metadata={"nota": "transmissão"},
    )


def published(worker_runtime: WorkerRuntime) -> tuple[Notification, SerializedGold]:
    """Put a fresh Gold into R2; return its notification and the Gold."""
    run_id = new_run_id()
    gold = make_gold(run_id)
    worker_runtime.put(gold_key(run_id, DAY), gold.body)
    return complete(run_id, sha256=gold.sha256), gold


def failure(run_id: str | None = None) -> Notification:
    """A ``processing_error`` notification of a fresh run."""
    return processing_error(
        run_id=run_id or new_run_id(),
        error_type="ExecutorUnavailable",
        error_message="Core não respondeu",
        occurred_at=dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        context={"date": DAY.isoformat(), "message_id": "m-1", "attempts": 5},
    )


def notifier(
    worker_runtime: WorkerRuntime, signer: WebhookSigner, worker: str = "main"
) -> WebhookNotifier:
    """The project's notifier pointed at one copy of the Worker (no retry sleeps in tests)."""
    return WebhookNotifier(worker_runtime.url(worker), signer, timeout=30.0, attempts=1)


def handled(worker_runtime: WorkerRuntime, name: str, webhook_id: str | None, run_id: str) -> Any:
    """Wait for the handler's log event of one webhook."""
    return worker_runtime.wait_for_event(
        lambda e: (
            e["event"] == name and e.get("webhook_id") == webhook_id and e.get("run_id") == run_id
        )
    )


def logged(worker_runtime: WorkerRuntime, name: str, **fields: Any) -> Any:
    """Wait for a Worker log event *name* with these *fields*."""
    return worker_runtime.wait_for_event(
        lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())
    )


def count(worker_runtime: WorkerRuntime, name: str, run_id: str) -> int:
    """How many times the handler *name* ran for *run_id*."""
    return len(worker_runtime.events(lambda e: e["event"] == name and e.get("run_id") == run_id))


def standard_headers(secret: str, webhook_id: str, timestamp: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers computed here (``whsec_`` secrets), for shapes no library sends."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
