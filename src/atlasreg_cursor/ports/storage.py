"""The object store port (architecture §6 ObjectStore)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import attrs


@attrs.frozen(kw_only=True)
class StoredObject:
    """What a store knows of an object besides its bytes."""

    key: str
    size: int
    etag: str
    sha256: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    content_type: str | None = None
    last_modified: dt.datetime | None = None


class ObjectStore(Protocol):
    """
    Protocol: blobs by key, with conditional writes.

    Raises :class:`StorageError` subclasses only.
    """

    def put(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        metadata: Mapping[str, str] | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """
        Store *body* at *key*.

        Args:
            if_none_match: only create; fail if the key exists.
            if_match: only replace the object whose etag is this.
            sha256: the hex SHA-256 the caller computed; the store (or the
                server, where it supports checksums) rejects a mismatch.

        Raises:
            PreconditionFailed: a condition did not hold.
            IntegrityError: *sha256* does not match *body*.
            InvalidKey: the key is empty, too long or escapes the root.
            StorageUnavailable: the backend cannot be reached (transient).
        """
        ...

    def get(self, key: str) -> tuple[bytes, StoredObject]:
        """
        Return the object's bytes and description.

        Raises:
            ObjectNotFound: no object at *key*.
        """
        ...

    def head(self, key: str) -> StoredObject | None:
        """Describe the object at *key*, or ``None`` if there is none."""
        ...

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Yield the objects whose key starts with *prefix*, in key order."""
        ...

    def delete(self, key: str) -> None:
        """
        Remove the object at *key*; nothing happens when there is none.

        Raises:
            InvalidKey: the key is empty, too long or escapes the root.
            StorageUnavailable: the backend cannot be reached (transient).
        """
        ...

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        """Return a URL that reads *key* without credentials for *expires_s*."""
        ...


@runtime_checkable
class ConditionalWriteProbe(Protocol):
    """
    A store that can show at start-up whether it honours ``If-None-Match: *``.

    Exactly-once publishing depends on create-only writes; a store whose
    backend may ignore them (an S3 endpoint) proves it before the daemon
    starts.
    """

    def check_conditional_writes(self) -> None:
        """
        Raises:
            StorageError: (not transient) the backend ignores ``If-None-Match``;
                StorageUnavailable when it cannot be reached.
        """
