"""A small Cloudflare REST API v4 client over urllib3, shared by Queues and KV.

One pooled ``urllib3.PoolManager``, ``Authorization: Bearer <token>``, the
JSON envelope (``success``, ``errors``, ``messages``, ``result``) parsed.
``/client/v4`` is appended when the endpoint URL has no path (architecture §9).

Failures become :class:`CloudflareAPIError` (HTTP status, error codes and
messages; never the token):

- connection errors, 408, 429 and 5xx (and the Queues 1025x "overloaded"
  codes) are retried by the shared HTTP layer
  (:mod:`atlasreg_cursor.adapters.http`: stamina, exponential backoff,
  ``Retry-After`` honoured up to :data:`MAX_RETRY_AFTER`), then
  :class:`CloudflareUnavailable`; a request that is not safe to repeat
  (``retry_unanswered=False``) is not sent again once it may have reached
  the API unanswered: :class:`CloudflareUnanswered`;
- 401/403, unknown or malformed queue (10104, 10106, 10107), unknown KV
  namespace (10013) and "no route" (7003) are
  :class:`CloudflareConfigurationError`, with a hint naming the setting to check;
- anything else (a 404 for a missing KV key, a 400) is a plain
  :class:`CloudflareAPIError`.

Port adapters translate these into the port's errors; they never leave the
adapter package.

Settings read (by the composition root): ``CF_API_ENDPOINT``,
``CF_QUEUE_ENDPOINT``, ``CF_KV_API_ENDPOINT``, ``CF_API_TOKEN``, ``CF_ACCOUNT_ID``.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
import structlog
import urllib3

from atlasreg_cursor.adapters.http import (
    MAX_RETRY_AFTER,
    HttpClient,
    HttpResponse,
    ResponseTooLarge,
    TransientHTTPError,
    parse_retry_after,
    retrying,
)

log = structlog.get_logger()

DEFAULT_ENDPOINT = "https://api.cloudflare.com"
API_PATH = "/client/v4"
USER_AGENT = "atlasreg-cursor"
RETRY_TIMEOUT = 120.0

__all__ = [
    "MAX_RETRY_AFTER",
    "CloudflareAPIError",
    "CloudflareClient",
    "CloudflareConfigurationError",
    "CloudflareUnanswered",
    "CloudflareUnavailable",
    "RawResponse",
    "api_base",
    "parse_retry_after",
]

#: Error codes Cloudflare answers when a queue is overloaded or paused for a while.
TRANSIENT_CODES = frozenset({10250, 10251, 10252, 15000})
AUTH_HINT = (
    "authentication failed: check CF_API_TOKEN (it needs Queues Edit and Workers KV "
    "Storage permissions) and CF_ACCOUNT_ID"
)
#: Error codes that mean a setting is wrong, with the hint given to the operator.
CONFIGURATION_HINTS: Mapping[int, str] = {
    10000: AUTH_HINT,
    10106: AUTH_HINT,
    10104: "queue not found: check CF_QUEUE_ID (and CF_DLQ_QUEUE_ID)",
    10107: "malformed queue id: check CF_QUEUE_ID (and CF_DLQ_QUEUE_ID)",
    10013: "KV namespace not found: check CF_KV_NAMESPACE_ID",
    7003: "no route for the URI: check CF_API_ENDPOINT (CF_QUEUE_ENDPOINT, "
    "CF_KV_API_ENDPOINT) and CF_ACCOUNT_ID",
}


class CloudflareAPIError(Exception):
    """Raised when the Cloudflare API answers with an error.

    Attributes:
        status: HTTP status, ``None`` when no response came.
        codes: the envelope's error codes.
        messages: the envelope's error messages.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[int, ...] = (),
        messages: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes
        self.messages = messages


class CloudflareUnavailable(CloudflareAPIError):
    """Raised when the API cannot be reached or keeps answering 429/5xx."""


class CloudflareUnanswered(CloudflareUnavailable):
    """Raised when a request may have reached the API and no answer came (it may have landed)."""


class CloudflareConfigurationError(CloudflareAPIError):
    """Raised when a setting is wrong (token, account, queue, namespace, endpoint)."""


@attrs.frozen
class RawResponse:
    """A 2xx response whose body is not the JSON envelope (a KV value)."""

    status: int
    headers: Mapping[str, str]
    data: bytes = attrs.field(repr=False)


