"""OutboxNotifier (local mode without HOOK_ENDPOINT) through the Notifier contract."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from atlasreg_cursor.adapters.local.outbox import OutboxNotifier, read_outbox
from tests.contract.notifier_contract import (
    Delivered,
    NotifierContract,
    NotifierHarness,
    signer_for_tests,
)


@attrs.define
class OutboxHarness:
    """The outbox file is the far side; "broken" means a directory stands where it was."""

    path: Path
    notifier: OutboxNotifier
    refuse_with: None = None

    def delivered(self) -> list[Delivered]:
        if self.path.is_dir():
            return []
        return [
            Delivered(
                path=entry["path"],
                webhook_id=entry["webhook_id"],
                body=entry["body_text"].encode("utf-8"),
                headers=entry["headers"],
            )
            for entry in read_outbox(self.path)
        ]

    def break_delivery(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.mkdir(parents=True)


class TestOutboxNotifier(NotifierContract):
    """The outbox keeps exactly what a webhook would have carried; nothing can refuse it."""

    REJECTS = False

    @pytest.fixture
    def harness(self, tmp_path: Path) -> NotifierHarness:
        """A signed outbox in a fresh directory."""
        path = tmp_path / "outbox.jsonl"
        return OutboxHarness(path, OutboxNotifier(path, signer_for_tests()))


def test_an_unsigned_outbox_records_no_signature(tmp_path: Path) -> None:
    """Without HOOK_HMAC_SECRET the entry has the body and no signature headers."""
    from tests.contract.notifier_contract import complete_notification

    path = tmp_path / "outbox.jsonl"
    notification = complete_notification()

    OutboxNotifier(path).send(notification)
    [entry] = read_outbox(path)

    assert {"Content-Type": "application/json"} == entry["headers"]
    assert json.loads(notification.body) == entry["body"]
