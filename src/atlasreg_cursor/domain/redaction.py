"""Hide credentials in URLs and text before they reach a message, a log or a Gold.

:func:`redact_text` is the last line of defence for anything built from a
URL or an upstream answer: error messages, log events, Gold ``errors`` and
journal entries. It hides

- the user-info of any ``scheme://user:password@host`` (``user:***@``, or
  ``***@`` when there is no password);
- the value of every ``name=value`` pair (query strings, fragments, free
  text) and every JSON-like ``"name": "value"`` whose name looks like a
  credential: it contains ``key``, ``token``, ``passw``, ``pwd``,
  ``secret``, ``signature``, ``credential`` or ``auth``, or has ``sig`` as
  a whole word;
- ``Bearer``/``Basic`` authorization values and ``whsec_`` webhook secrets.

It is idempotent and never raises. Pure: no I/O.
"""

from __future__ import annotations

import re

MASK = "***"

_SENSITIVE_WORDS = ("key", "token", "passw", "pwd", "secret", "signature", "credential", "auth")
_NAME = r"[A-Za-z0-9_.\-\[\]]+"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/?#\s'\"<>]*)@")
_PAIR = re.compile(rf"(?P<name>{_NAME})=(?P<value>[^&\s#'\"<>]*)")
_JSON_PAIR = re.compile(
    rf"(?P<q>[\"'])(?P<name>{_NAME})(?P=q)(?P<sep>\s*:\s*)(?P<vq>[\"'])(?P<value>.*?)(?<!\\)(?P=vq)"
)
_AUTH_VALUE = re.compile(r"\b(?P<kind>Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/=\-]{6,})")
_WHSEC = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")


def sensitive_name(name: str) -> bool:
    """Tell whether a parameter or field name looks like it holds a credential."""
    lowered = name.lower()
    if any(word in lowered for word in _SENSITIVE_WORDS):
        return True
    return "sig" in re.split(r"[^a-z0-9]+", lowered)


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
