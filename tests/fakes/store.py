"""An in-memory ObjectStore with etags and conditional writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from atlasreg_cursor.adapters._keys import validate_key
from atlasreg_cursor.domain.errors import (
    IntegrityError,
    ObjectNotFound,
    PreconditionFailed,
    StorageUnavailable,
)
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.ports.storage import StoredObject


class FakeObjectStore:
    """
    Objects in a dict; ``fail_puts`` makes the next N puts unavailable, and
    ``fail_prefixes[prefix] = N`` the next N puts of keys under *prefix*;
    ``fail_retry_after`` is the ``retry_after_seconds`` those failures carry
    (as a circuit breaker's fail-fast error does); ``fail_gets`` holds
    exceptions the next gets raise, one each, in order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.objects: dict[str, tuple[bytes, StoredObject]] = {}
        self.fail_puts = 0
        self.fail_prefixes: dict[str, int] = {}
        self.fail_retry_after: float | None = None
        self.fail_gets: list[BaseException] = []
        self.put_count = 0
        self.put_keys: list[str] = []

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
        validate_key(key)
        with self._lock:
            if self.fail_puts:
                self.fail_puts -= 1
                down = StorageUnavailable("store is down (fake)")
                down.retry_after_seconds = self.fail_retry_after
                raise down
            for prefix, left in self.fail_prefixes.items():
                if left and key.startswith(prefix):
                    self.fail_prefixes[prefix] = left - 1
                    raise StorageUnavailable(f"store refuses {prefix} (fake)")
            digest = sha256_hex(body)
            if sha256 is not None and sha256 != digest:
                raise IntegrityError(f"sha256 mismatch for {key}")
            current = self.objects.get(key)
            if if_none_match and current is not None:
                raise PreconditionFailed(f"{key} exists")
            if if_match is not None and (current is None or current[1].etag != if_match):
                raise PreconditionFailed(f"{key} etag mismatch")
            self.put_count += 1
            self.put_keys.append(key)
            obj = StoredObject(
                key=key,
                size=len(body),
                etag=f"{digest[:16]}-{self.put_count}",
                sha256=digest,
                metadata=dict(metadata or {}),
                content_type=content_type,
            )
            self.objects[key] = (bytes(body), obj)
            return obj

    def get(self, key: str) -> tuple[bytes, StoredObject]:
        validate_key(key)
        with self._lock:
            if self.fail_gets:
                raise self.fail_gets.pop(0)
            if key not in self.objects:
                raise ObjectNotFound(key)
            return self.objects[key]

    def head(self, key: str) -> StoredObject | None:
        validate_key(key)
        with self._lock:
            item = self.objects.get(key)
            return None if item is None else item[1]

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self.objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        with self._lock:
            items = sorted((k, v[1]) for k, v in self.objects.items() if k.startswith(prefix))
        for _, obj in items:
            yield obj

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        return f"memory://{key}"
