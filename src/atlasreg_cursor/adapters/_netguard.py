"""SSRF guard for source URLs: refuse non-public addresses unless allowed.

``check_source_url`` accepts only ``http``/``https`` URLs with a host, and,
while private sources are not allowed, resolves the host and refuses it when
any address it resolves to is loopback, private, link-local, multicast,
reserved, unspecified or otherwise not globally routable (IPv4-mapped IPv6
addresses are judged by their IPv4 address). The crawler and the CSV
download call it again for every redirect and request, so a public page
cannot redirect the Cursor into the internal network.

Settings read (by the composition root): ``ALLOW_PRIVATE_SOURCES``.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

from atlasreg_cursor.domain.errors import SourceFailed

ALLOWED_SCHEMES = frozenset({"http", "https"})


def check_source_url(url: str, *, allow_private: bool) -> None:
    """
    Refuse *url* unless it is http(s) and (when required) publicly routable.

    Args:
        url: the URL a source is about to fetch.
        allow_private: accept loopback and private addresses
            (``ALLOW_PRIVATE_SOURCES``; the demo and tests use it).

    Raises:
        SourceFailed: ``error_type="invalid_url"`` for another scheme or no
            host; ``"forbidden_address"`` for a non-public address;
            ``"network_error"`` when the host does not resolve.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceFailed(f"malformed URL: {exc}", error_type="invalid_url") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise SourceFailed(
            f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}",
            error_type="invalid_url",
        )
    host = parts.hostname
    if not host:
        raise SourceFailed("URL has no host", error_type="invalid_url")
    if allow_private:
        return
    for address in _resolve(host, port or (443 if parts.scheme.lower() == "https" else 80)):
        if not is_public_address(address):
            raise SourceFailed(
                f"host {host!r} resolves to the non-public address {address}; "
                "set ALLOW_PRIVATE_SOURCES=true to fetch from it",
                error_type="forbidden_address",
            )


def is_public_address(address: str) -> bool:
    """Tell whether an IP address literal is globally routable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    flagged = (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    return ip.is_global and not flagged


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise SourceFailed(
            f"cannot resolve host {host!r}: {exc}", error_type="network_error"
        ) from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise SourceFailed(f"host {host!r} has no address", error_type="network_error")
    return addresses
