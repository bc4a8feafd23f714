"""The ObjectStore contract and S3 specifics for ``S3ObjectStore`` on moto's server.

moto stands in for MinIO and R2. It does not verify ``x-amz-checksum-sha256``
itself, so a small loopback proxy in front of it does what S3 and R2 do
(answers ``400 BadDigest`` when the bytes received do not match the header),
records request headers, and can corrupt a body, fail with 503 or drop a
reply, so the adapter's handling of each is checked over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import botocore.session
import pytest
import urllib3

from atlasreg_cursor.adapters.s3 import (
    PROBE_KEY,
    S3ObjectStore,
    normalize_endpoint,
)
from atlasreg_cursor.domain.errors import (
    IntegrityError,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
    UnsupportedFeature,
)
from atlasreg_cursor.ports.storage import ObjectStore
from tests.contract.storage_contract import StoreContract, StoreFactory
from tests.support.s3_server import S3Server, s3_server  # noqa: F401
from tests.support.services import free_port

pytestmark = pytest.mark.s3

_SESSION: list[Any] = []
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}


# --- the checksum-verifying proxy -------------------------------------------


@attrs.define
class ProxyState:
    """What the proxy was asked to do and what it saw."""

    upstream: str
    requests: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)
    corrupt_puts: int = 0
    fail_503: int = 0
    drop_replies: int = 0
    ignore_if_none_match: bool = False
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def take(self, name: str) -> bool:
        """Use up one of the *name* faults; tell whether there was one."""
        with self.lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _relay(self) -> None:
        state: ProxyState = self.server.state
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        with state.lock:
            state.requests.append((self.command, self.path, headers))
        if self.command == "PUT" and state.take("corrupt_puts") and body:
            body = body[:-1] + bytes([body[-1] ^ 0x01])
        if state.take("fail_503"):
            self._answer(503, b"<Error><Code>ServiceUnavailable</Code></Error>")
            return
        wanted = headers.get("x-amz-checksum-sha256")
        if self.command == "PUT" and wanted is not None:
            actual = base64.b64encode(hashlib.sha256(body).digest()).decode()
            if actual != wanted:
                self._answer(
                    400, b"<Error><Code>BadDigest</Code><Message>SHA256 mismatch</Message></Error>"
                )
                return
        forward = {k: v for k, v in headers.items() if k not in HOP_HEADERS}
        if state.ignore_if_none_match:  # a backend without conditional writes
            forward.pop("if-none-match", None)
        reply = urllib3.request(
            self.command,
            state.upstream + self.path,
            body=body,
            headers=forward,
            timeout=10,
            retries=False,
            redirect=False,
        )
        if self.command == "PUT" and state.take("drop_replies"):
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", reply.headers.get("content-length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(reply.data)))
        self.end_headers()
        self.wfile.write(reply.data)

    def _answer(self, status: int, xml: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(xml)))
        self.end_headers()
        self.wfile.write(xml)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _relay


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[tuple[str, ProxyState]]:
    """A verifying proxy in front of moto: ``(endpoint, state)``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    server.daemon_threads = True
    server.state = ProxyState(upstream=s3_server.endpoint)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- helpers ------------------------------------------------------------------


def raw_client(server: S3Server) -> Any:
    """A plain botocore client on moto for set-up and checks."""
    if not _SESSION:
        _SESSION.append(botocore.session.get_session())
    return _SESSION[0].create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
    )


def drop_bucket(server: S3Server, bucket: str) -> None:
    """Delete every object of *bucket* and the bucket."""
    client = raw_client(server)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        pass
    finally:
        client.close()


def fresh_bucket() -> str:
    """A bucket name no other test uses."""
    return f"t-{uuid.uuid4().hex[:16]}"


def make_store(endpoint: str, server: S3Server, bucket: str, **kwargs: Any) -> S3ObjectStore:
    """An adapter on *endpoint* with moto's credentials."""
    return S3ObjectStore(
        endpoint_url=endpoint,
        bucket=bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        **kwargs,
    )


# --- the contract: MinIO dialect straight on moto, R2 dialect through the proxy --


