"""FileObjectStore through the ObjectStore contract, plus disk-only checks."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.domain.errors import InvalidKey, ObjectNotFound, PreconditionFailed
from atlasreg_cursor.ports.storage import ObjectStore, StoredObject
from tests.contract.storage_contract import StoreContract, StoreFactory, sha


class TestFileObjectStore(StoreContract):
    """The directory store honours the whole contract."""

    PRESIGN_SCHEME = "file"

    @pytest.fixture
    def store(self, tmp_path: Path) -> ObjectStore:
        """A store in a fresh directory."""
        return FileObjectStore(tmp_path / "store")

    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        """Separate instances on the same directory."""
        return lambda: FileObjectStore(tmp_path / "store")


def test_layout_on_disk(tmp_path: Path) -> None:
    """The object is a plain file at its key; its sidecar is hidden from ``list``."""
    store = FileObjectStore(tmp_path)
    store.put("gold/2026-11-24/run_x.json", b"{}", metadata={"run_id": "run_x"})

    sidecar = json.loads((tmp_path / ".meta/gold/2026-11-24/run_x.json.json").read_bytes())

    assert b"{}" == (tmp_path / "gold/2026-11-24/run_x.json").read_bytes()
    assert {"run_id": "run_x"} == sidecar["metadata"]
    assert sha(b"{}") == sidecar["sha256"]
    assert ["gold/2026-11-24/run_x.json"] == [o.key for o in store.list()]


@pytest.mark.parametrize("key", [".meta/x", ".locks/x", "a/.~tmp.b"])
def test_reserved_names_rejected(tmp_path: Path, key: str) -> None:
    """Keys that would reach the store's own files are refused."""
    with pytest.raises(InvalidKey):
        FileObjectStore(tmp_path).put(key, b"x")


def test_symlink_escape_rejected(tmp_path: Path) -> None:
    """A key that resolves outside the root through a symlink is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    store = FileObjectStore(tmp_path / "root")
    (tmp_path / "root" / "link").symlink_to(outside)

    with pytest.raises(InvalidKey):
        store.put("link/x.json", b"x")

    assert [] == list(outside.iterdir())


def test_key_clashing_with_a_directory(tmp_path: Path) -> None:
    """A key that is already a directory of other keys (or under a file) is refused."""
    store = FileObjectStore(tmp_path)
    store.put("a/b.json", b"x")

    with pytest.raises(InvalidKey):
        store.put("a", b"y")
    with pytest.raises(InvalidKey):
        store.put("a/b.json/c", b"y")


def test_stale_sidecar_is_repaired(tmp_path: Path) -> None:
    """Bytes replaced without their sidecar are described from the bytes."""
    store = FileObjectStore(tmp_path)
    store.put("k.json", b"old", content_type="text/plain")
    (tmp_path / "k.json").write_bytes(b"newer")

    data, obj = store.get("k.json")

    assert b"newer" == data
    assert sha(b"newer") == obj.sha256 == obj.etag
    assert 5 == obj.size
    assert "text/plain" == obj.content_type


def test_public_base_url(tmp_path: Path) -> None:
    """With a public base the presigned URL is under it, key quoted."""
    store = FileObjectStore(tmp_path, public_base="http://127.0.0.1:8080/files/")

    url = store.presign_get("gold/a b.json")

    assert "http://127.0.0.1:8080/files/gold/a%20b.json" == url


WRITER = """
import sys
from pathlib import Path
from atlasreg_cursor.adapters.local.file_store import FileObjectStore
from atlasreg_cursor.domain.errors import PreconditionFailed
store = FileObjectStore(Path(sys.argv[1]))
try:
    store.put("gold/race.json", sys.argv[2].encode(), if_none_match=True)
    print("won")
except PreconditionFailed:
    print("lost")
"""


@pytest.mark.slow
def test_create_only_across_processes(tmp_path: Path) -> None:
    """Of several processes creating one key, exactly one wins."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"writer-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(6)
    ]
    outcomes = [p.communicate(timeout=60)[0].strip().splitlines()[-1] for p in procs]
    winner = [f"writer-{i}" for i, o in enumerate(outcomes) if o == "won"]

    data, _ = FileObjectStore(tmp_path).get("gold/race.json")

    assert ["lost"] * 5 == sorted(o for o in outcomes if o != "won")
    assert 1 == len(winner)
    assert winner[0].encode() == data
    with pytest.raises(PreconditionFailed):
        FileObjectStore(tmp_path).put("gold/race.json", b"late", if_none_match=True)


# --- a crash between the writes of a put ------------------------------------------


def _crash_put(store: FileObjectStore, key: str, body: bytes, *, after: int) -> None:
    """Do the first *after* durable writes of a put of *body*, then stop as a crash would."""
    stored = StoredObject(
        key=key,
        size=len(body),
        etag=sha(body),
        sha256=sha(body),
        metadata={"version": body.decode()},
        content_type="application/json",
        last_modified=dt.datetime.now(dt.UTC),
    )
    steps = store._writes(store._paths(key), body, stored)
    for _ in range(after):
        next(steps)
    steps.close()  # the rest never happens


@pytest.mark.parametrize("existing", [True, False], ids=["replace", "create"])
@pytest.mark.parametrize("after", [0, 1, 2, 3], ids=["none", "pending", "object", "sidecar"])
def test_no_crash_point_of_a_put_wedges_the_key(tmp_path: Path, existing: bool, after: int) -> None:
    """After a crash at any point of a put, head, get and if_match agree, and the key can move on."""
    first = FileObjectStore(tmp_path)
    if existing:
        first.put("runs/r.json", b"old", metadata={"version": "old"})
    _crash_put(first, "runs/r.json", b"new", after=after)

    store = FileObjectStore(tmp_path)  # a process started after the crash
    head = store.head("runs/r.json")
    landed = after >= 2
    if not existing and not landed:
        assert head is None
        with pytest.raises(ObjectNotFound):
            store.get("runs/r.json")
        store.put("runs/r.json", b"next", if_none_match=True)
        return
    data, got = store.get("runs/r.json")
    again = store.head("runs/r.json")
    replaced = store.put("runs/r.json", b"next", if_match=got.etag)

    expected = b"new" if landed else b"old"
    assert head is not None
    assert again is not None
    assert expected == data
    assert sha(expected) == head.etag == got.etag == again.etag
    assert expected.decode() == got.metadata["version"] == head.metadata["version"]
    assert (b"next", replaced.etag) == (store.get("runs/r.json")[0], sha(b"next"))
    with pytest.raises(PreconditionFailed):
        store.put("runs/r.json", b"late", if_match=got.etag)
    assert [] == list((tmp_path / ".pending").rglob("*.json"))
