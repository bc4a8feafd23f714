"""The ObjectStore contract (architecture §6), run against every store adapter.

A test module plugs an adapter in by subclassing :class:`StoreContract` and
overriding the ``store`` fixture::

    class TestFileObjectStore(StoreContract):
        PRESIGN_SCHEME = "file"

        @pytest.fixture
        def store(self, tmp_path):
            return FileObjectStore(tmp_path / "store")

Fixture shape:
    ``store`` returns an ObjectStore that is empty when the test starts (a
    fresh directory, bucket or key prefix); the fixture cleans up afterwards.
    Tests may build a second handle on the same store through
    ``store_factory`` (defaults to returning ``store`` itself); override it
    when several clients can share one backend, so concurrent writers use
    separate connections.

Hooks: ``read_presigned(url) -> bytes`` reads what ``presign_get`` returned
(``file://`` by path, http(s) with urllib3 on loopback); override it for a
scheme of your own.

Capabilities (class attributes):
    PRESIGN_SCHEME: the URL scheme ``presign_get`` returns (``file``, ``http``, ``https``).
    CONCURRENT_WRITERS: how many threads race in the create-only test.
    REPORTS_SHA256: every ``StoredObject`` carries the SHA-256 of its bytes, even
        when ``put`` was not given one.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import ClassVar

import pytest
import urllib3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from atlasreg_cursor.domain.errors import (
    IntegrityError,
    InvalidKey,
    ObjectNotFound,
    PreconditionFailed,
)
from atlasreg_cursor.ports.storage import ConditionalWriteProbe, ObjectStore

StoreFactory = Callable[[], ObjectStore]


def sha(body: bytes) -> str:
    """Hex SHA-256 of *body*."""
    return hashlib.sha256(body).hexdigest()


def fetch_url(url: str) -> bytes:
    """Read a presigned URL: a local path for ``file://``, a GET for http(s) on loopback."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        with open(urllib.request.url2pathname(parts.path), "rb") as fh:
            return fh.read()
    assert parts.hostname in {"127.0.0.1", "localhost", "::1"}, "tests only talk to loopback"
    response = urllib3.request("GET", url, timeout=10, retries=False)
    assert 200 == response.status, response.data[:200]
    return response.data