class _Factories:
    """``store`` and ``store_factory`` from one ``make_adapter`` fixture."""

    @pytest.fixture
    def make_adapter(self) -> StoreFactory:
        """Return ``make()``: a new adapter on this test's bucket."""
        raise NotImplementedError

    @pytest.fixture
    def store_factory(self, make_adapter: StoreFactory) -> Iterator[StoreFactory]:
        """Further adapters on the same bucket, each with its own connections."""
        made: list[ObjectStore] = []

        def make() -> ObjectStore:
            made.append(make_adapter())
            return made[-1]

        yield make
        for store in made:
            store.close()  # type: ignore[attr-defined]


class TestS3ObjectStoreMinio(_Factories, StoreContract):
    """MinIO dialect: ``host:port`` endpoint, path style, bucket created on first use."""

    PRESIGN_SCHEME = "http"

    @pytest.fixture
    def make_adapter(self, s3_server: S3Server) -> Iterator[StoreFactory]:
        """Adapters on a fresh bucket that the first of them creates."""
        bucket = fresh_bucket()
        host_port = s3_server.endpoint.removeprefix("http://")
        yield lambda: make_store(
            host_port, s3_server, bucket, dialect="minio", create_bucket=True, secure=False
        )
        drop_bucket(s3_server, bucket)

    @pytest.fixture
    def store(self, make_adapter: StoreFactory) -> Iterator[ObjectStore]:
        """An empty bucket."""
        store = make_adapter()
        yield store
        store.close()  # type: ignore[attr-defined]


class TestS3ObjectStoreR2(_Factories, StoreContract):
    """R2 dialect: region ``auto``, every put checked by the verifying proxy."""

    PRESIGN_SCHEME = "http"

    @pytest.fixture
    def make_adapter(
        self,
        s3_server: S3Server,
        proxy: tuple[str, ProxyState],
    ) -> Iterator[StoreFactory]:
        """Adapters on a fresh, pre-created bucket (R2 buckets come from the dashboard)."""
        bucket = fresh_bucket()
        client = raw_client(s3_server)
        client.create_bucket(Bucket=bucket)
        client.close()
        endpoint, _ = proxy
        yield lambda: make_store(endpoint, s3_server, bucket, dialect="r2")
        drop_bucket(s3_server, bucket)

    @pytest.fixture
    def store(self, make_adapter: StoreFactory) -> Iterator[ObjectStore]:
        """An empty bucket."""
        store = make_adapter()
        yield store
        store.close()  # type: ignore[attr-defined]


# --- S3 specifics ---------------------------------------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    """A pre-created empty bucket, dropped afterwards."""
    name = fresh_bucket()
    client = raw_client(s3_server)
    client.create_bucket(Bucket=name)
    client.close()
    yield name
    drop_bucket(s3_server, name)


def test_corrupted_upload_is_rejected_by_the_server(
    s3_server: S3Server,
    proxy: tuple[str, ProxyState],
    bucket: str,
) -> None:
    """Bytes changed on the way no longer match ChecksumSHA256: IntegrityError, nothing stored."""
    endpoint, state = proxy
    store = make_store(endpoint, s3_server, bucket, dialect="r2")
    state.corrupt_puts = 1
    body = b'{"events": []}'

    with pytest.raises(IntegrityError):
        store.put("gold/2026-11-24/run_a1b2c3d4e5f6.json", body, if_none_match=True)
    after = store.head("gold/2026-11-24/run_a1b2c3d4e5f6.json")
    [(_, _, headers)] = [r for r in state.requests if r[0] == "PUT"]

    assert after is None
    assert (
        base64.b64encode(hashlib.sha256(body).digest()).decode() == headers["x-amz-checksum-sha256"]
    )


def test_r2_requests_follow_the_r2_rules(
    s3_server: S3Server,
    proxy: tuple[str, ProxyState],
    bucket: str,
) -> None:
    """R2 dialect signs for region auto, sends the checksum as a header, never an ACL."""
    endpoint, state = proxy
    store = make_store(endpoint, s3_server, bucket, dialect="r2", region="us-east-1")
    store.put("gold/x.json", b"{}", metadata={"run_id": "run_a1b2c3d4e5f6"})

    [(_, path, headers)] = [r for r in state.requests if r[0] == "PUT"]

    assert f"/{bucket}/gold/x.json" == path
    assert "/auto/s3/aws4_request" in headers["authorization"]
    assert "x-amz-checksum-sha256" in headers
    assert not any(h.startswith(("x-amz-acl", "x-amz-grant-")) for h in headers)
    assert "x-amz-sdk-checksum-algorithm" not in headers
    assert "x-amz-trailer" not in headers
    assert "aws-chunked" not in headers.get("content-encoding", "")
    assert "run_a1b2c3d4e5f6" == headers["x-amz-meta-run_id"]


