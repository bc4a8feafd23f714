"""The Airflow REST transport: API version, authentication, one JSON call.

:class:`AirflowApi` speaks both versions (reference: core-integrations §1):

- ``v2`` (Airflow 3): ``/api/v2`` with a bearer JWT from ``POST /auth/token``
  (201). The token is renewed shortly before its ``exp``, and once more on a
  401 or on a 403 whose detail is ``Invalid JWT token``; any other 403 is a
  permission error.
- ``v1`` (Airflow 2): ``/api/v1`` with HTTP basic auth on every request.

``api_version="auto"`` asks ``GET /api/v2/version`` and then
``GET /api/v1/version`` (no credentials needed) once.

Network errors, 408, 429 and 5xx are retried by the shared HTTP layer
(:mod:`atlasreg_cursor.adapters.http`) and then raised as
``ExecutorUnavailable`` (through the ``airflow`` circuit breaker when one is
given); error bodies of both versions (``detail`` as string, list or object;
RFC 7807 in v1) are normalised to one message. The password and tokens
never reach logs or reprs. The DAG protocol on top of it is
:mod:`.airflow`.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import structlog
import urllib3

from atlasreg_cursor.adapters.http import (
    HttpClient,
    ResponseTooLarge,
    TransientHTTPError,
    retrying,
    safe_url,
)
from atlasreg_cursor.domain.errors import ExecutorUnavailable, SourceFailed

log = structlog.get_logger()

ApiVersion = Literal["auto", "v1", "v2"]
TOKEN_MARGIN_SECONDS = 60.0
RETRY_SECONDS = 60.0  # longest a call retries a transient error
_INVALID_JWT = "Invalid JWT token"


@attrs.frozen
class ApiResponse:
    """An answer of the API: its status and its decoded JSON (or text)."""

    status: int
    data: Any


def error_message(status: int, data: Any) -> str:
    """
    Normalise an Airflow error body (v1 or v2) into one line.

    Returns:
        ``HTTP <status>: <message>``.
    """
    message = ""
    if isinstance(data, Mapping):
        detail = data.get("detail")
        title = data.get("title")
        if isinstance(detail, str) and detail:
            message = detail
        elif isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, Mapping):
                    loc = ".".join(str(p) for p in item.get("loc", ()))
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
                else:
                    parts.append(str(item))
            message = "; ".join(parts)
        elif isinstance(detail, Mapping):
            message = str(detail.get("reason") or detail.get("message") or detail)
        if isinstance(title, str) and title:
            message = f"{title}: {message}" if message else title
    elif isinstance(data, str):
        message = data.strip()[:300]
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (not verified: the server does that)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        exp = json.loads(base64.urlsafe_b64decode(padded)).get("exp")
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


class AirflowApi:
    """
    Authenticated JSON calls to one Airflow API server.

    Args:
        base_url: the webserver / api-server root (``AIRFLOW_API_URL``).
        username: the API user.
        password: its password (never logged).
        api_version: ``v1``, ``v2`` or ``auto`` (detected once).
        timeout: seconds per request.
        pool: a urllib3 pool to share (one is made otherwise).
        breaker: the ``airflow`` circuit breaker (:mod:`..breakers`); while
            it is open, calls fail fast with ``ExecutorUnavailable``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: str,
        api_version: ApiVersion = "auto",
        timeout: float = 30.0,
        pool: urllib3.PoolManager | None = None,
        breaker: Any = None,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in {"http", "https"}:
            raise ValueError("the Airflow API URL must be an http(s) URL")
        if api_version not in {"auto", "v1", "v2"}:
            raise ValueError(f"api_version must be auto, v1 or v2, not {api_version!r}")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.configured_version = api_version
        self._version: Literal["v1", "v2"] | None = None if api_version == "auto" else api_version
        self._http = HttpClient(
            timeout=timeout,
            pool=pool or urllib3.PoolManager(num_pools=2, maxsize=8),
        )
        self._breaker = breaker
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expiry: float | None = None
        self.token_requests = 0

    def __repr__(self) -> str:
        return (
            f"AirflowApi(base_url={safe_url(self.base_url)!r}, username={self.username!r}, "
            f"api_version={self.configured_version!r})"
        )

    @property
    def version(self) -> Literal["v1", "v2"]:
        """The API version spoken (detected on first use with ``auto``).

        Raises:
            ExecutorUnavailable: Airflow cannot be reached.
            SourceFailed: ``airflow_error`` when neither version answers.
        """
        if self._version is None:
            self._version = self._detect_version()
        return self._version

    def call(
        self, method: str, path: str, *, body: Any = None, deadline: float | None = None
    ) -> ApiResponse:
        """
        One API call under ``/api/<version>`` with auth; a v2 token is renewed
        once if rejected.

        Args:
            deadline: a ``time.monotonic()`` instant the call (retries
                included) must not outlast.

        Raises:
            ExecutorUnavailable: Airflow cannot be reached (or its breaker is open).
            SourceFailed: ``airflow_auth`` when no token is granted.
        """
        version = self.version
        url = f"{self.base_url}/api/{version}{path}"
        if version == "v1":
            return self._send(method, url, body=body, headers=self._basic_auth(), deadline=deadline)
        response = self._send(
            method, url, body=body, headers=self._bearer(renew=False), deadline=deadline
        )
        if _token_rejected(response):
            log.info("airflow.token_rejected", status=response.status)
            response = self._send(
                method, url, body=body, headers=self._bearer(renew=True), deadline=deadline
            )
        return response

    def failure(self, response: ApiResponse, doing: str) -> SourceFailed:
        """The ``SourceFailed`` for a refusal while *doing* something."""
        message = error_message(response.status, response.data)
        if response.status in (401, 403):
            return SourceFailed(
                f"Airflow refused {doing} for user {self.username!r} ({message})",
                error_type="airflow_auth",
            )
        return SourceFailed(f"Airflow failed {doing} ({message})", error_type="airflow_error")

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

    # --- plumbing -----------------------------------------------------------

    def _detect_version(self) -> Literal["v1", "v2"]:
        for version in ("v2", "v1"):
            response = self._send("GET", f"{self.base_url}/api/{version}/version", headers={})
            if response.status == 200:
                log.debug("airflow.version", api_version=version, url=safe_url(self.base_url))
                return version
        raise SourceFailed(
            f"{safe_url(self.base_url)} answers neither /api/v2/version nor /api/v1/version",
            error_type="airflow_error",
        )

    def _basic_auth(self) -> dict[str, str]:
        raw = f"{self.username}:{self._password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    def _bearer(self, *, renew: bool) -> dict[str, str]:
        with self._lock:
            expiry = self._token_expiry
            stale = expiry is not None and expiry - TOKEN_MARGIN_SECONDS <= time.time()
            if renew or self._token is None or stale:
                self._token, self._token_expiry = self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self) -> tuple[str, float | None]:
        self.token_requests += 1
        body = {"username": self.username, "password": self._password}
        response = self._send("POST", f"{self.base_url}/auth/token", body=body, headers={})
        token = response.data.get("access_token") if isinstance(response.data, Mapping) else None
        if response.status not in (200, 201) or not isinstance(token, str) or not token:
            message = error_message(response.status, response.data)
            log.warning("airflow.auth_failed", status=response.status, user=self.username)
            raise SourceFailed(
                f"Airflow refused a token for user {self.username!r} ({message})",
                error_type="airflow_auth",
            )
        log.debug("airflow.token_fetched", user=self.username)
        return token, jwt_expiry(token)

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str],
        deadline: float | None = None,
    ) -> ApiResponse:
        """Send through the breaker (when there is one), with retries."""
        if self._breaker is None:
            return self._send_retrying(method, url, body=body, headers=headers, deadline=deadline)
        response: ApiResponse = self._breaker.call(
            self._send_retrying, method, url, body=body, headers=headers, deadline=deadline
        )
        return response

    def _send_retrying(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        headers: Mapping[str, str],
        deadline: float | None = None,
    ) -> ApiResponse:
        """Send with retries on network errors and 5xx; return status and JSON."""
        all_headers = {"Accept": "application/json", **headers}
        encoded = None
        if body is not None:
            encoded = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        safe = safe_url(url)
        budget = RETRY_SECONDS if deadline is None else deadline - time.monotonic()
        try:
            return retrying(
                lambda: self._once(method, url, encoded, all_headers, safe, deadline),
                attempts=4,
                timeout=min(RETRY_SECONDS, budget),
                wait_initial=0.5,
                wait_max=5.0,
            )
        except TransientHTTPError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise SourceFailed(
                    f"{method} {safe} did not answer before the deadline ({exc.reason})",
                    error_type="timeout",
                ) from None
            log.warning("airflow.unavailable", method=method, url=safe, error=exc.reason)
            raise ExecutorUnavailable(f"Airflow at {safe} is unreachable: {exc.reason}") from None

    def _once(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        safe: str,
        deadline: float | None,
    ) -> ApiResponse:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TransientHTTPError(f"{method} {safe}: deadline passed")
        try:
            response = self._http.send(method, url, body=body, headers=headers, timeout=left)
        except TransientHTTPError as exc:
            raise TransientHTTPError(
                f"{method} {safe}: {exc.reason.split(':', 1)[0]}",
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None
        except ResponseTooLarge:
            raise SourceFailed(
                f"Airflow's answer to {method} {safe} is too large", error_type="airflow_error"
            ) from None
        raw = response.data
        try:
            data: Any = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", errors="replace")
        log.debug("airflow.response", method=method, url=safe, status=response.status)
        return ApiResponse(response.status, data)


def _token_rejected(response: ApiResponse) -> bool:
    if response.status == 401:
        return True
    detail = response.data.get("detail") if isinstance(response.data, Mapping) else None
    return response.status == 403 and detail == _INVALID_JWT


__all__ = ["AirflowApi", "ApiResponse", "ApiVersion", "error_message", "jwt_expiry"]
