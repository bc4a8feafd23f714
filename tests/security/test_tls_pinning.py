"""HTTPS through the guard: the connection goes to the vetted address, TLS checks the name."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atlasreg_cursor.domain.errors import SourceFailed
from tests.security.netlab import FakeInternet, RecordingServer, csv_route

pytestmark = pytest.mark.security

CSV = b"title,url\nDespacho publicado,/d\n"


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for *name*; returns (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_site(
    net: FakeInternet, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[RecordingServer, list[str | None], ssl.SSLContext]]:
    """``secure.test`` over TLS with a certificate for the name given as param."""
    served_name = getattr(request, "param", "secure.test")
    cert, key = _certificate(tmp_path, served_name)
    sni: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    server = RecordingServer({"/ok.csv": csv_route(CSV)}, tls=server_ctx)
    net.add("secure.test", server)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    yield server, sni, client_ctx
    server.stop()


def test_https_is_pinned_with_sni_and_host_kept(net: FakeInternet, tls_site) -> None:
    """The TCP connection goes to the vetted address; SNI, certificate and Host use the name."""
    server, sni, ctx = tls_site

    got = net.client(ssl_context=ctx).fetch(
        "https://secure.test/ok.csv", deadline=_soon(), max_bytes=10_000
    )

    assert CSV == got.body
    assert ["secure.test"] == sni
    assert "secure.test" == server.requests[0].headers["Host"]
    assert [(net.address_of("secure.test"), 443)] == net.dialled


@pytest.mark.parametrize("tls_site", ["other.test"], indirect=True)
def test_a_certificate_for_another_name_is_refused(net: FakeInternet, tls_site) -> None:
    """Pinning the address does not weaken the certificate check: the name must match."""
    server, _sni, ctx = tls_site

    with pytest.raises(SourceFailed) as info:
        net.client(ssl_context=ctx).fetch(
            "https://secure.test/ok.csv", deadline=_soon(), max_bytes=10_000
        )

    assert "tls_error" == info.value.error_type
    assert [] == server.requests


def _soon() -> float:
    import time

    return time.monotonic() + 20
