"""``S3ObjectStore``: the ``ObjectStore`` port on one bucket of an S3-compatible service."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs
import stamina
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from atlasreg_cursor.adapters._keys import validate_key
from atlasreg_cursor.domain.errors import (
    IntegrityError,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
    UnsupportedFeature,
)
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.ports.storage import StoredObject

from ._client import Dialect, normalize_endpoint, s3_client
from ._errors import (
    MISSING_CODES,
    error_code,
    error_status,
    is_transient,
    missing_bucket,
    put_failure,
    translate,
)
from ._objects import METADATA_LIMITS, PutRequest, checked_metadata, described, unquote

log = structlog.get_logger()

T = TypeVar("T")

RETRY_ATTEMPTS = 5
RETRY_TIMEOUT = 60.0
#: The scratch key of the start-up check of conditional writes.
PROBE_KEY = "_cursor/probe/conditional-write"
PRESIGN_LIMIT_SECONDS = 604_800


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
        self._client = s3_client(
            endpoint_url=self.endpoint_url,
            region=self.region,
            dialect=self.dialect,
            access_key=self.access_key,
            secret_key=self.secret_key,
            timeout=self.timeout,
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
        request = self._put_request(
            key,
            body,
            content_type=content_type,
            metadata=metadata,
            if_none_match=if_none_match,
            if_match=if_match,
            sha256=sha256,
        )
        self._ensure_bucket()
        return self._conditional_write(request)

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
            if error_code(exc) in MISSING_CODES:
                raise ObjectNotFound(f"no object at {key} in bucket {self.bucket}") from exc
            raise self._translate(exc, "get", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "get", key) from exc
        obj = described(key, response, size=len(data))
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
            if error_code(exc) in MISSING_CODES:
                return None
            raise self._translate(exc, "head", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "head", key) from exc
        return described(key, response, size=int(response.get("ContentLength", 0)))

    def delete(self, key: str) -> None:
        """
        Remove the object at *key* (S3 answers the same whether it was there or not).

        Raises:
            StorageUnavailable: the endpoint cannot be reached (transient).
        """
        key = validate_key(key)
        self._ensure_bucket()
        try:
            self._retrying(lambda: self._client.delete_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if error_code(exc) in MISSING_CODES:
                return
            raise self._translate(exc, "delete", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "delete", key) from exc

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
                    etag=unquote(str(item.get("ETag", ""))),
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

    # --- internals: the steps of put ---------------------------------------

    def _put_request(
        self,
        key: str,
        body: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None,
        if_none_match: bool,
        if_match: str | None,
        sha256: str | None,
    ) -> PutRequest:
        """Check the key, the caller's SHA-256 and the metadata of a PUT."""
        key = validate_key(key)
        digest = sha256_hex(body)
        if sha256 is not None and sha256.lower() != digest:
            raise IntegrityError(f"sha256 given for {key} does not match its bytes")
        return PutRequest(
            key=key,
            body=body,
            digest=digest,
            content_type=content_type,
            metadata=checked_metadata(key, metadata, digest, dialect=self.dialect),
            if_none_match=if_none_match,
            if_match=if_match,
        )

    def _conditional_write(self, request: PutRequest) -> StoredObject:
        """PUT *request*, retrying transient failures; library errors become ours."""
        params = request.params(self.bucket)
        try:
            for attempt in self._attempts():
                with attempt:
                    try:
                        response = self._client.put_object(**params)
                    except ClientError as exc:
                        return self._refused_put(exc, request, retried=attempt.num > 1)
                    log.debug(
                        "s3.put",
                        key=request.key,
                        sha256=request.digest,
                        size=len(request.body),
                        conditional=request.conditional,
                    )
                    return request.stored(response)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, "put", request.key) from exc
        raise StorageUnavailable(f"S3 bucket {self.bucket}: no attempt made")

    def _refused_put(self, exc: ClientError, request: PutRequest, *, retried: bool) -> StoredObject:
        """
        Raise what a refused PUT means, or return our own earlier write.

        A refusal without a meaning of its own is raised as is, to be retried
        when transient. A condition refused on a retry may be our earlier
        attempt, which landed before its reply was lost.
        """
        failed = put_failure(exc, request.key, has_if_match=request.if_match is not None)
        if failed is None:
            raise exc
        if isinstance(failed, PreconditionFailed) and retried:
            earlier = self._earlier_write(request)
            if earlier is not None:
                return earlier
        raise failed from exc

    def _earlier_write(self, request: PutRequest) -> StoredObject | None:
        """Return the object at the request's key if it holds the request's bytes."""
        current = self.head(request.key)
        if current is None or current.sha256 != request.digest:
            return None
        log.debug("s3.put_adopted", key=request.key, sha256=request.digest)
        return current

    # --- internals: retries, the bucket, errors ---------------------------

    def _attempts(self) -> Any:
        return stamina.retry_context(
            on=is_transient, attempts=RETRY_ATTEMPTS, timeout=RETRY_TIMEOUT
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
                if error_code(exc) not in MISSING_CODES and error_code(exc) != "NoSuchBucket":
                    if error_status(exc) == 403:
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
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise self._translate(exc, "create_bucket", "") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "create_bucket", "") from exc
        log.info("s3.bucket_created", bucket=self.bucket, endpoint=self.endpoint_url)

    def _missing_bucket(self) -> StorageError:
        return missing_bucket(self.bucket, self.endpoint_url)

    def _translate(self, exc: Exception, op: str, key: str) -> StorageError:
        return translate(exc, op, key, bucket=self.bucket, endpoint_url=self.endpoint_url)
