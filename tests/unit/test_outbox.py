"""OutboxNotifier: one signed JSON line per notification, safe to share."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.outbox import OutboxNotifier, read_outbox
from atlasreg_cursor.domain.errors import NotificationUnavailable
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.domain.signing import WebhookSigner, WebhookVerifier
from atlasreg_cursor.ports.notifier import Receipt
from tests.contract.notifier_contract import complete_notification, error_notification

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_one_line_per_notification(tmp_path: Path) -> None:
    """Each send appends one entry with the body as JSON and a receipt of 0."""
    outbox = OutboxNotifier(tmp_path / "out" / "outbox.jsonl", None)
    first, second = complete_notification(), error_notification()

    receipts = [outbox.send(first), outbox.send(second)]
    entries = read_outbox(tmp_path / "out" / "outbox.jsonl")

    assert [Receipt(status_code=0, attempts=1)] * 2 == receipts
    assert [first.webhook_id, second.webhook_id] == [e["webhook_id"] for e in entries]
    assert [first.path, second.path] == [e["path"] for e in entries]
    assert [first.run_id, second.run_id] == [e["run_id"] for e in entries]
    assert ["ingest_complete", "processing_error"] == [e["event_type"] for e in entries]
    assert first.body == canonical_bytes(entries[0]["body"])
    assert {"Content-Type": "application/json"} == entries[0]["headers"]
    assert entries[0]["written_at"].endswith("Z")


def test_signed_headers_verify(tmp_path: Path) -> None:
    """With a signer, the recorded headers verify against the recorded body."""
    outbox = OutboxNotifier(tmp_path / "outbox.jsonl", WebhookSigner(SECRET))
    notification = complete_notification()

    outbox.send(notification)
    [entry] = read_outbox(tmp_path / "outbox.jsonl")

    WebhookVerifier((SECRET,)).verify(canonical_bytes(entry["body"]), entry["headers"])
    assert notification.webhook_id == entry["headers"]["webhook-id"]
    assert SECRET not in (tmp_path / "outbox.jsonl").read_text()


def test_concurrent_threads_never_interleave(tmp_path: Path) -> None:
    """Threads appending at once leave whole, parseable lines."""
    outbox = OutboxNotifier(tmp_path / "outbox.jsonl", WebhookSigner(SECRET))
    run_ids = [f"run_{i:012x}" for i in range(40)]
    threads = [
        threading.Thread(target=outbox.send, args=(complete_notification(r),)) for r in run_ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    lines = (tmp_path / "outbox.jsonl").read_bytes().splitlines()

    assert 40 == len(lines)
    assert sorted(run_ids) == sorted(e["run_id"] for e in read_outbox(tmp_path / "outbox.jsonl"))


WRITER = """
import sys
from pathlib import Path
from atlasreg_cursor.adapters.local.outbox import OutboxNotifier
from tests.contract.notifier_contract import complete_notification
outbox = OutboxNotifier(Path(sys.argv[1]), None)
for i in range(25):
    outbox.send(complete_notification(f"run_{int(sys.argv[2]):06x}{i:06x}"))
"""


def test_concurrent_processes_never_interleave(tmp_path: Path) -> None:
    """Processes appending at once leave every line whole."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "outbox.jsonl"), str(n)],
            stdout=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        for n in range(3)
    ]
    codes = [p.wait(timeout=60) for p in procs]

    entries = read_outbox(tmp_path / "outbox.jsonl")

    assert [0, 0, 0] == codes
    assert 75 == len((tmp_path / "outbox.jsonl").read_bytes().splitlines())
    assert 75 == len({e["run_id"] for e in entries})


def test_torn_last_line_skipped(tmp_path: Path) -> None:
    """A partial last line (a crash mid-append) does not hide the others."""
    path = tmp_path / "outbox.jsonl"
    OutboxNotifier(path, None).send(complete_notification())
    with open(path, "ab") as fh:
        fh.write(b'{"event_type": "ingest_comp')

    assert 1 == len(read_outbox(path))
    assert [] == read_outbox(tmp_path / "missing.jsonl")


def test_unwritable_outbox_is_unavailable(tmp_path: Path) -> None:
    """An outbox path that is a directory is ``NotificationUnavailable``."""
    (tmp_path / "outbox.jsonl").mkdir()

    with pytest.raises(NotificationUnavailable, match="outbox"):
        OutboxNotifier(tmp_path / "outbox.jsonl", None).send(complete_notification())
