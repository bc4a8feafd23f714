"""Dead letters of the Cloudflare queue, and their records that make ``dead_letter`` safe to re-run.

Cloudflare's publish API has no idempotency key, so a dead letter is first
written as a *record* in the object store, create-only, keyed by the queue
and the message id (``dead-letter-records/<queue_id>/<message_id>.json``),
before it is published. A ``dead_letter`` run again (after a lost reply, a
failed ack or a crash) finds the record and does not publish twice. The
record holds the letter and its state:

- ``pending``: not delivered yet (or the publish was refused: it did not
  land), so it is published (again);
- ``unconfirmed``: the publish was sent and no answer came: the letter is in
  the dead-letter queue once or not at all, and is not published again (it
  stays readable in the record);
- ``sent``: delivered; only the ack is left.

The message id is Cloudflare's, the same on every delivery of a message, so
a message dead-lettered, then redelivered because its ack was lost, is not
dead-lettered twice either. Records are small; a bucket lifecycle rule may
delete them once the queue's retention (at most 14 days) has passed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import attrs

from atlasreg_cursor.domain.errors import (
    ObjectNotFound,
    PreconditionFailed,
    QueueError,
    QueueUnavailable,
    StorageError,
)
from atlasreg_cursor.domain.hashing import canonical_bytes
from atlasreg_cursor.ports.storage import ObjectStore

DEAD_LETTER_PREFIX = "dead-letters"
RECORD_PREFIX = "dead-letter-records"
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")

State = Literal["pending", "unconfirmed", "sent"]


def dead_letter_body(body: bytes) -> tuple[Any, str]:
    """The original body as JSON if it is JSON, else text, else base64."""
    try:
        return json.loads(body), "json"
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        return body.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def safe_id(message_id: str) -> str:
    """*message_id* as a key segment."""
    return _SAFE_ID.sub("_", message_id)[:200] or uuid.uuid4().hex


def letter_key(letter: dict[str, Any]) -> str:
    """``dead-letters/<date dead>/<message_id>.json``: where a letter goes without a DLQ queue."""
    day = str(letter.get("dead_at", ""))[:10] or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"{DEAD_LETTER_PREFIX}/{day}/{safe_id(str(letter.get('message_id', '')))}.json"


@attrs.define
class Record:
    """A dead letter's record: the letter, its state, and where it went."""

    key: str
    letter: dict[str, Any]
    state: State
    etag: str
    where: str | None = None


class DeadLetterRecords:
    """
    The records of one queue's dead letters in *store*.

    Args:
        store: the object store (the service's bucket).
        queue_id: the queue whose dead letters these are.
    """

    def __init__(self, store: ObjectStore, queue_id: str) -> None:
        self.store = store
        self.queue_id = queue_id

    def claim(self, message_id: str, letter: dict[str, Any]) -> Record:
        """
        Write the record of *letter* (create-only), or read the one already there.

        Raises:
            QueueUnavailable: the store could not be reached.
            QueueError: the store refused.
        """
        key = f"{RECORD_PREFIX}/{self.queue_id}/{safe_id(message_id)}.json"
        for _ in range(3):
            try:
                with _translated(key):
                    stored = self.store.put(
                        key, _record_bytes(letter, "pending"), if_none_match=True
                    )
                return Record(key, letter, "pending", stored.etag)
            except PreconditionFailed:
                pass
            try:
                with _translated(key):
                    body, stored = self.store.get(key)
            except ObjectNotFound:
                continue  # deleted in between: create it again
            found = _parse(key, body, stored.etag)
            if found is not None:
                return found
            try:  # unreadable: take it over with this letter
                with _translated(key):
                    stored = self.store.put(
                        key, _record_bytes(letter, "pending"), if_match=stored.etag
                    )
            except PreconditionFailed:
                continue
            return Record(key, letter, "pending", stored.etag)
        raise QueueUnavailable(f"dead-letter record {key} kept changing")

    def mark(self, record: Record, state: State, where: str | None = None) -> None:
        """
        Record that *record*'s letter is now in *state*.

        Raises:
            QueueUnavailable: the store could not be reached.
            QueueError: the store refused, or another run changed the record.
        """
        body = _record_bytes(record.letter, state, where)
        try:
            with _translated(record.key):
                stored = self.store.put(record.key, body, if_match=record.etag)
        except PreconditionFailed as exc:
            raise QueueError(f"dead-letter record {record.key} changed under us") from exc
        record.state, record.etag, record.where = state, stored.etag, where

    def put_letter(self, letter: dict[str, Any]) -> str:
        """
        Write *letter* to ``dead-letters/<date>/<message_id>.json`` (the same key on a re-run).

        Returns:
            Where it went (``store:<key>``).

        Raises:
            QueueUnavailable: the store could not be reached.
            QueueError: the store refused.
        """
        key = letter_key(letter)
        with _translated(key):
            self.store.put(key, canonical_bytes(letter), content_type="application/json")
        return f"store:{key}"


@contextlib.contextmanager
def _translated(key: str) -> Iterator[None]:
    """Store errors as queue errors; a failed condition and a missing key pass through."""
    try:
        yield
    except (PreconditionFailed, ObjectNotFound):
        raise
    except StorageError as exc:
        error = QueueUnavailable if exc.transient else QueueError
        raise error(f"dead letter at {key}: {exc}") from exc


def _record_bytes(letter: dict[str, Any], state: State, where: str | None = None) -> bytes:
    return canonical_bytes({"letter": letter, "state": state, "where": where})


def _parse(key: str, body: bytes, etag: str) -> Record | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("letter"), dict):
        return None
    state = data.get("state")
    if state not in ("pending", "unconfirmed", "sent"):
        return None
    where = data.get("where")
    return Record(key, data["letter"], state, etag, where if isinstance(where, str) else None)
