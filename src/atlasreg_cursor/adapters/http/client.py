"""A pooled urllib3 client for the endpoints the operator configured.

The webhook receiver, the Cloudflare API and Airflow: one request per
:meth:`HttpClient.send`, redirects never followed, urllib3's own retries off
(retries are the caller's, with :func:`~.policy.retrying`), the body read up
to ``max_body``.
"""

from __future__ import annotations

from collections.abc import Mapping

import urllib3

from .policy import (
    USER_AGENT,
    HttpResponse,
    ResponseTooLarge,
    TransientHTTPError,
    is_retryable_status,
    make_timeout,
    parse_retry_after,
    safe_url,
)

DEFAULT_MAX_BODY = 64 * 2**20


class HttpClient:
    """
    One pooled urllib3 client for a configured endpoint.

    Args:
        timeout: seconds per request (read; connect at most 10).
        pool: a urllib3 pool to share (one is made otherwise).
        max_body: refuse answers larger than this many bytes.
        user_agent: the ``User-Agent`` header.
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        pool: urllib3.PoolManager | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.timeout = make_timeout(timeout)
        self.max_body = max_body
        self.user_agent = user_agent
        self._pool = pool or urllib3.PoolManager(num_pools=4, maxsize=8)

    def __repr__(self) -> str:
        return f"HttpClient(timeout={self.timeout.read_timeout!r})"

    def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        read_body: bool = True,
        timeout: float | None = None,
    ) -> HttpResponse:
        """
        Send one request (no redirects, no urllib3 retries) and read the answer.

        Args:
            method: the HTTP method.
            url: the full URL.
            body: the request body.
            headers: request headers (``User-Agent`` is added when absent).
            read_body: read the answer's body; otherwise it is drained and dropped.
            timeout: seconds for this request, when shorter than the client's.

        Returns:
            The response, whatever its status unless the status is retryable.

        Raises:
            TransientHTTPError: a connection error (``maybe_applied`` unless the
                connection was never made), or a 408/429/5xx answer.
            ResponseTooLarge: the answer is over ``max_body``.
        """
        sent = {"User-Agent": self.user_agent, **(headers or {})}
        limit = self.timeout
        if timeout is not None and timeout < (limit.read_timeout or timeout + 1):
            limit = make_timeout(max(timeout, 0.001))
        try:
            response = self._pool.request(
                method,
                url,
                body=body,
                headers=sent,
                timeout=limit,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            # Only a connection never made is sure not to have reached the server.
            unsent = isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            raise TransientHTTPError(
                f"{type(exc).__name__}: {exc}", maybe_applied=not unsent
            ) from None
        try:
            data = self._read(response, url) if read_body else b""
            if not read_body:
                response.drain_conn()
        except urllib3.exceptions.HTTPError as exc:
            response.close()
            raise TransientHTTPError(f"{type(exc).__name__}: {exc}", maybe_applied=True) from None
        finally:
            response.release_conn()
        result = HttpResponse(
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            data=data,
        )
        if is_retryable_status(result.status):
            raise TransientHTTPError(
                f"HTTP {result.status}",
                status=result.status,
                retry_after=parse_retry_after(result.header("retry-after")),
                response=result,
            )
        return result

    def _read(self, response: urllib3.BaseHTTPResponse, url: str) -> bytes:
        data = response.read(self.max_body + 1)
        if len(data) > self.max_body:
            response.close()
            raise ResponseTooLarge(f"{safe_url(url)} answered more than {self.max_body} bytes")
        return data

    def clear(self) -> None:
        """Close pooled connections."""
        self._pool.clear()
