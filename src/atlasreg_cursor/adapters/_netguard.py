"""SSRF guard for source URLs: one parser, one resolution, public addresses only.

A URL from the watchlist (or a redirect ``Location``, or a pagination link)
is untrusted. :func:`vet_url` reads it with urllib3's own ``parse_url`` — the
parser the connection is later made with, so the guard and the client can
never disagree about the host — and refuses:

- any scheme but ``http`` and ``https`` (always, even with ``allow_private``);
- a backslash, user-info (``user:pass@``), whitespace or a control/format
  character anywhere, an IPv6 zone id, an IPv4 address in a legacy spelling
  (``2130706433``, ``0x7f.1``, ``127.1``), a missing host or a bad port;
- a host that does not resolve (``network_error``);
- while private sources are not allowed, a host resolving to ANY address
  that is loopback, private, link-local, multicast, reserved, unspecified,
  deprecated site-local (``fec0::/10``), an IETF protocol assignment
  (``192.0.0.0/24``, whole) or otherwise not globally routable (IPv4-mapped
  IPv6 addresses are judged by their IPv4 address; 6to4 and Teredo
  addresses by every IPv4 address they embed too).

Host names are IDNA-normalised (UTS #46) to their ASCII form. The host is
resolved exactly once and the answer is returned in :class:`VettedURL`:
clients connect to those addresses (keeping the name for SNI and ``Host``),
so a second, different DNS answer (rebinding) is never used.

Resolution goes through a :data:`Resolver`, the system's ``getaddrinfo`` by
default; tests pass their own to map a test name to an address. A resolver
only answers names: whatever it answers is still vetted here.

Settings read (by the composition root): ``ALLOW_PRIVATE_SOURCES``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Sequence

import attrs
import idna
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from atlasreg_cursor.domain.errors import SourceFailed

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192

#: Ranges Python 3.11's ``is_global`` passes that are not for fetching from:
#: IPv6 site-local (deprecated, still routed inside some networks) and the
#: IETF protocol assignments (``192.0.0.9`` and ``.10`` are global there).
NOT_PUBLIC_NETWORKS = (ipaddress.ip_network("fec0::/10"), ipaddress.ip_network("192.0.0.0/24"))

#: ``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str, int], Sequence[str]]


@attrs.frozen(kw_only=True)
class VettedURL:
    """A URL that passed the guard, and the addresses to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def request_target(self) -> str:
        """Path and query for the request line (``/`` when the URL has no path)."""
        return parse_url(self.url).request_uri

    @property
    def host_header(self) -> str:
        """The ``Host`` header value (the port only when it is not the default)."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if DEFAULT_PORTS[self.scheme] == self.port else f"{name}:{self.port}"


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve *host* with ``getaddrinfo``; addresses in the system's order, deduplicated."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def vet_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> VettedURL:
    """
    Parse, normalise, resolve and vet *url*.

    Args:
        url: the URL a source is about to fetch.
        allow_private: accept loopback and private addresses
            (``ALLOW_PRIVATE_SOURCES``; lifts only the address check).
        resolver: resolves host names (the system resolver by default).

    Returns:
        The normalised URL with its host, port and the vetted addresses.

    Raises:
        SourceFailed: ``error_type="invalid_url"`` (scheme, backslash,
            user-info, control characters, bad host or port),
            ``"forbidden_address"`` (a non-public address while not allowed)
            or ``"network_error"`` (the host does not resolve).
    """
    scheme, host, port, parsed = _parse(url)
    addresses = vet_host(host, port, allow_private=allow_private, resolver=resolver)
    target = parsed.request_uri if (parsed.path or parsed.query) else "/"
    path, _, query = target.partition("?")
    shown = f"[{host}]" if ":" in host else host
    normal = Url(
        scheme=scheme,
        host=shown,
        port=None if DEFAULT_PORTS[scheme] == port else port,
        path=path or "/",
        query=query or None,
    ).url
    return VettedURL(url=normal, scheme=scheme, host=host, port=port, addresses=addresses)


def vet_host(
    host: str, port: int, *, allow_private: bool, resolver: Resolver | None = None
) -> tuple[str, ...]:
    """
    Resolve *host* once and vet every address it resolves to.

    Args:
        host: an IDNA ASCII host name or an IP literal (no brackets); a
            Unicode name is normalised first.
        port: the port to connect to.
        allow_private: accept non-public addresses.
        resolver: resolves host names (the system resolver by default).

    Returns:
        The addresses to connect to, every one vetted.

    Raises:
        SourceFailed: ``invalid_url`` for a malformed host or port,
            ``forbidden_address`` or ``network_error``.
    """
    host = _normalise_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise SourceFailed(f"port {port!r} is out of range", error_type="invalid_url")
    literal = _ip_literal(host)
    if literal is not None:
        addresses: tuple[str, ...] = (literal,)
    else:
        addresses = _resolve(host, port, resolver or system_resolver)
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise SourceFailed(
                    f"host {host!r} resolves to the non-public address {address}; "
                    "set ALLOW_PRIVATE_SOURCES=true to fetch from it",
                    error_type="forbidden_address",
                )
    return addresses


def check_source_url(url: str, *, allow_private: bool) -> None:
    """
    Refuse *url* unless it is a well-formed http(s) URL and (when required) public.

    With *allow_private* the host is not resolved (only the syntax is checked).

    Raises:
        SourceFailed: as :func:`vet_url`.
    """
    if allow_private:
        _parse(url)
        return
    vet_url(url, allow_private=False)


def is_public_address(address: str) -> bool:
    """
    Tell whether an IP address literal is globally routable.

    An IPv4-mapped IPv6 address is judged by its IPv4 address; a 6to4
    (``2002::/16``) or Teredo (``2001::/32``) address must be public itself
    and so must every IPv4 address it embeds (``2002:7f00:1::`` reaches
    127.0.0.1 through a relay).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _public(ip.ipv4_mapped)
        embedded = [*(ip.teredo or ()), *([ip.sixtofour] if ip.sixtofour else [])]
        return _public(ip) and all(_public(inner) for inner in embedded)
    return _public(ip)


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    flagged = (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in network for network in NOT_PUBLIC_NETWORKS)
    )
    return ip.is_global and not flagged


