"""Notifier writing webhooks to a JSON-lines outbox file instead of sending them.

The ``local`` mode's notifier when no ``HOOK_ENDPOINT`` is set. Each
notification becomes one line: ``event_type``, ``run_id``, ``webhook_id``,
``path``, the ``headers`` a webhook would have carried (signatures
included when a signer is given), ``body_text`` (the exact body the
signatures cover), ``body`` (the same, parsed, for reading) and
``written_at``. Appends are serialised with ``flock`` and fsynced, so
threads and processes can share one file.

Settings read (by the composition root): ``CURSOR_HOME`` (the outbox lives
under it), ``HOOK_HMAC_SECRET`` (for the signer, optional).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import structlog

from atlasreg_cursor.domain.errors import NotificationUnavailable
from atlasreg_cursor.domain.gold import isoformat_z
from atlasreg_cursor.domain.notifications import Notification
from atlasreg_cursor.domain.signing import WebhookSigner
from atlasreg_cursor.ports.notifier import Receipt

log = structlog.get_logger()


class OutboxNotifier:
    """
    Append notifications to a JSON-lines file.

    Args:
        path: the outbox file (created with its directory if missing).
        signer: when given, the signature headers are recorded too.
    """

    def __init__(self, path: Path, signer: WebhookSigner | None = None) -> None:
        self.path = Path(path)
        self._signer = signer

    def __repr__(self) -> str:
        return f"OutboxNotifier(path={str(self.path)!r})"

    def send(self, notification: Notification) -> Receipt:
        """
        Append *notification* as one line.

        Returns:
            ``Receipt(status_code=0, attempts=1)``: written, not delivered.

        Raises:
            NotificationUnavailable: the file cannot be written.
        """
        headers = {"Content-Type": "application/json"}
        if self._signer is not None:
            headers.update(
                self._signer.headers(
                    notification.webhook_id, notification.body, timestamp=int(time.time())
                )
            )
        entry: dict[str, Any] = {
            "event_type": notification.event_type,
            "run_id": notification.run_id,
            "webhook_id": notification.webhook_id,
            "path": notification.path,
            "headers": headers,
            "written_at": isoformat_z(dt.datetime.now(dt.UTC)),
        }
        entry["body_text"] = notification.body.decode("utf-8", "replace")
        with contextlib.suppress(ValueError):
            entry["body"] = json.loads(notification.body)
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
        try:
            self._append(line)
        except OSError as exc:
            raise NotificationUnavailable(
                f"cannot append to outbox {self.path}: {exc.strerror or exc}"
            ) from exc
        log.info(
            "outbox.written",
            event_type=notification.event_type,
            run_id=notification.run_id,
            webhook_id=notification.webhook_id,
            outbox=str(self.path),
        )
        return Receipt(status_code=0, attempts=1)

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)


def read_outbox(path: Path) -> list[dict[str, Any]]:
    """
    Return the outbox entries, oldest first (``[]`` if there is no file).

    A torn last line (a crash mid-append) is skipped.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in raw.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries
