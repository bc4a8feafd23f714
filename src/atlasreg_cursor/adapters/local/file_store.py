"""ObjectStore in a directory on disk: the ``local`` store.

Objects live at ``<root>/<key>``; each has a JSON sidecar at
``<root>/.meta/<key>.json`` (size, sha256, etag, content type, metadata, and
the fingerprint — inode, size, mtime — of the object file it describes) and
a lock file at ``<root>/.locks/<key>.lock``. Every file is written atomically
(a temp file in the same directory, fsync, ``os.replace``) under an
exclusive ``flock`` on the key's lock file, so ``if_none_match`` /
``if_match`` hold under concurrent writers in threads and processes; readers
take a shared lock. The etag is the unquoted SHA-256 hex of the bytes.
``presign_get`` returns a ``file://`` URL, or ``<public_base>/<key>`` when a
base is set.

No crash between the writes of a ``put`` can leave ``head``, ``get`` and a
conditional ``put`` disagreeing. A put writes, in order: the new description
to ``<root>/.pending/<key>.json``, the object, the sidecar with the new
object's fingerprint, then removes the pending file. A reader trusts the
sidecar only while its fingerprint matches the object file; otherwise it
describes the object from its bytes (etag = their SHA-256), takes the
metadata from whichever description has that SHA-256 (the pending one after
a crash mid-put), and writes the repaired sidecar. So every reader and every
writer computes the same etag from the same files, whatever state a crash
left behind.

Settings read (by the composition root): ``CURSOR_HOME`` (the root lives
under it).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import structlog

from atlasreg_cursor.adapters._keys import validate_key
from atlasreg_cursor.domain.errors import (
    IntegrityError,
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
    StorageUnavailable,
)
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.ports.storage import StoredObject

log = structlog.get_logger()

_META_DIR = ".meta"
_LOCK_DIR = ".locks"
_PENDING_DIR = ".pending"
_RESERVED = frozenset({_META_DIR, _LOCK_DIR, _PENDING_DIR})
_TMP_PREFIX = ".~tmp."


@attrs.frozen
class _Paths:
    key: str
    obj: Path
    meta: Path
    lock: Path
    pending: Path


def _fingerprint(path: Path) -> list[int]:
    """Inode, size and mtime of *path*: they change whenever the file is replaced."""
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _read_description(path: Path, key: str) -> tuple[StoredObject, list[int] | None] | None:
    """A sidecar (or pending description) and its fingerprint; ``None`` if unreadable."""
    try:
        raw: dict[str, Any] = json.loads(path.read_bytes())
        modified = raw.get("last_modified")
        obj = StoredObject(
            key=key,
            size=int(raw["size"]),
            etag=str(raw["etag"]),
            sha256=str(raw["sha256"]),
            metadata={str(k): str(v) for k, v in raw.get("metadata", {}).items()},
            content_type=raw.get("content_type"),
            last_modified=dt.datetime.fromisoformat(modified) if modified else None,
        )
        fingerprint = raw.get("fingerprint")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (isinstance(fingerprint, list) and len(fingerprint) == 3):
        fingerprint = None
    return obj, fingerprint


def _description_bytes(stored: StoredObject, fingerprint: list[int] | None) -> bytes:
    meta = {
        "key": stored.key,
        "size": stored.size,
        "etag": stored.etag,
        "sha256": stored.sha256,
        "content_type": stored.content_type,
        "metadata": dict(stored.metadata),
        "last_modified": stored.last_modified.isoformat() if stored.last_modified else None,
        "fingerprint": fingerprint,
    }
    return json.dumps(meta, sort_keys=True).encode("utf-8")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write *data* to *path* via a synced temp file in the same directory."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{secrets.token_hex(6)}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _write_object(path: Path, data: bytes) -> None:
    """:func:`_write_atomic`, making the directory again if a delete just pruned it."""
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _write_atomic(path, data)
        except FileNotFoundError:
            if attempt == 2:
                raise
        else:
            return


def _may_hold(directory: str, prefix: str) -> bool:
    """Whether keys under *directory* (``a/b/``) can start with *prefix*."""
    return directory.startswith(prefix) or prefix.startswith(directory)


def _strip_quotes(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


class FileObjectStore:
    """
    Objects as files under *root*.

    Args:
        root: the store's directory (created if missing).
        public_base: when set, ``presign_get`` returns ``<public_base>/<key>``
            (a web server serving *root*) instead of a ``file://`` URL.

    Raises:
        StorageUnavailable: the root cannot be created.
    """

    def __init__(self, root: Path, *, public_base: str | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.public_base = public_base
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create store root {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"FileObjectStore(root={str(self.root)!r})"

    # --- paths and locks --------------------------------------------------------

    def _paths(self, key: str) -> _Paths:
        validate_key(key)
        parts = key.split("/")
        if parts[0] in _RESERVED:
            raise InvalidKey(f"object key uses a reserved name: {key[:80]!r}")
        if any(p.startswith(_TMP_PREFIX) for p in parts):
            raise InvalidKey(f"object key uses a reserved name: {key[:80]!r}")
        obj = self.root / key
        if os.path.commonpath([self.root, os.path.realpath(obj)]) != str(self.root):
            raise InvalidKey(f"object key escapes the store root: {key[:80]!r}")
        return _Paths(
            key=key,
            obj=obj,
            meta=self.root / _META_DIR / f"{key}.json",
            lock=self.root / _LOCK_DIR / f"{key}.lock",
            pending=self.root / _PENDING_DIR / f"{key}.json",
        )

    @contextlib.contextmanager
    def _locked(self, paths: _Paths, *, exclusive: bool) -> Iterator[int | None]:
        """Hold the key's flock (yield its fd); a reader of a never-written key takes none."""
        if exclusive:
            paths.lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        else:
            try:
                fd = os.open(paths.lock, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                yield None
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield fd
        finally:
            os.close(fd)

    # --- descriptions -----------------------------------------------------------

    def _describe(
        self, paths: _Paths, data: bytes | None = None
    ) -> tuple[StoredObject | None, bool]:
        """
        Describe the object at *paths* from the files on disk.

        Returns:
            The description (``None``: no object) and whether the sidecar must
            be rewritten to match it (a crash or an outside edit left it stale).
        """
        try:
            if not paths.obj.is_file():
                return None, False
            fingerprint = _fingerprint(paths.obj)
        except (FileNotFoundError, NotADirectoryError):
            return None, False
        sidecar = _read_description(paths.meta, paths.key)
        if sidecar is not None and sidecar[1] == fingerprint:
            obj = sidecar[0]
            if data is None or sha256_hex(data) == obj.sha256:
                return obj, False
        body = paths.obj.read_bytes() if data is None else data
        digest = sha256_hex(body)
        candidates = [sidecar, _read_description(paths.pending, paths.key)]
        for candidate in candidates:
            if candidate is not None and candidate[0].sha256 == digest:
                return attrs.evolve(candidate[0], size=len(body), etag=digest), True
        stale = sidecar[0] if sidecar is not None else None
        modified = dt.datetime.fromtimestamp(paths.obj.stat().st_mtime, dt.UTC)
        log.warning("store.meta_unknown", key=paths.key, sha256=digest)
        return (
            StoredObject(
                key=paths.key,
                size=len(body),
                etag=digest,
                sha256=digest,
                metadata=dict(stale.metadata) if stale else {},
                content_type=stale.content_type if stale else None,
                last_modified=modified,
            ),
            True,
        )

    def _repair(self, paths: _Paths, obj: StoredObject) -> None:
        """Rewrite the sidecar for the object on disk (the exclusive lock is held)."""
        _write_atomic(paths.meta, _description_bytes(obj, _fingerprint(paths.obj)))
        with contextlib.suppress(FileNotFoundError):
            paths.pending.unlink()
        log.warning("store.meta_repaired", key=paths.key, sha256=obj.sha256)

    def _read(self, paths: _Paths, *, with_data: bool) -> tuple[bytes | None, StoredObject | None]:
        """Describe (and read) under a shared lock; repair a stale sidecar under an exclusive."""
        with self._locked(paths, exclusive=False) as fd:
            data = self._object_bytes(paths) if with_data else None
            obj, stale = self._describe(paths, data)
            if not stale or fd is None:
                return data, obj
            fcntl.flock(fd, fcntl.LOCK_EX)  # upgrade; the state may change in between
            data = self._object_bytes(paths) if with_data else None
            obj, stale = self._describe(paths, data)
            if stale and obj is not None:
                self._repair(paths, obj)
            return data, obj

    @staticmethod
    def _object_bytes(paths: _Paths) -> bytes | None:
        try:
            return paths.obj.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    # --- ObjectStore ------------------------------------------------------------

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
        Store *body* at *key* atomically.

        Raises:
            PreconditionFailed: ``if_none_match`` and the key exists, or
                ``if_match`` and the current etag differs (or no object).
            IntegrityError: *sha256* does not match *body*.
            InvalidKey: the key is invalid or clashes with a directory.
            StorageUnavailable: the disk refused the write.
        """
        paths = self._paths(key)
        digest = sha256_hex(body)
        if sha256 is not None and sha256.strip().lower() != digest:
            raise IntegrityError(f"sha256 of the body does not match the one given for {key}")
        try:
            with self._locked(paths, exclusive=True):
                current, _ = self._describe(paths)
                if if_none_match and current is not None:
                    raise PreconditionFailed(f"{key} already exists")
                if if_match is not None and (
                    current is None or current.etag != _strip_quotes(if_match)
                ):
                    raise PreconditionFailed(f"{key} does not have the expected etag")
                stored = StoredObject(
                    key=key,
                    size=len(body),
                    etag=digest,
                    sha256=digest,
                    metadata=dict(metadata or {}),
                    content_type=content_type,
                    last_modified=dt.datetime.now(dt.UTC),
                )
                for _ in self._writes(paths, body, stored):
                    pass
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            raise InvalidKey(f"object key clashes with another object: {key[:80]!r}") from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc}") from exc
        log.debug("store.put", key=key, size=len(body), sha256=digest)
        return stored

    def _writes(self, paths: _Paths, body: bytes, stored: StoredObject) -> Iterator[str]:
        """
        The durable writes of one put, in order; each step is yielded once on disk.

        A crash after any step leaves files every reader describes alike (see
        the module docstring): pending description, object, sidecar, cleanup.
        """
        paths.obj.parent.mkdir(parents=True, exist_ok=True)
        paths.meta.parent.mkdir(parents=True, exist_ok=True)
        paths.pending.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(paths.pending, _description_bytes(stored, None))
        yield "pending"
        _write_object(paths.obj, body)
        yield "object"
        _write_atomic(paths.meta, _description_bytes(stored, _fingerprint(paths.obj)))
        yield "sidecar"
        with contextlib.suppress(FileNotFoundError):
            paths.pending.unlink()
        yield "done"

    def get(self, key: str) -> tuple[bytes, StoredObject]:
        """
        Return the bytes at *key* and their description.

        Raises:
            ObjectNotFound: nothing is stored at *key*.
            StorageUnavailable: the disk refused the read.
        """
        paths = self._paths(key)
        try:
            data, stored = self._read(paths, with_data=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        if data is None or stored is None:
            raise ObjectNotFound(key)
        return data, stored

    def head(self, key: str) -> StoredObject | None:
        """Describe the object at *key*, or ``None``."""
        paths = self._paths(key)
        try:
            return self._read(paths, with_data=False)[1]
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        """
        Remove the object at *key*, then its descriptions and empty directories.

        The object goes first: a crash after it leaves only descriptions of
        nothing, which readers ignore and the next put replaces.

        Raises:
            StorageUnavailable: the disk refused.
        """
        paths = self._paths(key)
        try:
            with self._locked(paths, exclusive=True):
                for path in (paths.obj, paths.meta, paths.pending):
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        path.unlink()
                self._prune(paths.obj.parent)
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete {key}: {exc}") from exc
        log.debug("store.delete", key=key)

    def _prune(self, directory: Path) -> None:
        """Remove *directory* and its parents while empty, up to the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or just written to): it stays
                return
            directory = directory.parent

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Yield the objects whose key starts with *prefix*, in key order."""
        for key in self._keys(prefix):
            with contextlib.suppress(InvalidKey):
                stored = self.head(key)
                if stored is not None:
                    yield stored

    def _keys(self, prefix: str) -> builtins.list[str]:
        """Every key under *prefix*, sorted, from the deepest directory it names."""
        directory = prefix.rpartition("/")[0]
        start = self.root / directory if directory else self.root
        if os.path.commonpath([self.root, os.path.realpath(start)]) != str(self.root):
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d not in _RESERVED]
                rel_dir = ""
            base = f"{rel_dir}/".replace(os.sep, "/") if rel_dir else ""
            dirnames[:] = [d for d in dirnames if _may_hold(f"{base}{d}/", prefix)]
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = f"{rel_dir}/{name}" if rel_dir else name
                key = key.replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        """Return a URL reading *key*: ``file://`` or under ``public_base``."""
        paths = self._paths(key)
        if self.public_base:
            return f"{self.public_base.rstrip('/')}/{urllib.parse.quote(key)}"
        return paths.obj.as_uri()