class StoreContract:
    """Checks every ObjectStore adapter must pass."""

    PRESIGN_SCHEME: ClassVar[str] = "file"
    CONCURRENT_WRITERS: ClassVar[int] = 8
    REPORTS_SHA256: ClassVar[bool] = True

    @pytest.fixture
    def store(self) -> ObjectStore:
        """Return an empty ObjectStore."""
        raise NotImplementedError

    @pytest.fixture
    def store_factory(self, store: ObjectStore) -> StoreFactory:
        """Return ``make()``: another handle on the same store."""
        return lambda: store

    def read_presigned(self, url: str) -> bytes:
        """Read a presigned URL; override for schemes other than file and http(s)."""
        return fetch_url(url)

    # --- round trips --------------------------------------------------------

    def test_put_get_head_round_trip(self, store: ObjectStore) -> None:
        """Bytes, size, sha256, content type and metadata survive a round trip."""
        body = b'{"metadata": {"version": "2.0"}, "events": []}'
        metadata = {"sha256": sha(body), "run_id": "run_a1b2c3d4e5f6", "date": "2026-11-24"}

        put = store.put(
            "gold/2026-11-24/run_a1b2c3d4e5f6.json",
            body,
            content_type="application/json",
            metadata=metadata,
        )
        data, got = store.get("gold/2026-11-24/run_a1b2c3d4e5f6.json")
        head = store.head("gold/2026-11-24/run_a1b2c3d4e5f6.json")

        assert body == data
        assert head is not None
        for obj in (put, got, head):
            assert "gold/2026-11-24/run_a1b2c3d4e5f6.json" == obj.key
            assert len(body) == obj.size
            assert put.etag == obj.etag
            assert metadata == dict(obj.metadata)
        assert "application/json" == got.content_type == head.content_type
        if self.REPORTS_SHA256:
            assert sha(body) == got.sha256 == head.sha256

    def test_empty_body(self, store: ObjectStore) -> None:
        """An empty object is still an object."""
        store.put("empty.bin", b"", content_type="application/octet-stream")

        data, obj = store.get("empty.bin")

        assert b"" == data
        assert 0 == obj.size

    def test_unicode_key(self, store: ObjectStore) -> None:
        """Non-ASCII keys work."""
        store.put("relatórios/transmissão ção.json", b"{}")

        data, obj = store.get("relatórios/transmissão ção.json")

        assert b"{}" == data
        assert "relatórios/transmissão ção.json" == obj.key

    def test_head_missing_is_none(self, store: ObjectStore) -> None:
        """``head`` of a missing key is ``None``."""
        assert store.head("nothing/here.json") is None

    def test_get_missing_raises(self, store: ObjectStore) -> None:
        """``get`` of a missing key raises ``ObjectNotFound``."""
        with pytest.raises(ObjectNotFound):
            store.get("nothing/here.json")

    def test_plain_put_replaces(self, store: ObjectStore) -> None:
        """An unconditional put replaces the object and changes its etag."""
        first = store.put("runs/r.json", b"one")
        second = store.put("runs/r.json", b"two")

        data, _ = store.get("runs/r.json")

        assert b"two" == data
        assert first.etag != second.etag

    # --- preconditions --------------------------------------------------------

    def test_if_none_match_on_existing_key_fails(self, store: ObjectStore) -> None:
        """A create-only put on an existing key fails and keeps the original."""
        store.put("gold/k.json", b"original", if_none_match=True)

        with pytest.raises(PreconditionFailed):
            store.put("gold/k.json", b"replacement", if_none_match=True)
        data, _ = store.get("gold/k.json")

        assert b"original" == data

    def test_if_match_right_etag_replaces(self, store: ObjectStore) -> None:
        """``if_match`` with the current etag replaces the object."""
        first = store.put("runs/j.json", b"v1")

        second = store.put("runs/j.json", b"v2", if_match=first.etag)
        data, head = store.get("runs/j.json")

        assert b"v2" == data
        assert second.etag == head.etag

    def test_if_match_wrong_etag_fails(self, store: ObjectStore) -> None:
        """``if_match`` with a stale etag fails and keeps the current object."""
        first = store.put("runs/j.json", b"v1")
        store.put("runs/j.json", b"v2", if_match=first.etag)

        with pytest.raises(PreconditionFailed):
            store.put("runs/j.json", b"v3", if_match=first.etag)
        data, _ = store.get("runs/j.json")

        assert b"v2" == data

    def test_if_match_missing_key_fails(self, store: ObjectStore) -> None:
        """``if_match`` on a key that does not exist fails."""
        with pytest.raises(PreconditionFailed):
            store.put("runs/none.json", b"v1", if_match='"0123456789abcdef"')

        assert store.head("runs/none.json") is None

    def test_concurrent_create_only_writers(
        self, store: ObjectStore, store_factory: StoreFactory
    ) -> None:
        """Of several racing create-only writers exactly one wins."""
        n = self.CONCURRENT_WRITERS
        stores = [store_factory() for _ in range(n)]
        barrier = threading.Barrier(n)
        wins: list[bytes] = []
        losses: list[BaseException] = []
        lock = threading.Lock()

        def write(i: int) -> None:
            body = f"writer-{i}".encode()
            barrier.wait(timeout=10)
            try:
                stores[i].put("gold/race.json", body, if_none_match=True)
            except PreconditionFailed as exc:
                with lock:
                    losses.append(exc)
            else:
                with lock:
                    wins.append(body)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        data, _ = store.get("gold/race.json")

        assert 1 == len(wins)
        assert n - 1 == len(losses)
        assert wins[0] == data

    # --- integrity --------------------------------------------------------------

    def test_sha256_right_is_recorded(self, store: ObjectStore) -> None:
        """A correct ``sha256`` is accepted and reported back."""
        body = b"gold bytes"

        obj = store.put("gold/s.json", body, sha256=sha(body))

        assert sha(body) == obj.sha256
        assert sha(body) == store.get("gold/s.json")[1].sha256

    def test_sha256_wrong_stores_nothing(self, store: ObjectStore) -> None:
        """A wrong ``sha256`` raises ``IntegrityError`` and nothing is stored."""
        with pytest.raises(IntegrityError):
            store.put("gold/bad.json", b"gold bytes", sha256=sha(b"other bytes"))

        assert store.head("gold/bad.json") is None

    # --- listing ----------------------------------------------------------------

    def test_list_by_prefix_in_key_order(self, store: ObjectStore) -> None:
        """``list`` yields only keys under the prefix, sorted."""
        keys = [
            "gold/2026-11-24/run_b.json",
            "gold/2026-11-24/run_a.json",
            "gold/2026-11-25/run_c.json",
            "runs/run_a.json",
            "gold/2026-11-24x",
        ]
        for key in keys:
            store.put(key, key.encode())

        listed = list(store.list("gold/2026-11-24/"))
        everything = [o.key for o in store.list()]

        assert ["gold/2026-11-24/run_a.json", "gold/2026-11-24/run_b.json"] == [
            o.key for o in listed
        ]
        assert [len(b"gold/2026-11-24/run_a.json"), len(b"gold/2026-11-24/run_b.json")] == [
            o.size for o in listed
        ]
        assert sorted(keys) == everything
        assert [] == list(store.list("nothing/"))

    # --- the start-up probe of create-only writes ---------------------------------

    def test_a_store_that_can_probe_finds_its_conditional_writes_honoured(
        self, store: ObjectStore
    ) -> None:
        """Where the store has the start-up probe (S3 stores, their breaker), an honest
        backend passes it, twice (its scratch key then exists already)."""
        if not isinstance(store, ConditionalWriteProbe):
            assert not hasattr(store, "check_conditional_writes")
            return
        store.check_conditional_writes()
        store.check_conditional_writes()

    # --- deleting -------------------------------------------------------------

    def test_delete_removes_the_object_and_is_idempotent(self, store: ObjectStore) -> None:
        """Gone from get, head and list; deleting again is a no-op; the key can be created anew."""
        store.put("outbox/pending/run_a/w.json", b"pending")
        store.put("outbox/pending/run_a/x.json", b"beside")

        store.delete("outbox/pending/run_a/w.json")
        store.delete("outbox/pending/run_a/w.json")
        store.delete("outbox/never/written.json")

        with pytest.raises(ObjectNotFound):
            store.get("outbox/pending/run_a/w.json")
        assert store.head("outbox/pending/run_a/w.json") is None
        assert ["outbox/pending/run_a/x.json"] == [o.key for o in store.list("outbox/")]
        again = store.put("outbox/pending/run_a/w.json", b"again", if_none_match=True)
        assert (b"again", again.etag) == (
            store.get("outbox/pending/run_a/w.json")[0],
            store.get("outbox/pending/run_a/w.json")[1].etag,
        )
        store.delete("outbox/pending/run_a/x.json")
        store.delete("outbox/pending/run_a/w.json")
        assert [] == list(store.list("outbox/"))

    # --- keys -------------------------------------------------------------------

    @pytest.mark.parametrize(
        "key",
        ["", "../x", "/abs", "a/../../b", "a/./b", "a\\b", "a\x00b", "a\nb", "a//b", "x" * 1025],
        ids=[
            "empty",
            "dotdot",
            "absolute",
            "escape",
            "dot",
            "backslash",
            "nul",
            "newline",
            "empty-segment",
            "too-long",
        ],
    )
    def test_invalid_keys_rejected(self, store: ObjectStore, key: str) -> None:
        """Keys that are empty, escape the root or hold control bytes are refused."""
        with pytest.raises(InvalidKey):
            store.put(key, b"x")
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            store.head(key)
        with pytest.raises(InvalidKey):
            store.delete(key)

    # --- presigned URLs ---------------------------------------------------------

    def test_presign_get_reads_the_bytes(self, store: ObjectStore) -> None:
        """The presigned URL reads the object."""
        body = b'{"presigned": true}'
        store.put("gold/p.json", body)

        url = store.presign_get("gold/p.json", expires_s=300)

        assert self.PRESIGN_SCHEME == urllib.parse.urlsplit(url).scheme
        assert body == self.read_presigned(url)

    # --- model-based ------------------------------------------------------------

    def test_state_machine(self, store: ObjectStore) -> None:
        """Random puts (plain, create-only, if-match) behave like a dict model."""
        reports_sha256 = self.REPORTS_SHA256
        keys = st.sampled_from(["a.json", "b/c.json", "b/d.json", "e/f/g.json"])
        bodies = st.binary(max_size=64)

        class StoreMachine(RuleBasedStateMachine):
            def __init__(self) -> None:
                super().__init__()
                self.model: dict[str, tuple[bytes, str]] = {
                    o.key: (store.get(o.key)[0], o.etag) for o in store.list()
                }

            @rule(key=keys, body=bodies)
            def put(self, key: str, body: bytes) -> None:
                obj = store.put(key, body)
                self.model[key] = (body, obj.etag)

            @rule(key=keys, body=bodies)
            def create_only(self, key: str, body: bytes) -> None:
                if key in self.model:
                    with pytest.raises(PreconditionFailed):
                        store.put(key, body, if_none_match=True)
                else:
                    obj = store.put(key, body, if_none_match=True)
                    self.model[key] = (body, obj.etag)

            @rule(key=keys, body=bodies, stale=st.booleans())
            def replace_if_match(self, key: str, body: bytes, stale: bool) -> None:
                if key not in self.model:
                    return
                etag = self.model[key][1]
                if stale:
                    with pytest.raises(PreconditionFailed):
                        store.put(key, body, if_match=etag + "0")
                    return
                obj = store.put(key, body, if_match=etag)
                self.model[key] = (body, obj.etag)

            @rule(key=keys)
            def delete(self, key: str) -> None:
                store.delete(key)
                self.model.pop(key, None)

            @invariant()
            def matches_model(self) -> None:
                assert sorted(self.model) == [o.key for o in store.list()]
                for key, (body, etag) in self.model.items():
                    data, obj = store.get(key)
                    assert body == data
                    assert etag == obj.etag
                    if reports_sha256:
                        assert sha(body) == obj.sha256

        run_state_machine_as_test(
            StoreMachine,
            settings=settings(
                max_examples=15,
                stateful_step_count=10,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
