"""Hide credentials in URLs and text before they reach a message, a log or a Gold.

:func:`redact_text` is the last line of defence for anything built from a
URL or an upstream answer: error messages, log events, Gold ``errors`` and
journal entries. It hides

- the user-info of any ``scheme://user:password@host`` (``user:***@``, or
  ``***@`` when there is no password);
- the value of every ``name=value`` pair (query strings with ``&`` or
  ``;`` between pairs, fragments, free text) and every JSON-like
  ``"name": "value"`` whose name, percent-decoded, looks like a credential:
  it contains ``key``, ``token``, ``passw``, ``pwd``, ``secret``,
  ``signature``, ``credential`` or ``auth``, or has ``sig``, ``pass`` or
  ``pw`` as a whole word (``X-Amz-Signature``, ``access_token``,
  ``client_secret``, ``%74oken``, ``pass``);
- ``Bearer``/``Basic``/``Token`` authorization values (any case) and
  ``whsec_`` webhook secrets.

It is idempotent, never raises, and runs in linear time (a name may start
only where a name cannot continue, so a long run of letters is scanned
once). Pure: no I/O.
"""

from __future__ import annotations

import re

MASK = "***"
#: Most characters a recorded message keeps (a Gold error, an invalid source's reason).
MAX_RECORDED_TEXT = 2000

_SENSITIVE_WORDS = ("key", "token", "passw", "pwd", "secret", "signature", "credential", "auth")
_SENSITIVE_TOKENS = frozenset({"sig", "pass", "pw"})
_NAME_CHARS = r"A-Za-z0-9_.\-\[\]%"
_NAME = rf"(?<![{_NAME_CHARS}])[{_NAME_CHARS}]+"
_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/?#\s'\"<>]*)@"
)
_PAIR = re.compile(rf"(?P<name>{_NAME})=(?P<value>[^&;\s#'\"<>]*)")
_JSON_PAIR = re.compile(
    rf"(?P<q>[\"'])(?P<name>{_NAME})(?P=q)(?P<sep>\s*:\s*)(?P<vq>[\"'])(?P<value>.*?)(?<!\\)(?P=vq)"
)
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_AUTH_VALUE = re.compile(
    r"\b(?P<kind>Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/=\-]{6,})", re.IGNORECASE
)
_WHSEC = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")


def sensitive_name(name: str) -> bool:
    """Tell whether a parameter or field name (percent-decoded) looks like a credential."""
    lowered = _percent_decoded(name).lower()
    if any(word in lowered for word in _SENSITIVE_WORDS):
        return True
    return not _SENSITIVE_TOKENS.isdisjoint(re.split(r"[^a-z0-9]+", lowered))


def _percent_decoded(name: str) -> str:
    """*name* with ``%XX`` escapes decoded, up to three times (``%2574`` is ``%74`` is ``t``)."""
    for _ in range(3):
        decoded = _PERCENT.sub(lambda m: chr(int(m[1], 16)), name)
        if decoded == name:
            break
        name = decoded
    return name


def redact_url(url: str) -> str:
    """
    Return *url* with its user-info password and credential-like parameters hidden.

    ``http://user:pw@host/x?api_key=K&page=2`` → ``http://user:***@host/x?api_key=***&page=2``.
    As *url* is known to be one URL, everything up to its last ``@`` counts as
    user-info, so a password with an unescaped ``/`` or ``@`` is hidden whole.
    """
    if not isinstance(url, str) or not url:
        return url
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        info, _, host_part = rest.rpartition("@")
        user, colon, _ = info.partition(":")
        if info != MASK and not info.endswith(f":{MASK}"):
            hidden = f"{user}:{MASK}" if colon and "/" not in user else MASK
            url = f"{scheme}://{hidden}@{host_part}"
    return redact_text(url)


def redact_bounded(text: str, limit: int = MAX_RECORDED_TEXT) -> str:
    """
    *text* as a record keeps it: credentials hidden, then cut to *limit* characters.

    The cut (marked ``…``) comes after the redaction, so it never splits a
    credential before it is recognised. Used as an attrs converter (Gold
    errors, invalid sources): a value that is not a string is returned as is.
    """
    redacted = redact_text(text)
    if not isinstance(redacted, str) or len(redacted) <= limit:
        return redacted
    return redacted[: limit - 1] + "…"


def redact_text(text: str) -> str:
    """Return *text* with the credentials in any URL (and credential pairs) hidden."""
    if not isinstance(text, str) or not text:
        return text
    text = _USERINFO.sub(_hide_userinfo, text)
    text = _PAIR.sub(_hide_pair, text)
    text = _JSON_PAIR.sub(_hide_json_pair, text)
    text = _AUTH_VALUE.sub(lambda m: f"{m['kind']} {MASK}", text)
    return _WHSEC.sub(f"whsec_{MASK}", text)


def _hide_userinfo(match: re.Match[str]) -> str:
    info = match["info"]
    if not info or info == MASK or info.endswith(f":{MASK}"):
        return match[0]
    user, sep, _ = info.partition(":")
    hidden = f"{user}:{MASK}" if sep else MASK
    return f"{match['scheme']}{hidden}@"


def _hide_pair(match: re.Match[str]) -> str:
    if not sensitive_name(match["name"]) or not match["value"] or match["value"] == MASK:
        return match[0]
    return f"{match['name']}={MASK}"


def _hide_json_pair(match: re.Match[str]) -> str:
    if not sensitive_name(match["name"]) or not match["value"] or match["value"] == MASK:
        return match[0]
    q, vq = match["q"], match["vq"]
    return f"{q}{match['name']}{q}{match['sep']}{vq}{MASK}{vq}"
