"""What the fault suite's "doubled" measures: Gold writes and notifications, and the proxy's record
of the HTTP answers it relays."""

from __future__ import annotations

import http.client
import json
import socket

from tests.faults.support import (
    check,
    doubled_notifications,
    gold_writes,
    gold_writes_answered,
    gold_writes_logged,
    jobs,
    wait_for,
)
from tests.support.tcp_proxy import Exchange, TcpProxy, final_status
from tests.support.webhook_receiver import (
    ReceivedRequest,
    WebhookReceiver,
    webhook_receiver,  # noqa: F401
)


def _note(run_id: str, webhook_id: str, status: str = "success") -> ReceivedRequest:
    body = json.dumps({"run_id": run_id, "status": status}).encode()
    return ReceivedRequest(
        method="POST",
        path="/hooks/ingest-complete",
        headers={"webhook-id": webhook_id},
        body=body,
        standard_verified=("secret",),
        legacy_verified=False,
    )


def test_a_retry_is_not_a_double_but_another_body_or_another_id_is() -> None:
    """The same id and bytes again is a retry; another body under an id, or another id for a
    run, is a notification doubled."""
    retried = [_note("run_a", "msg_a"), _note("run_a", "msg_a")]
    changed = [_note("run_b", "msg_b"), _note("run_b", "msg_b", status="partial")]
    renamed = [_note("run_c", "msg_c"), _note("run_c", "msg_c2")]

    assert 0 == doubled_notifications(retried)
    assert 1 == doubled_notifications(changed)
    assert 1 == doubled_notifications(renamed)
    assert 2 == doubled_notifications(retried + changed + renamed)


def test_a_gold_written_twice_is_doubled_whichever_witness_saw_it(
    webhook_receiver: WebhookReceiver,
) -> None:
    """Writes come from the logs (adopted ones left out) and from S3's answers; the larger
    count of a run wins; a Gold whose write nobody saw is reported."""
    one, two, three = (spec.run_id for spec in jobs("measure", 3))
    lines: list[dict[str, object]] = [
        {"event": "gold.published", "run_id": one, "adopted": False},
        {"event": "gold.published", "run_id": two, "adopted": False},
        {"event": "gold.published", "run_id": two, "adopted": True},
        {"event": "run.finished", "run_id": one},
    ]
    answered = {two: 2}  # the first writer died before it could log its write
    specs = jobs("measure", 3)

    writes = gold_writes(gold_writes_logged(lines), answered)
    checked = check(specs, {one: 1, two: 1, three: 1}, webhook_receiver, writes)

    assert {one: 1, two: 2} == writes
    assert (1, 0, 1) == (checked.doubled_golds, checked.doubled_notifications, checked.doubled)
    assert (three,) == checked.golds_never_seen_written
    assert 0 == checked.lost


def test_the_final_status_skips_100_continue() -> None:
    """An interim ``100 Continue`` in the same chunk is skipped; a body is not a status."""
    assert 412 == final_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 412 Precondition Failed\r\n")
    assert 200 == final_status(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert final_status(b"HTTP/1.1 100 Continue\r\n\r\n") is None
    assert final_status(b'{"status": "HTTP/1.1 200"}') is None


def test_the_proxy_records_each_answer_even_to_a_client_already_gone(
    webhook_receiver: WebhookReceiver,
) -> None:
    """Answers are kept with their request line and status, also one the server gives after its
    client went away (a Gold PUT of a daemon killed meanwhile still counts)."""
    proxy = TcpProxy(int(webhook_receiver.url.rsplit(":", 1)[1]))
    webhook_receiver.program(201, 412)
    held = webhook_receiver.hold(b"gone", 0.5)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        for path in ("/bucket/gold/2026-11-24/run_a.json", "/bucket/gold/2026-11-24/run_b.json"):
            conn.request("POST", path, body=b"{}")
            conn.getresponse().read()
        conn.close()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as gone:
            gone.sendall(b"POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ngone")
        assert held.wait(5)
        recorded = wait_for(lambda: len(proxy.exchanges) == 3, timeout=5, interval=0.05)
    finally:
        proxy.stop()

    assert recorded, proxy.exchanges
    assert [
        ("POST", "/bucket/gold/2026-11-24/run_a.json", 201),
        ("POST", "/bucket/gold/2026-11-24/run_b.json", 412),
        ("POST", "/gone", 200),
    ] == [(e.method, e.path, e.status) for e in proxy.exchanges]


def test_only_gold_puts_the_server_took_count_as_writes() -> None:
    """A 2xx PUT of the bucket's Gold key is a write; a refused one, another bucket's, a journal's
    or a HEAD is not."""
    exchanges = [
        Exchange("PUT /b/gold/2026-11-24/run_a.json HTTP/1.1", 200),
        Exchange("PUT /b/gold/2026-11-24/run_a.json HTTP/1.1", 412),
        Exchange("PUT /b/gold/2026-11-24/run_b_reprocessed.json?x-id=PutObject HTTP/1.1", 200),
        Exchange("PUT /b/gold/2026-11-24/run_b.json HTTP/1.1", 200),
        Exchange("PUT /other/gold/2026-11-24/run_a.json HTTP/1.1", 200),
        Exchange("PUT /b/runs/run_a.json HTTP/1.1", 200),
        Exchange("HEAD /b/gold/2026-11-24/run_a.json HTTP/1.1", 200),
    ]

    assert {"run_a": 1, "run_b": 2} == gold_writes_answered(exchanges, "b")