# --- internals -----------------------------------------------------------------


def _invalid(reason: str) -> SourceFailed:
    return SourceFailed(reason, error_type="invalid_url")


def _parse(url: object) -> tuple[str, str, int, Url]:
    """Check *url*'s characters and parse it with urllib3; return scheme, host, port."""
    if not isinstance(url, str) or not url:
        raise _invalid("the URL is empty or not a string")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if "\\" in url:
        raise _invalid(f"a backslash is not allowed in a URL ({_shown(url)})")
    bad = next((c for c in url if _forbidden_char(c)), None)
    if bad is not None:
        raise _invalid(f"character U+{ord(bad):04X} is not allowed in a URL ({_shown(url)})")
    scheme_text, sep, _ = url.partition("://")
    scheme = scheme_text.lower() if sep else ""
    if scheme not in ALLOWED_SCHEMES:
        raise _invalid(f"only http and https URLs are fetched, not {scheme or 'no scheme'!r}")
    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError) as exc:
        raise _invalid(f"malformed URL ({_shown(url)}): {type(exc).__name__}") from None
    if parsed.scheme != scheme:
        raise _invalid(f"malformed URL scheme ({_shown(url)})")
    if parsed.auth is not None or "@" in _AUTHORITY_END.split(url.partition("://")[2], 1)[0]:
        raise _invalid(f"user-info (user:password@) is not allowed in a URL ({_shown(url)})")
    if not parsed.host:
        raise _invalid(f"the URL has no host ({_shown(url)})")
    host = _normalise_host(parsed.host)
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not 0 < port <= 65535:
        raise _invalid(f"port {port} is out of range")
    return scheme, host, port, parsed


def _forbidden_char(c: str) -> bool:
    return c.isspace() or unicodedata.category(c) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _normalise_host(host: str) -> str:
    """An IP literal (brackets and zone refused) or an IDNA ASCII lower-case name."""
    if not isinstance(host, str) or not host:
        raise _invalid("the URL has no host")
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if "%" in inner:
            raise _invalid("an IPv6 zone id is not allowed in a URL")
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise _invalid(f"malformed IPv6 address {inner!r}") from None
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _invalid(f"malformed host {host!r}") from None
    name = host.rstrip(".") if host.endswith(".") and not host.endswith("..") else host
    if any(_forbidden_char(c) for c in name) or "\\" in name or "@" in name:
        raise _invalid(f"malformed host {name!r}")
    if _ip_literal(name) is not None:
        return name
    if _legacy_ipv4(name):
        raise _invalid(f"{name!r} is an IPv4 address in a non-canonical spelling")
    try:
        ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _invalid(f"malformed host name {name!r}") from None
    return ascii_name.lower()


def _legacy_ipv4(name: str) -> bool:
    """Tell whether the system would read *name* as an IPv4 address (``127.1``, ``0x7f.1``)."""
    try:
        socket.inet_aton(name)
    except (OSError, ValueError):
        return False
    return True


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _resolve(host: str, port: int, resolver: Resolver) -> tuple[str, ...]:
    try:
        answer = tuple(dict.fromkeys(str(a) for a in resolver(host, port)))
    except (OSError, UnicodeError) as exc:
        raise SourceFailed(
            f"cannot resolve host {host!r}: {exc}", error_type="network_error"
        ) from None
    if not answer:
        raise SourceFailed(f"host {host!r} has no address", error_type="network_error")
    for address in answer:
        if _ip_literal(address.split("%", 1)[0]) is None:
            raise SourceFailed(
                f"host {host!r} resolved to something that is not an address",
                error_type="network_error",
            )
    return answer


_USERINFO = re.compile(r"(?<=://)[^/?#\\]*@")
_AUTHORITY_END = re.compile(r"[/?#]")


def _shown(url: str) -> str:
    """The URL for an error message: no user-info, no query, cut to a readable length."""
    head = url.split("?", 1)[0].split("#", 1)[0]
    safe = _USERINFO.sub("***@", "".join("\ufffd" if _forbidden_char(c) else c for c in head))
    if "?" in url:
        safe += "?…"
    return safe if len(safe) <= 200 else safe[:200] + "…"