def test_pagination_with_small_pages(
    s3_server: S3Server,
    proxy: tuple[str, ProxyState],
    bucket: str,
) -> None:
    """``list`` walks every ListObjectsV2 page: 10 keys in pages of 3."""
    endpoint, state = proxy
    store = make_store(endpoint, s3_server, bucket, dialect="minio", list_page_size=3)
    keys = [f"gold/2026-11-24/run_{i:02d}.json" for i in range(10)]
    for key in keys:
        store.put(key, key.encode())
    state.requests.clear()

    listed = [o.key for o in store.list("gold/")]
    pages = [r for r in state.requests if r[0] == "GET" and "list-type=2" in r[1]]

    assert keys == listed
    assert 4 == len(pages)
    assert all("max-keys=3" in path for _, path, _ in pages)


def test_bucket_created_on_first_use(s3_server: S3Server) -> None:
    """``create_bucket=True`` makes a missing bucket, once, on the first call."""
    name = fresh_bucket()
    store = make_store(s3_server.endpoint, s3_server, name, create_bucket=True)
    try:
        store.put("a.json", b"{}")
        other = make_store(s3_server.endpoint, s3_server, name, create_bucket=True)
        other.put("b.json", b"{}")

        client = raw_client(s3_server)
        names = [b["Name"] for b in client.list_buckets()["Buckets"]]
        client.close()

        assert name in names
        assert ["a.json", "b.json"] == [o.key for o in store.list()]
    finally:
        drop_bucket(s3_server, name)


def test_missing_bucket_names_the_setting(s3_server: S3Server) -> None:
    """Without ``create_bucket`` a missing bucket is a clear, permanent error."""
    name = fresh_bucket()
    store = make_store(s3_server.endpoint, s3_server, name)

    with pytest.raises(StorageError) as info:
        store.put("a.json", b"{}")

    assert not isinstance(info.value, StorageUnavailable)
    assert name in str(info.value)
    assert "GOLD_BUCKET" in str(info.value)
    assert s3_server.secret_key not in str(info.value)


def test_unreachable_endpoint_is_unavailable(s3_server: S3Server) -> None:
    """Connection refused becomes ``StorageUnavailable`` after the retries."""
    store = make_store(f"127.0.0.1:{free_port()}", s3_server, "gold-bucket", timeout=2.0)

    with pytest.raises(StorageUnavailable):
        store.head("a.json")


def test_503_is_retried_then_unavailable(
    s3_server: S3Server,
    proxy: tuple[str, ProxyState],
    bucket: str,
) -> None:
    """A 503 is retried; one 503 is absorbed, a lasting one is ``StorageUnavailable``."""
    endpoint, state = proxy
    store = make_store(endpoint, s3_server, bucket)
    store.head("warm-up.json")

    state.fail_503 = 1
    put = store.put("a.json", b"{}")
    state.fail_503 = 100
    with pytest.raises(StorageUnavailable):
        store.get("a.json")
    state.fail_503 = 0

    assert b"{}" == store.get("a.json")[0]
    assert put.etag == store.get("a.json")[1].etag


