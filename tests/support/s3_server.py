"""moto's S3 server as a real process on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import attrs
import pytest

from .services import free_port, missing_service, port_open, wait_until


@attrs.frozen
class S3Server:
    """Where the S3 server listens and the credentials it accepts."""

    endpoint: str
    access_key: str = "testing-access"
    secret_key: str = attrs.field(default="testing-secret", repr=False)
    region: str = "us-east-1"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start ``moto.server`` once per session; stop it at the end."""
    port = free_port()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        missing_service(f"moto server ({exc})")
    try:
        if not wait_until(lambda: port_open("127.0.0.1", port), timeout=30):
            missing_service("moto server did not start within 30 s")
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
