"""The SSRF guard refuses non-public addresses unless private sources are allowed."""

from __future__ import annotations

import pytest

from atlasreg_cursor.adapters._netguard import check_source_url, is_public_address, vet_url
from atlasreg_cursor.domain.errors import SourceFailed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/noticias",
        "http://127.1.2.3:8080/",
        "http://localhost/",
        "http://10.0.0.5/",
        "http://172.16.0.1/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "https://[::]/",
        "http://[fec0::1]/",
        "http://192.0.0.9/",
        "http://192.0.0.10/",
    ],
)
def test_non_public_addresses_are_refused(url: str) -> None:
    """Loopback, private, link-local, multicast, reserved and unspecified are refused."""
    with pytest.raises(SourceFailed) as info:
        check_source_url(url, allow_private=False)

    assert "forbidden_address" == info.value.error_type
    assert "ALLOW_PRIVATE_SOURCES" in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/noticias/", "http://localhost/", "https://[::1]/"]
)
def test_private_addresses_pass_when_allowed(url: str) -> None:
    """With ALLOW_PRIVATE_SOURCES the address is not checked."""
    check_source_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url", ["https://93.184.215.14/dados.csv", "http://8.8.8.8:8080/x", "https://[2606:4700::1]/"]
)
def test_public_addresses_pass(url: str) -> None:
    """Public IP literals pass without private sources allowed (no DNS involved)."""
    check_source_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.csv",
        "gopher://127.0.0.1/",
        "example.com/x",
        "http:///nohost",
        "http://[::1/",
    ],
)
@pytest.mark.parametrize("allow_private", [True, False])
def test_only_http_urls_with_a_host(url: str, allow_private: bool) -> None:
    """Other schemes, no host or a malformed URL are refused even when private is allowed."""
    with pytest.raises(SourceFailed) as info:
        check_source_url(url, allow_private=allow_private)

    assert "invalid_url" == info.value.error_type


def _no_such_host(host: str, port: int) -> list[str]:
    raise OSError(f"{host}: Name or service not known")


def test_unresolvable_host_is_a_network_error() -> None:
    """A host that cannot be resolved fails the source with network_error (no query sent)."""
    with pytest.raises(SourceFailed) as info:
        vet_url("http://nowhere.example/", allow_private=False, resolver=_no_such_host)

    assert "network_error" == info.value.error_type


def test_overlong_label_is_an_invalid_url() -> None:
    """A 64-character DNS label is not a host name at all."""
    with pytest.raises(SourceFailed) as info:
        check_source_url(f"http://{'a' * 64}.example/", allow_private=False)

    assert "invalid_url" == info.value.error_type


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("fe80::1%eth0", False),
        ("not-an-ip", False),
        ("fec0::1", False),
        ("feff:ffff::1", False),
        ("192.0.0.9", False),
        ("192.0.0.10", False),
        ("192.0.0.255", False),
        ("2002:c000:9::1", False),
        ("192.0.1.1", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    """
    Only globally routable addresses are public; site-local ``fec0::/10`` and
    ``192.0.0.0/24`` (IETF protocol assignments, ``.9``/``.10`` global in
    Python 3.11) are refused too, also inside a 6to4 address.
    """
    assert public == is_public_address(address)