def test_lost_reply_of_create_only_put_is_adopted(
    s3_server: S3Server,
    proxy: tuple[str, ProxyState],
    bucket: str,
) -> None:
    """A create-only put whose reply was lost is retried and recognises its own object."""
    endpoint, state = proxy
    store = make_store(endpoint, s3_server, bucket, dialect="r2")
    body = b'{"gold": 1}'
    state.drop_replies = 1

    obj = store.put("gold/once.json", body, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("gold/once.json", b'{"gold": 2}', if_none_match=True)

    assert hashlib.sha256(body).hexdigest() == obj.sha256
    assert body == store.get("gold/once.json")[0]
    assert 2 <= len([r for r in state.requests if r[0] == "PUT"])


def test_conditional_writes_are_checked_at_start_up(
    s3_server: S3Server, proxy: tuple[str, ProxyState], bucket: str
) -> None:
    """moto honours If-None-Match; a backend that ignores it is refused with what to do."""
    endpoint, state = proxy
    honest = make_store(s3_server.endpoint, s3_server, bucket)
    state.ignore_if_none_match = True
    careless = make_store(endpoint, s3_server, bucket, dialect="r2")

    honest.check_conditional_writes()
    honest.check_conditional_writes()  # the scratch key may exist: still fine
    with pytest.raises(StorageError, match="ignores If-None-Match") as info:
        careless.check_conditional_writes()

    assert not info.value.transient
    assert PROBE_KEY in str(info.value)


@pytest.mark.parametrize(
    ("metadata", "dialect"),
    [
        ({"title": "transmissão"}, "r2"),
        ({"big": "x" * 8200}, "r2"),
        ({"big": "x" * 3000}, "minio"),
        ({"bad key": "x"}, "minio"),
    ],
    ids=["r2-non-ascii", "r2-over-8k", "minio-over-2k", "bad-key"],
)
def test_metadata_rules(
    s3_server: S3Server,
    bucket: str,
    metadata: dict[str, str],
    dialect: Any,
) -> None:
    """Metadata that the service would refuse or mangle is refused before sending."""
    store = make_store(s3_server.endpoint, s3_server, bucket, dialect=dialect)

    with pytest.raises(UnsupportedFeature):
        store.put("a.json", b"{}", metadata=metadata)

    assert store.head("a.json") is None


def test_r2_metadata_up_to_8k_is_accepted(s3_server: S3Server, bucket: str) -> None:
    """R2 allows 8 KiB of metadata, more than S3's 2 KiB."""
    store = make_store(s3_server.endpoint, s3_server, bucket, dialect="r2")

    obj = store.put("a.json", b"{}", metadata={"note": "x" * 5000})

    assert "x" * 5000 == store.get("a.json")[1].metadata["note"]
    assert obj.sha256 == store.get("a.json")[1].sha256


@pytest.mark.parametrize("expires_s", [0, 604_801])
def test_presign_limits(s3_server: S3Server, bucket: str, expires_s: int) -> None:
    """Presigned URLs last between 1 s and 7 days."""
    store = make_store(s3_server.endpoint, s3_server, bucket, dialect="r2")

    with pytest.raises(UnsupportedFeature):
        store.presign_get("a.json", expires_s=expires_s)


def test_secret_not_in_repr(s3_server: S3Server, bucket: str) -> None:
    """The secret key never shows in the adapter's repr."""
    store = make_store(s3_server.endpoint, s3_server, bucket)

    assert s3_server.secret_key not in repr(store)
    assert bucket in repr(store)


@pytest.mark.parametrize(
    ("endpoint", "secure", "expected"),
    [
        ("minio:9000", False, "http://minio:9000"),
        ("minio:9000", True, "https://minio:9000"),
        ("https://acct.r2.cloudflarestorage.com/", False, "https://acct.r2.cloudflarestorage.com"),
    ],
)
def test_normalize_endpoint(endpoint: str, secure: bool, expected: str) -> None:
    """``MINIO_ENDPOINT`` may be ``host:port`` or a URL."""
    assert expected == normalize_endpoint(endpoint, secure=secure)


@pytest.mark.parametrize("careless", [False, True], ids=["honours", "ignores"])
def test_the_daemon_built_from_settings_refuses_a_store_that_ignores_if_none_match(
    s3_server: S3Server,
    proxy: tuple[str, ProxyState],
    bucket: str,
    tmp_path: Path,
    careless: bool,
) -> None:
    """The App's store as settings build it (behind its breaker) is probed at start-up:
    a backend that ignores If-None-Match stops the daemon (exit 2), an honest one does not."""
    from atlasreg_cursor.entrypoints import daemon
    from atlasreg_cursor.entrypoints.bootstrap import build
    from atlasreg_cursor.entrypoints.settings import load_settings

    endpoint, state = proxy
    state.ignore_if_none_match = careless
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "news_watchlist_config.json").write_text('{"sources": []}')
    settings = load_settings(
        {
            "CURSOR_HOME": str(tmp_path),
            "STORAGE_BACKEND": "minio",
            "MINIO_ENDPOINT": endpoint,
            "MINIO_ACCESS_KEY": s3_server.access_key,
            "MINIO_SECRET_KEY": s3_server.secret_key,
            "GOLD_BUCKET": bucket,
        },
        env_file=None,
    )

    with build(settings) as app:
        code = daemon.run_daemon(app, until_empty=True, serve_http=False)

    assert (2 if careless else 0) == code
