"""The botocore S3 client of the store, by dialect (``minio``, ``r2``, ``s3``)."""

from __future__ import annotations

import threading
from typing import Any, Literal

import botocore.session
from botocore.config import Config

Dialect = Literal["minio", "r2", "s3"]

_session_lock = threading.Lock()
_sessions: list[Any] = []


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


def s3_client(
    *,
    endpoint_url: str,
    region: str,
    dialect: Dialect,
    access_key: str,
    secret_key: str,
    timeout: float,
) -> Any:
    """
    Return a botocore S3 client for one endpoint.

    Path-style addressing except on AWS S3, checksums only where required
    (as R2 requires), one attempt per call (the store retries), *timeout*
    as the read timeout.
    """
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "auto" if dialect == "s3" else "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=min(10.0, timeout),
        read_timeout=timeout,
        max_pool_connections=32,
        tcp_keepalive=True,
    )
    return _create_client(
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _create_client(**kwargs: Any) -> Any:
    # One botocore session per process: loading the S3 model once saves
    # ~60 ms per adapter; create_client on a shared session needs the lock.
    with _session_lock:
        if not _sessions:
            _sessions.append(botocore.session.get_session())
        return _sessions[0].create_client("s3", **kwargs)
