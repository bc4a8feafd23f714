"""botocore errors of the S3 store: which are transient, what each one means."""

from __future__ import annotations

import structlog
from botocore.exceptions import (
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
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)

log = structlog.get_logger()

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
_CREDENTIAL_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


def is_transient(exc: Exception) -> bool:
    """Tell whether *exc* is worth retrying (connection trouble, 5xx, throttling)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        return error_status(exc) >= 500 or error_code(exc) in TRANSIENT_CODES
    return False


def error_code(exc: ClientError) -> str:
    """Return the S3 error code of *exc* (``""`` when there is none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_status(exc: ClientError) -> int:
    """Return the HTTP status of *exc* (``0`` when there is none)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def put_failure(exc: ClientError, key: str, *, has_if_match: bool) -> StorageError | None:
    """
    Return what a refused PUT of *key* means, ``None`` for no particular meaning.

    A refused condition (409, 412, or 404 under ``If-Match``) is
    ``PreconditionFailed``; bytes the server saw differently are ``IntegrityError``.
    """
    code, status = error_code(exc), error_status(exc)
    if code in PRECONDITION_CODES or status in {409, 412}:
        return PreconditionFailed(f"condition on {key} did not hold ({code or status})")
    if has_if_match and (code in MISSING_CODES or status == 404) and code != "NoSuchBucket":
        return PreconditionFailed(f"if_match on {key}: no such object")
    if code in DIGEST_CODES:
        return IntegrityError(f"the server rejected the bytes of {key} ({code})")
    return None


def missing_bucket(bucket: str, endpoint_url: str) -> StorageError:
    """Return the error for a bucket that does not exist, with what to do about it."""
    return StorageError(
        f"bucket {bucket!r} does not exist at {endpoint_url}: create it, or"
        " name an existing one with GOLD_BUCKET (or R2_BUCKET_NAME), or set"
        " S3_CREATE_BUCKET=true"
    )


def translate(exc: Exception, op: str, key: str, *, bucket: str, endpoint_url: str) -> StorageError:
    """
    Return the ``StorageError`` for *exc* raised by *op* on *key*.

    Transient failures become ``StorageUnavailable`` (logged as a warning),
    digest mismatches ``IntegrityError``; the message names the operation,
    key and bucket, never a credential.
    """
    where = f"{op} {key}".strip() + f" in bucket {bucket}"
    if isinstance(exc, StorageError):
        return exc
    if is_transient(exc):
        log.warning("s3.unavailable", op=op, key=key, error_type=type(exc).__name__)
        return StorageUnavailable(f"S3 endpoint {endpoint_url} unavailable ({where})")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == "NoSuchBucket":
            return missing_bucket(bucket, endpoint_url)
        if code in _CREDENTIAL_CODES:
            return StorageError(f"S3 refused {where}: {code} (check the access keys)")
        if code in DIGEST_CODES:
            return IntegrityError(f"the server rejected the bytes of {key} ({code})")
        return StorageError(f"S3 {where} failed: {code or error_status(exc)}")
    return StorageError(f"S3 {where} failed: {type(exc).__name__}: {exc}")
