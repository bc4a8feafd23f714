"""Fixtures of the security suite: the internal server that must never be reached."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.netlab import FakeInternet, RecordingServer, send


@pytest.fixture(scope="session")
def internal() -> Iterator[RecordingServer]:
    """A loopback "internal" service (think cloud metadata); it must get ZERO requests."""
    server = RecordingServer({"/": lambda h, _q: send(h, 200, b"internal secret")})
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _internal_untouched(internal: RecordingServer) -> Iterator[None]:
    """After every security test, the internal server has seen no connection at all."""
    yield
    assert [] == internal.requests
    assert 0 == internal.connections


@pytest.fixture
def net() -> FakeInternet:
    """A fresh fake public network."""
    return FakeInternet()
