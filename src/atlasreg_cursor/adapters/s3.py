"""An ObjectStore on the S3 API with botocore, shared by MinIO, R2 and S3.

Implements ``ObjectStore`` (DESIGN §6): ``put`` with user metadata, content
type, create-only (``If-None-Match: *``) and compare-and-swap (``If-Match``)
writes, and the SHA-256 of the body sent as ``ChecksumSHA256`` (a plain
``x-amz-checksum-sha256`` header) so the server rejects bytes corrupted on
the way; ``get``, ``head``, ``list`` (ListObjectsV2, paginated) and
``presign_get``. The hex SHA-256 is also kept in the ``sha256`` metadata, so
every ``StoredObject`` read back carries it (listings excepted: S3 does not
list metadata).

Dialects:

- ``minio``: path-style addressing; the endpoint may be ``host:port`` (the
  seed's ``MINIO_ENDPOINT``) with ``secure`` choosing ``https``.
- ``r2``: region ``auto``, path-style, metadata ASCII and at most 8 KiB,
  never an ACL, presigned URLs at most 7 days.
- ``s3``: addressing chosen by botocore; metadata at most 2 KiB.

botocore's automatic checksums are off (``when_required``, as R2 requires)
and its own retries are limited to one attempt: transient failures
(connection errors, timeouts, 5xx, ``SlowDown``) are retried here with
stamina, so a conditional write can recognise its own earlier attempt, then
raised as ``StorageUnavailable``. :meth:`S3ObjectStore.check_conditional_writes`
is the daemon's start-up check that the backend honours ``If-None-Match``.

Settings read (by the composition root): ``MINIO_ENDPOINT``,
``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``, ``MINIO_SECURE``, ``R2_ENDPOINT``,
``R2_ACCESS_KEY``, ``R2_SECRET_KEY``, ``GOLD_BUCKET`` / ``R2_BUCKET_NAME``,
``S3_CREATE_BUCKET``.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import attrs
import botocore.session
import stamina
import structlog
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from atlasreg_cursor.domain.errors import (
    IntegrityError,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
    UnsupportedFeature,
)
from atlasreg_cursor.domain.hashing import is_sha256_hex, sha256_hex
from atlasreg_cursor.ports.storage import StoredObject

from ._keys import validate_key

log = structlog.get_logger()

T = TypeVar("T")
Dialect = Literal["minio", "r2", "s3"]

#: Library errors worth retrying: the endpoint is away, slow or cut us off.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    ResponseStreamingError,
    IncompleteReadError,
)
#: S3 error codes worth retrying besides any 5xx status.
TRANSIENT_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"}
)
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

RETRY_ATTEMPTS = 5
RETRY_TIMEOUT = 60.0
#: The scratch key of the start-up check of conditional writes.
PROBE_KEY = "_cursor/probe/conditional-write"
PRESIGN_LIMIT_SECONDS = 604_800
METADATA_LIMITS: Mapping[str, int] = {"r2": 8192, "minio": 2048, "s3": 2048}
_META_KEY = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_META_VALUE = re.compile(r"^[\x20-\x7e]*$")

_session_lock = threading.Lock()
_sessions: list[Any] = []


def _create_client(**kwargs: Any) -> Any:
    # One botocore session per process: loading the S3 model once saves
    # ~60 ms per adapter; create_client on a shared session needs the lock.
    with _session_lock:
        if not _sessions:
            _sessions.append(botocore.session.get_session())
        return _sessions[0].create_client("s3", **kwargs)


def normalize_endpoint(endpoint: str, *, secure: bool = False) -> str:
    """
    Turn ``host:port`` (the seed's ``MINIO_ENDPOINT``) or a URL into a URL.

    Args:
        endpoint: ``host:port`` or ``http(s)://host[:port]``.
        secure: use ``https`` when *endpoint* has no scheme.

    Returns:
        The endpoint URL without a trailing slash.
    """
    endpoint = endpoint.strip()
    if "://" in endpoint:
        return endpoint.rstrip("/")
    return f"{'https' if secure else 'http'}://{endpoint.strip('/')}"


def dialect_for_backend(backend: str) -> Dialect:
    """
    Map a ``STORAGE_BACKEND`` value to its S3 dialect.

    Args:
        backend: ``minio``, ``r2`` or ``s3``.

    Returns:
        The dialect.

    Raises:
        UnsupportedFeature: the backend is not served by this adapter.
    """
    if backend == "minio":
        return "minio"
    if backend == "r2":
        return "r2"
    if backend == "s3":
        return "s3"
    raise UnsupportedFeature(f"storage backend {backend!r} is not an S3 dialect")


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        return _status(exc) >= 500 or _code(exc) in TRANSIENT_CODES
    return False


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _unquote(etag: str) -> str:
    return etag.strip().strip('"')


def _hex_from_checksum(value: str | None) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


@attrs.define(eq=False)
class S3ObjectStore:
    """
    ``ObjectStore`` on one bucket of an S3-compatible service.

    Args:
        endpoint_url: the service URL, or ``host:port`` with *secure*.
        bucket: the bucket (``GOLD_BUCKET``).
        access_key: the access key id.
        secret_key: the secret key (never logged or shown in reprs).
        region: the signing region (``auto`` for R2 whatever is given).
        dialect: ``minio``, ``r2`` or ``s3``.
        create_bucket: create the bucket on first use when it is missing.
        list_page_size: ``MaxKeys`` of each ListObjectsV2 page.
        presign_max_seconds: the longest presigned URL (at most 7 days).
        secure: ``https`` for an endpoint given as ``host:port``.
        timeout: read timeout of one request, in seconds.
    """

    endpoint_url: str = attrs.field(kw_only=True)
    bucket: str = attrs.field(kw_only=True)
    access_key: str = attrs.field(kw_only=True, repr=False)
    secret_key: str = attrs.field(kw_only=True, repr=False)
    region: str = attrs.field(kw_only=True, default="us-east-1")
    dialect: Dialect = attrs.field(kw_only=True, default="minio")
    create_bucket: bool = attrs.field(kw_only=True, default=False)
    list_page_size: int = attrs.field(kw_only=True, default=1000)
    presign_max_seconds: int = attrs.field(kw_only=True, default=PRESIGN_LIMIT_SECONDS)
    secure: bool = attrs.field(kw_only=True, default=False)
    timeout: float = attrs.field(kw_only=True, default=30.0)
    _client: Any = attrs.field(init=False, repr=False)
    _lock: threading.Lock = attrs.field(init=False, repr=False, factory=threading.Lock)
    _bucket_checked: bool = attrs.field(init=False, repr=False, default=False)

    def __attrs_post_init__(self) -> None:
        if self.dialect not in METADATA_LIMITS:
            raise UnsupportedFeature(f"unknown S3 dialect {self.dialect!r}")
        if not self.bucket:
            raise StorageError("the bucket name is empty (set GOLD_BUCKET or R2_BUCKET_NAME)")
        if not 1 <= self.list_page_size <= 1000:
            raise StorageError("list_page_size must be between 1 and 1000")
        self.endpoint_url = normalize_endpoint(self.endpoint_url, secure=self.secure)
        if self.dialect == "r2":
            self.region = "auto"
        self.presign_max_seconds = min(self.presign_max_seconds, PRESIGN_LIMIT_SECONDS)
        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "auto" if self.dialect == "s3" else "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=min(10.0, self.timeout),
            read_timeout=self.timeout,
            max_pool_connections=32,
            tcp_keepalive=True,
        )
        self._client = _create_client(
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )

    # --- ObjectStore ------------------------------------------------------

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
        Store *body* at *key*, its SHA-256 checked here and by the server.

        Args:
            key: the object key.
            body: the exact bytes to store.
            content_type: the ``Content-Type`` of the object.
            metadata: user metadata (ASCII; the ``sha256`` entry is set here).
            if_none_match: only create; fail if the key exists.
            if_match: only replace the object whose etag is this.
            sha256: the hex SHA-256 the caller computed.

        Returns:
            The stored object's description.

        Raises:
            PreconditionFailed: a condition did not hold.
            IntegrityError: *sha256* does not match *body*, or the server saw
                other bytes than were sent.
            InvalidKey: the key is empty, too long or escapes the root.
            UnsupportedFeature: metadata that is not ASCII or is too large.
            StorageUnavailable: the endpoint cannot be reached (transient).
        """
        key = validate_key(key)
        digest = sha256_hex(body)
        if sha256 is not None and sha256.lower() != digest:
            raise IntegrityError(f"sha256 given for {key} does not match its bytes")
        meta = self._checked_metadata(key, metadata, digest)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "Metadata": meta,
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
        }
        if if_none_match:
            params["IfNoneMatch"] = "*"
        if if_match is not None:
            params["IfMatch"] = f'"{_unquote(if_match)}"'
        conditional = if_none_match or if_match is not None
        self._ensure_bucket()
        try:
            for attempt in self._attempts():
                with attempt:
                    try:
                        response = self._client.put_object(**params)
                    except ClientError as exc:
                        failed = self._put_error(exc, key, has_if_match=if_match is not None)
                        if failed is None:
                            raise
                        if isinstance(failed, PreconditionFailed) and attempt.num > 1:
                            # Our earlier attempt may have landed before its reply was lost.
                            current = self.head(key)
                            if current is not None and current.sha256 == digest:
                                log.debug("s3.put_adopted", key=key, sha256=digest)
                                return current
                        raise failed from exc
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, "put", key) from exc
        etag = _unquote(str(response.get("ETag", "")))
        log.debug("s3.put", key=key, sha256=digest, size=len(body), conditional=conditional)
        return StoredObject(
            key=key,
            size=len(body),
            etag=etag,
            sha256=digest,
            metadata=meta,
            content_type=content_type,
        )

    def get(self, key: str) -> tuple[bytes, StoredObject]:
        """
        Return the object's bytes and description.

        Raises:
            ObjectNotFound: no object at *key*.
            IntegrityError: the bytes read do not match the ``sha256`` metadata.
            StorageUnavailable: the endpoint cannot be reached (transient).
        """
        key = validate_key(key)
        self._ensure_bucket()

        def fetch() -> tuple[bytes, dict[str, Any]]:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            stream = response["Body"]
            try:
                return stream.read(), response
            finally:
                stream.close()

        try:
            data, response = self._retrying(fetch)
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                raise ObjectNotFound(f"no object at {key} in bucket {self.bucket}") from exc
            raise self._translate(exc, "get", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "get", key) from exc
        obj = self._described(key, response, size=len(data))
        if obj.sha256 is not None and sha256_hex(data) != obj.sha256:
            raise IntegrityError(f"bytes of {key} do not match their sha256")
        return data, obj

    def head(self, key: str) -> StoredObject | None:
        """
        Describe the object at *key*.

        Returns:
            Its description, or ``None`` if there is none.

        Raises:
            StorageUnavailable: the endpoint cannot be reached (transient).
        """
        key = validate_key(key)
        self._ensure_bucket()
        try:
            response = self._retrying(lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                return None
            raise self._translate(exc, "head", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "head", key) from exc
        return self._described(key, response, size=int(response.get("ContentLength", 0)))

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """
        Yield the objects under *prefix* in key order, one page at a time.

        Listed objects carry key, size, etag and time; S3 lists no metadata,
        so their ``sha256`` is ``None`` (``head`` has it).

        Raises:
            StorageUnavailable: the endpoint cannot be reached (transient).
        """
        self._ensure_bucket()
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": prefix,
                "MaxKeys": self.list_page_size,
            }
            if token:
                params["ContinuationToken"] = token
            try:
                page = self._list_page(params)
            except (ClientError, BotoCoreError) as exc:
                raise self._translate(exc, "list", prefix) from exc
            for item in page.get("Contents", []):
                yield StoredObject(
                    key=item["Key"],
                    size=int(item.get("Size", 0)),
                    etag=_unquote(str(item.get("ETag", ""))),
                    last_modified=item.get("LastModified"),
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _list_page(self, params: Mapping[str, Any]) -> dict[str, Any]:
        page: dict[str, Any] = self._retrying(lambda: self._client.list_objects_v2(**params))
        return page

    def presign_get(self, key: str, expires_s: int = 3600) -> str:
        """
        Return a URL that reads *key* without credentials for *expires_s*.

        Raises:
            UnsupportedFeature: *expires_s* is not between 1 s and the
                configured maximum (7 days at most).
        """
        key = validate_key(key)
        if not 1 <= expires_s <= self.presign_max_seconds:
            raise UnsupportedFeature(
                f"presigned URLs last 1 to {self.presign_max_seconds} s, not {expires_s}"
            )
        try:
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(expires_s),
            )
        except BotoCoreError as exc:
            raise self._translate(exc, "presign", key) from exc
        return url

    def check_conditional_writes(self) -> None:
        """
        Make sure the backend honours ``If-None-Match: *`` on PUT (start-up check).

        Exactly-once publishing depends on it: a backend that ignores the
        header silently overwrites a Gold. The probe writes the scratch key
        :data:`PROBE_KEY` create-only twice; the second write must be refused.

        Raises:
            StorageError: the backend overwrote the key (conditional writes
                are ignored), with what to do about it.
            StorageUnavailable: the endpoint cannot be reached.
        """
        body = b"atlasreg-cursor checks that create-only writes are refused when the key exists\n"
        for _ in range(2):
            try:
                self.put(PROBE_KEY, body, content_type="text/plain", if_none_match=True)
            except PreconditionFailed:
                log.debug("s3.conditional_writes_ok", bucket=self.bucket)
                return
        raise StorageError(
            f"the S3 endpoint {self.endpoint_url} ignores If-None-Match on PUT (bucket"
            f" {self.bucket!r}: {PROBE_KEY} was written twice create-only); exactly-once"
            " publishing needs conditional writes: upgrade MinIO to a release that supports"
            " them, or use R2 or AWS S3"
        )

    def close(self) -> None:
        """Release the client's connections."""
        self._client.close()

    # --- internals --------------------------------------------------------

    def _attempts(self) -> Any:
        return stamina.retry_context(
            on=_is_transient, attempts=RETRY_ATTEMPTS, timeout=RETRY_TIMEOUT
        )

    def _retrying(self, call: Callable[[], T]) -> T:
        for attempt in self._attempts():
            with attempt:
                return call()
        raise StorageUnavailable(f"S3 bucket {self.bucket}: no attempt made")

    def _ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        with self._lock:
            self._check_bucket()

    def _check_bucket(self) -> None:
        if not self._bucket_checked:
            try:
                self._retrying(lambda: self._client.head_bucket(Bucket=self.bucket))
            except ClientError as exc:
                if _code(exc) not in MISSING_CODES and _code(exc) != "NoSuchBucket":
                    if _status(exc) == 403:
                        # Tokens scoped to objects may not see the bucket itself.
                        log.debug("s3.bucket_check_forbidden", bucket=self.bucket)
                        self._bucket_checked = True
                        return
                    raise self._translate(exc, "head_bucket", "") from exc
                if not self.create_bucket:
                    raise self._missing_bucket() from exc
                self._make_bucket()
            except BotoCoreError as exc:
                raise self._translate(exc, "head_bucket", "") from exc
            self._bucket_checked = True

    def _make_bucket(self) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.dialect == "s3" and self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._retrying(lambda: self._client.create_bucket(**params))
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise self._translate(exc, "create_bucket", "") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "create_bucket", "") from exc
        log.info("s3.bucket_created", bucket=self.bucket, endpoint=self.endpoint_url)

    def _missing_bucket(self) -> StorageError:
        return StorageError(
            f"bucket {self.bucket!r} does not exist at {self.endpoint_url}: create it, or"
            " name an existing one with GOLD_BUCKET (or R2_BUCKET_NAME), or set"
            " S3_CREATE_BUCKET=true"
        )

    def _checked_metadata(
        self, key: str, metadata: Mapping[str, str] | None, digest: str
    ) -> dict[str, str]:
        meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
        given = meta.get("sha256")
        if given is not None and given.lower() != digest:
            raise IntegrityError(f"sha256 metadata given for {key} does not match its bytes")
        meta["sha256"] = digest
        for name, value in meta.items():
            if not _META_KEY.fullmatch(name) or not _META_VALUE.fullmatch(value):
                raise UnsupportedFeature(
                    f"metadata {name!r} of {key} must be printable ASCII ({self.dialect})"
                )
        size = sum(len(k) + len(v) for k, v in meta.items())
        limit = METADATA_LIMITS[self.dialect]
        if size > limit:
            raise UnsupportedFeature(
                f"metadata of {key} is {size} bytes; {self.dialect} allows {limit}"
            )
        return meta

    def _put_error(self, exc: ClientError, key: str, *, has_if_match: bool) -> StorageError | None:
        code, status = _code(exc), _status(exc)
        if code in PRECONDITION_CODES or status in {409, 412}:
            return PreconditionFailed(f"condition on {key} did not hold ({code or status})")
        if has_if_match and (code in MISSING_CODES or status == 404) and code != "NoSuchBucket":
            return PreconditionFailed(f"if_match on {key}: no such object")
        if code in DIGEST_CODES:
            return IntegrityError(f"the server rejected the bytes of {key} ({code})")
        return None

    def _described(self, key: str, response: Mapping[str, Any], *, size: int) -> StoredObject:
        metadata = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        sha = metadata.get("sha256")
        if sha is None or not is_sha256_hex(sha):
            sha = _hex_from_checksum(response.get("ChecksumSHA256"))
        return StoredObject(
            key=key,
            size=size,
            etag=_unquote(str(response.get("ETag", ""))),
            sha256=sha,
            metadata=metadata,
            content_type=response.get("ContentType"),
            last_modified=response.get("LastModified"),
        )

    def _translate(self, exc: Exception, op: str, key: str) -> StorageError:
        where = f"{op} {key}".strip() + f" in bucket {self.bucket}"
        if isinstance(exc, StorageError):
            return exc
        if _is_transient(exc):
            log.warning("s3.unavailable", op=op, key=key, error_type=type(exc).__name__)
            return StorageUnavailable(f"S3 endpoint {self.endpoint_url} unavailable ({where})")
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return self._missing_bucket()
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                return StorageError(f"S3 refused {where}: {code} (check the access keys)")
            if code in DIGEST_CODES:
                return IntegrityError(f"the server rejected the bytes of {key} ({code})")
            return StorageError(f"S3 {where} failed: {code or _status(exc)}")
        return StorageError(f"S3 {where} failed: {type(exc).__name__}: {exc}")
