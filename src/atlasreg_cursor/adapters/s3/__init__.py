"""An ObjectStore on the S3 API with botocore, shared by MinIO, R2 and S3.

Implements ``ObjectStore`` (architecture §6): ``put`` with user metadata, content
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

Modules: ``store.py`` (the store), ``_objects.py`` (PUT requests, metadata,
descriptions read back), ``_errors.py`` (transient errors and their
translation), ``_client.py`` (the botocore client per dialect).

Settings read (by the composition root): ``MINIO_ENDPOINT``,
``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``, ``MINIO_SECURE``, ``R2_ENDPOINT``,
``R2_ACCESS_KEY``, ``R2_SECRET_KEY``, ``GOLD_BUCKET`` / ``R2_BUCKET_NAME``,
``S3_CREATE_BUCKET``.
"""

from ._client import Dialect, normalize_endpoint
from ._errors import (
    DIGEST_CODES,
    MISSING_CODES,
    PRECONDITION_CODES,
    TRANSIENT_CODES,
    TRANSIENT_ERRORS,
)
from ._objects import METADATA_LIMITS
from .store import (
    PRESIGN_LIMIT_SECONDS,
    PROBE_KEY,
    RETRY_ATTEMPTS,
    RETRY_TIMEOUT,
    S3ObjectStore,
)

__all__ = [
    "DIGEST_CODES",
    "METADATA_LIMITS",
    "MISSING_CODES",
    "PRECONDITION_CODES",
    "PRESIGN_LIMIT_SECONDS",
    "PROBE_KEY",
    "RETRY_ATTEMPTS",
    "RETRY_TIMEOUT",
    "TRANSIENT_CODES",
    "TRANSIENT_ERRORS",
    "Dialect",
    "S3ObjectStore",
    "normalize_endpoint",
]
