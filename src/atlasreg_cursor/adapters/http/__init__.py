"""The one HTTP layer every urllib3 client uses: timeouts, retries, typed failures.

Two clients share one retry predicate and one transient error:

- :class:`HttpClient` — a pooled client for the endpoints the operator
  configured (the webhook receiver, the Cloudflare API, Airflow). One
  request per :meth:`HttpClient.send`; redirects are never followed.
- :class:`GuardedClient` — for every request the Cursor makes itself on
  behalf of a watchlist URL (a CSV download; the Scrapy sources have the
  same rules in the crawl process). Neither client uses a proxy (urllib3
  reads no ``*_PROXY`` variable). Each hop (redirects included, at most
  ``max_redirects``) passes the URL guard
  (:func:`~atlasreg_cursor.adapters._netguard.vet_url`), which parses the URL
  with urllib3's own parser and resolves the host once; the connection is
  then opened to a vetted address, keeping the host name for SNI, certificate
  checks and the ``Host`` header. The whole fetch has a deadline, enforced by
  a watchdog that shuts the socket, so a server dripping a byte a second
  cannot hold it; a garbage ``Content-Length`` and a body over ``max_bytes``
  (compressed bodies counted decompressed) are refused.

:func:`parse_json` is the strict JSON parser of untrusted answers (the JSON
API spider's pages): UTF-8, no ``NaN``/``Infinity``, finite numbers, bounded
nesting.

Retry policy (:func:`retry_hook`, :func:`retrying`): connection errors, 408,
429 and 5xx are :class:`TransientHTTPError` and are retried with stamina
(``Retry-After`` in seconds or as an HTTP date replaces the backoff, capped
at :data:`MAX_RETRY_AFTER`); any other status is returned (``HttpClient``)
or is a permanent ``SourceFailed`` (``GuardedClient``). Adapters translate a
:class:`TransientHTTPError` that outlived its retries into their port's
typed error. Messages never carry credentials (:func:`redact_text`).
"""

from __future__ import annotations

from .client import DEFAULT_MAX_BODY, HttpClient
from .guarded import Dialer, Fetched, GuardedClient, parse_json
from .policy import (
    MAX_RETRY_AFTER,
    USER_AGENT,
    HttpResponse,
    ResponseTooLarge,
    TransientHTTPError,
    is_retryable_status,
    make_timeout,
    parse_retry_after,
    retry_hook,
    retrying,
    safe_url,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "MAX_RETRY_AFTER",
    "USER_AGENT",
    "Dialer",
    "Fetched",
    "GuardedClient",
    "HttpClient",
    "HttpResponse",
    "ResponseTooLarge",
    "TransientHTTPError",
    "is_retryable_status",
    "make_timeout",
    "parse_json",
    "parse_retry_after",
    "retry_hook",
    "retrying",
    "safe_url",
]
