"""What the S3 store sends and reads back: PUT requests, metadata, descriptions."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import attrs

from atlasreg_cursor.domain.errors import IntegrityError, UnsupportedFeature
from atlasreg_cursor.domain.hashing import is_sha256_hex
from atlasreg_cursor.ports.storage import StoredObject

METADATA_LIMITS: Mapping[str, int] = {"r2": 8192, "minio": 2048, "s3": 2048}
_META_KEY = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_META_VALUE = re.compile(r"^[\x20-\x7e]*$")


@attrs.frozen(kw_only=True)
class PutRequest:
    """One checked PUT: the bytes, their hex SHA-256, metadata and write condition."""

    key: str
    body: bytes = attrs.field(repr=False)
    digest: str
    content_type: str
    metadata: Mapping[str, str]
    if_none_match: bool = False
    if_match: str | None = None

    @property
    def conditional(self) -> bool:
        """Whether the write is create-only or compare-and-swap."""
        return self.if_none_match or self.if_match is not None

    def params(self, bucket: str) -> dict[str, Any]:
        """Return the ``PutObject`` parameters, the SHA-256 as ``ChecksumSHA256``."""
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": self.key,
            "Body": self.body,
            "ContentType": self.content_type,
            "Metadata": dict(self.metadata),
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(self.digest)).decode("ascii"),
        }
        if self.if_none_match:
            params["IfNoneMatch"] = "*"
        if self.if_match is not None:
            params["IfMatch"] = f'"{unquote(self.if_match)}"'
        return params

    def stored(self, response: Mapping[str, Any]) -> StoredObject:
        """Describe what this PUT stored, given the server's reply."""
        return StoredObject(
            key=self.key,
            size=len(self.body),
            etag=unquote(str(response.get("ETag", ""))),
            sha256=self.digest,
            metadata=dict(self.metadata),
            content_type=self.content_type,
        )


def checked_metadata(
    key: str, metadata: Mapping[str, str] | None, digest: str, *, dialect: str
) -> dict[str, str]:
    """
    Return *metadata* lower-cased with ``sha256`` set to *digest*.

    Raises:
        IntegrityError: a ``sha256`` entry given does not match *digest*.
        UnsupportedFeature: a name or value that is not printable ASCII, or
            more metadata than *dialect* allows.
    """
    meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
    given = meta.get("sha256")
    if given is not None and given.lower() != digest:
        raise IntegrityError(f"sha256 metadata given for {key} does not match its bytes")
    meta["sha256"] = digest
    for name, value in meta.items():
        if not _META_KEY.fullmatch(name) or not _META_VALUE.fullmatch(value):
            raise UnsupportedFeature(
                f"metadata {name!r} of {key} must be printable ASCII ({dialect})"
            )
    size = sum(len(k) + len(v) for k, v in meta.items())
    limit = METADATA_LIMITS[dialect]
    if size > limit:
        raise UnsupportedFeature(f"metadata of {key} is {size} bytes; {dialect} allows {limit}")
    return meta


def described(key: str, response: Mapping[str, Any], *, size: int) -> StoredObject:
    """Describe the object of a ``GetObject`` or ``HeadObject`` reply."""
    metadata = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
    sha = metadata.get("sha256")
    if sha is None or not is_sha256_hex(sha):
        sha = _hex_from_checksum(response.get("ChecksumSHA256"))
    return StoredObject(
        key=key,
        size=size,
        etag=unquote(str(response.get("ETag", ""))),
        sha256=sha,
        metadata=metadata,
        content_type=response.get("ContentType"),
        last_modified=response.get("LastModified"),
    )


def unquote(etag: str) -> str:
    """Return an etag without its quotes."""
    return etag.strip().strip('"')


def _hex_from_checksum(value: str | None) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None