def api_base(endpoint: str) -> str:
    """
    Return the API base URL: *endpoint*, with ``/client/v4`` when it has no path.

    Raises:
        ValueError: *endpoint* is not an http(s) URL with a host.
    """
    parts = urllib.parse.urlsplit(endpoint.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"Cloudflare API endpoint must be an http(s) URL, not {endpoint!r}")
    path = parts.path.rstrip("/") or API_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _envelope_errors(data: bytes) -> tuple[dict[str, Any] | None, tuple[int, ...], tuple[str, ...]]:
    """Parse an envelope; return it with its error codes and messages."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, (), ()
    if not isinstance(doc, dict):
        return None, (), ()
    codes: list[int] = []
    messages: list[str] = []
    for err in doc.get("errors") or []:
        if isinstance(err, dict):
            if isinstance(err.get("code"), int):
                codes.append(err["code"])
            if err.get("message"):
                messages.append(str(err["message"])[:300])
    return doc, tuple(codes), tuple(messages)


class CloudflareClient:
    """
    Account-scoped Cloudflare API v4 client.

    Paths given to the request methods are relative to
    ``/accounts/{account_id}/`` (``"queues/<id>/messages/pull"``).

    Args:
        api_endpoint: ``CF_API_ENDPOINT`` (or the queue/KV override).
        token: the API token; never logged nor shown in reprs or errors.
        account_id: ``CF_ACCOUNT_ID``.
        timeout: seconds per request (read; connect at most 10).
        attempts: most requests per call when retrying transient failures.
        retry_timeout: most seconds spent retrying one call.
        pool: a urllib3 pool to share (one is made otherwise).
    """

    def __init__(
        self,
        *,
        api_endpoint: str = DEFAULT_ENDPOINT,
        token: str,
        account_id: str,
        timeout: float = 30.0,
        attempts: int = 5,
        retry_timeout: float = RETRY_TIMEOUT,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        if not token:
            raise ValueError("a Cloudflare API token is required (CF_API_TOKEN)")
        if not account_id or "/" in account_id:
            raise ValueError("a Cloudflare account id is required (CF_ACCOUNT_ID)")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.base_url = api_base(api_endpoint)
        self.account_id = account_id
        self._token = token
        self._attempts = attempts
        self._retry_timeout = retry_timeout
        self._http = HttpClient(
            timeout=timeout,
            pool=pool or urllib3.PoolManager(num_pools=4, maxsize=8),
            user_agent=USER_AGENT,
        )

    def __repr__(self) -> str:
        return f"CloudflareClient(base_url={self.base_url!r}, account_id={self.account_id!r})"

    def url(self, path: str) -> str:
        """Return the full URL of an account-relative *path*."""
        return f"{self.base_url}/accounts/{self.account_id}/{path.lstrip('/')}"

    # --- public calls ------------------------------------------------------

    def request_envelope(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        retry_unanswered: bool = True,
    ) -> dict[str, Any]:
        """
        Send a JSON request and return the whole success envelope.

        Args:
            retry_unanswered: send again after a connection broke once the
                request was sent; ``False`` for a request not safe to repeat.

        Raises:
            CloudflareConfigurationError: a setting is wrong (fatal).
            CloudflareUnanswered: not sent again; it may have landed.
            CloudflareUnavailable: the API could not be reached or kept failing.
            CloudflareAPIError: any other error answer.
        """
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        response = self._call(method, path, payload, headers, query, retry_unanswered)
        doc, _, _ = _envelope_errors(response.data)
        if doc is None:
            raise CloudflareUnavailable(
                f"Cloudflare API {method} {path}: response is not a JSON envelope",
                status=response.status,
            )
        return doc

    def request_json(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        retry_unanswered: bool = True,
    ) -> Any:
        """
        Send a JSON request and return the envelope's ``result`` (``None`` if absent).

        Raises:
            CloudflareConfigurationError: a setting is wrong (fatal).
            CloudflareUnanswered: not sent again (``retry_unanswered=False``); it may have landed.
            CloudflareUnavailable: the API could not be reached or kept failing.
            CloudflareAPIError: any other error answer.
        """
        envelope = self.request_envelope(
            method, path, body=body, query=query, retry_unanswered=retry_unanswered
        )
        return envelope.get("result")

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str | int] | None = None,
    ) -> RawResponse:
        """
        Send raw bytes (or multipart *fields*) and return the 2xx response as is.

        Raises:
            CloudflareConfigurationError: a setting is wrong (fatal).
            CloudflareUnavailable: the API could not be reached or kept failing.
            CloudflareAPIError: any other error answer (a 404 for a missing key).
        """
        sent_headers = dict(headers or {})
        if fields is not None:
            body, content_type = urllib3.encode_multipart_formdata(fields)
            sent_headers["Content-Type"] = content_type
        return self._call(method, path, body, sent_headers, query)

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

    # --- internals ---------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        query: Mapping[str, str | int] | None,
        retry_unanswered: bool = True,
    ) -> RawResponse:
        url = self.url(path)
        if query:
            url += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})

        def once() -> RawResponse:
            try:
                return self._once(method, path, url, body, headers)
            except TransientHTTPError as exc:
                if retry_unanswered or not exc.maybe_applied:
                    raise
                # not a TransientHTTPError: the retry policy lets it through
                raise CloudflareUnanswered(
                    f"Cloudflare API {method} {path}: no answer after the request was sent"
                    f" ({exc.reason.split(':', 1)[0]}); not sent again, it may have landed"
                ) from None

        try:
            return retrying(
                once,
                attempts=self._attempts,
                timeout=self._retry_timeout,
                wait_initial=0.5,
                wait_max=30.0,
            )
        except TransientHTTPError as exc:
            raise self._unavailable(method, path, exc) from None

    def _once(
        self,
        method: str,
        path: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> RawResponse:
        sent = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            **headers,
        }
        started = time.monotonic()
        try:
            response = self._http.send(method, url, body=body, headers=sent)
        except TransientHTTPError as exc:
            log.debug(
                "cloudflare.request_failed",
                method=method,
                path=path,
                status_code=exc.status,
                error=exc.reason,
            )
            raise
        except ResponseTooLarge:
            raise CloudflareAPIError(
                f"Cloudflare API {method} {path}: the answer is too large"
            ) from None
        status = response.status
        log.debug(
            "cloudflare.request",
            method=method,
            path=path,
            status_code=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        data = response.data
        if 200 <= status < 300:
            doc, codes, messages = _envelope_errors(data)
            if doc is not None and doc.get("success") is False:
                raise self._error(method, path, status, codes, messages)
            return RawResponse(status=status, headers=response.headers, data=data)
        _, codes, messages = _envelope_errors(data)
        if TRANSIENT_CODES.intersection(codes):
            raise TransientHTTPError(
                f"HTTP {status}",
                status=status,
                retry_after=parse_retry_after(response.header("retry-after")),
                response=response,
            )
        raise self._error(method, path, status, codes, messages)

    def _unavailable(
        self, method: str, path: str, exc: TransientHTTPError
    ) -> CloudflareUnavailable:
        """The typed error of a call whose retries are spent."""
        answer: HttpResponse | None = exc.response
        if answer is None:
            return CloudflareUnavailable(
                f"Cloudflare API {method} {path}: {exc.reason.split(':', 1)[0]} "
                "(gave up after retries)",
                status=None,
            )
        _, codes, messages = _envelope_errors(answer.data)
        error = self._error(method, path, answer.status, codes, messages)
        return CloudflareUnavailable(
            f"{error} (gave up after retries)",
            status=answer.status,
            codes=codes,
            messages=messages,
        )

    @staticmethod
    def _error(
        method: str, path: str, status: int, codes: tuple[int, ...], messages: tuple[str, ...]
    ) -> CloudflareAPIError:
        """Build the typed error of one error answer."""
        detail = "; ".join(f"{c}: {m}" for c, m in zip(codes, messages, strict=False))
        text = f"Cloudflare API {method} {path} answered HTTP {status}" + (
            f" ({detail})" if detail else ""
        )
        hints = [CONFIGURATION_HINTS[c] for c in codes if c in CONFIGURATION_HINTS]
        if status in {401, 403} and not hints:
            hints = [AUTH_HINT]
        if hints and status not in {429} and status < 500:
            return CloudflareConfigurationError(
                f"{text}: {hints[0]}", status=status, codes=codes, messages=messages
            )
        if status == 429 or status >= 500:
            return CloudflareUnavailable(text, status=status, codes=codes, messages=messages)
        return CloudflareAPIError(text, status=status, codes=codes, messages=messages)
