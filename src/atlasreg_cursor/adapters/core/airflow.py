"""A client of the Airflow REST API for AtlasReg Core's DAGs, on urllib3.

Speaks both versions (reference: core-integrations §1):

- ``v2`` (Airflow 3): ``/api/v2`` with a bearer JWT from ``POST /auth/token``
  (201). The token is renewed shortly before its ``exp``, and once more on a
  401 or on a 403 whose detail is ``Invalid JWT token``; any other 403 is a
  permission error. The trigger body carries ``"logical_date": null``.
- ``v1`` (Airflow 2): ``/api/v1`` with HTTP basic auth on every request; the
  trigger body leaves ``logical_date`` out (v1 refuses ``null``).

``api_version="auto"`` asks ``GET /api/v2/version`` and then
``GET /api/v1/version`` (no credentials needed) once.

Triggering is idempotent: the caller chooses ``dag_run_id``; a 409 means the
run exists, so it is fetched and adopted (a resumed run never triggers
twice). A paused DAG would leave the run queued forever, so ``is_paused`` is
read first and a paused DAG fails clearly (``dag_paused``); an unknown DAG is
``dag_not_found``. :meth:`AirflowClient.wait` polls with backoff until the run
is ``success`` or ``failed``, or the deadline passes (``timeout``; the run is
left alone so a resumed Cursor run can adopt it). Error bodies of both
versions (``detail`` as string, list or object; RFC 7807 in v1) are
normalised to one message.

Network errors, 408, 429 and 5xx are retried by the shared HTTP layer
(:mod:`atlasreg_cursor.adapters.http`) and then raised as
``ExecutorUnavailable``; a ``dag_id`` that does not match Airflow's id
pattern is refused before any request (``invalid_source``); the other
failures are ``SourceFailed`` with an ``error_type``. The password and
tokens never reach logs or reprs.

Settings read (by the composition root): ``AIRFLOW_API_URL``,
``AIRFLOW_USERNAME``, ``AIRFLOW_PASSWORD``, ``AIRFLOW_API_VERSION``.
"""

from __future__ import annotations

import ast
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
from atlasreg_cursor.domain.sources import DAG_ID_RE

log = structlog.get_logger()

ApiVersion = Literal["auto", "v1", "v2"]
TERMINAL_STATES = frozenset({"success", "failed"})
TOKEN_MARGIN_SECONDS = 60.0
USER_AGENT = "atlasreg-cursor"
_INVALID_JWT = "Invalid JWT token"


@attrs.frozen(kw_only=True)
class DagRun:
    """The fields of a DAG run the Cursor reads (the same in v1 and v2)."""

    dag_id: str
    dag_run_id: str
    state: str
    conf: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    start_date: str | None = None
    end_date: str | None = None
    adopted: bool = False

    @property
    def finished(self) -> bool:
        """A run is finished once it is ``success`` or ``failed``."""
        return self.state in TERMINAL_STATES


@attrs.frozen
class _Response:
    status: int
    data: Any


_safe_url = safe_url


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


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (not verified: the server does that)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        exp = json.loads(base64.urlsafe_b64decode(padded)).get("exp")
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


def parse_xcom_value(value: Any, *, repr_string: bool) -> Any:
    """
    Decode an XCom ``value`` as the API returned it.

    v2 returns JSON; v1 returns a Python ``repr`` string, read with
    :func:`ast.literal_eval` (never ``eval``), falling back to JSON.

    Raises:
        SourceFailed: ``xcom_invalid`` when a v1 string is neither.
    """
    if not repr_string or not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(value)
    except ValueError:
        raise SourceFailed(
            "the XCom value is neither a Python literal nor JSON", error_type="xcom_invalid"
        ) from None


class AirflowClient:
    """
    Trigger and follow DAG runs over Airflow's REST API (v1 or v2).

    Args:
        base_url: the webserver / api-server root (``AIRFLOW_API_URL``).
        username: the API user.
        password: its password (never logged).
        api_version: ``v1``, ``v2`` or ``auto`` (detected once).
        timeout: seconds per request.
        pool: a urllib3 pool to share (one is made otherwise).
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
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in {"http", "https"}:
            raise ValueError("the Airflow API URL must be an http(s) URL")
        if api_version not in {"auto", "v1", "v2"}:
            raise ValueError(f"api_version must be auto, v1 or v2, not {api_version!r}")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._configured_version = api_version
        self._version: Literal["v1", "v2"] | None = None if api_version == "auto" else api_version
        self._http = HttpClient(
            timeout=timeout,
            pool=pool or urllib3.PoolManager(num_pools=2, maxsize=8),
            user_agent=USER_AGENT,
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expiry: float | None = None
        self.token_requests = 0

    def __repr__(self) -> str:
        return (
            f"AirflowClient(base_url={_safe_url(self.base_url)!r}, username={self.username!r}, "
            f"api_version={self._configured_version!r})"
        )

    # --- public API ---------------------------------------------------------

    @property
    def api_version(self) -> Literal["v1", "v2"]:
        """The API version spoken (detected on first use with ``auto``).

        Raises:
            ExecutorUnavailable: Airflow cannot be reached.
            SourceFailed: ``airflow_error`` when neither version answers.
        """
        if self._version is None:
            self._version = self._detect_version()
        return self._version

    def trigger(self, dag_id: str, dag_run_id: str, conf: Mapping[str, Any]) -> DagRun:
        """
        Trigger *dag_id* as run *dag_run_id*, or adopt the run if it exists.

        Raises:
            SourceFailed: ``dag_not_found``, ``dag_paused``, ``airflow_auth``
                or ``airflow_error`` (any other refusal).
            ExecutorUnavailable: Airflow cannot be reached.
        """
        self.check_dag(dag_id)
        body: dict[str, Any] = {"dag_run_id": dag_run_id, "conf": dict(conf)}
        if self.api_version == "v2":
            body["logical_date"] = None
        path = f"/dags/{_q(dag_id)}/dagRuns"
        response = self._api("POST", path, body=body)
        ctx = {"dag_id": dag_id, "dag_run_id": dag_run_id}
        if response.status == 200:
            run = _dag_run(response.data, dag_id)
            log.info("airflow.triggered", state=run.state, **ctx)
            return run
        if response.status == 409:
            try:
                existing = self.get_run(dag_id, dag_run_id)
            except SourceFailed:
                raise self._failure(response, f"triggering {dag_id}") from None
            if dict(existing.conf) != dict(conf):
                log.warning("airflow.adopted_with_other_conf", **ctx)
            log.info("airflow.adopted", state=existing.state, **ctx)
            return attrs.evolve(existing, adopted=True)
        raise self._failure(response, f"triggering {dag_id}")

    def check_dag(self, dag_id: str) -> Mapping[str, Any]:
        """
        Return the DAG's details when it exists and is not paused.

        Raises:
            SourceFailed: ``invalid_source`` (not Airflow's id pattern),
                ``dag_not_found`` or ``dag_paused``.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        check_dag_id(dag_id)
        response = self._api("GET", f"/dags/{_q(dag_id)}")
        if response.status == 404:
            raise SourceFailed(
                f"Airflow has no DAG {dag_id!r} ({error_message(404, response.data)})",
                error_type="dag_not_found",
            )
        if response.status != 200:
            raise self._failure(response, f"reading DAG {dag_id}")
        data = response.data if isinstance(response.data, Mapping) else {}
        if data.get("is_paused"):
            log.warning("airflow.dag_paused", dag_id=dag_id)
            raise SourceFailed(
                f"DAG {dag_id!r} is paused in Airflow: a run would stay queued forever; "
                "unpause it in Airflow",
                error_type="dag_paused",
            )
        return data

    def get_run(self, dag_id: str, dag_run_id: str) -> DagRun:
        """
        Return the current state of a run.

        Raises:
            SourceFailed: ``dag_run_not_found`` or another refusal.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        response = self._api("GET", f"/dags/{_q(dag_id)}/dagRuns/{_q(dag_run_id)}")
        if response.status == 404:
            raise SourceFailed(
                f"Airflow has no run {dag_run_id!r} of DAG {dag_id!r}",
                error_type="dag_run_not_found",
            )
        if response.status != 200:
            raise self._failure(response, f"reading run {dag_run_id}")
        return _dag_run(response.data, dag_id)

    def wait(
        self,
        dag_id: str,
        dag_run_id: str,
        *,
        timeout: float,
        poll_initial: float = 1.0,
        poll_max: float = 10.0,
    ) -> DagRun:
        """
        Poll the run until it is ``success`` or ``failed``.

        Returns:
            The finished run (check ``state``).

        Raises:
            SourceFailed: ``timeout`` when the deadline passes first.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        deadline = time.monotonic() + timeout
        interval = poll_initial
        while True:
            run = self.get_run(dag_id, dag_run_id)
            if run.finished:
                log.info("airflow.finished", dag_id=dag_id, dag_run_id=dag_run_id, state=run.state)
                return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceFailed(
                    f"DAG run {dag_run_id} of {dag_id} is still {run.state} after {timeout:.0f}s",
                    error_type="timeout",
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, poll_max)

    def failed_tasks(self, dag_id: str, dag_run_id: str) -> list[str]:
        """
        Return the ids of the run's task instances in state ``failed``.

        Raises:
            ExecutorUnavailable: Airflow cannot be reached.
        """
        path = f"/dags/{_q(dag_id)}/dagRuns/{_q(dag_run_id)}/taskInstances"
        response = self._api("GET", path)
        if response.status != 200 or not isinstance(response.data, Mapping):
            return []
        instances = response.data.get("task_instances") or []
        return sorted(
            str(ti.get("task_id"))
            for ti in instances
            if isinstance(ti, Mapping) and ti.get("state") in {"failed", "upstream_failed"}
        )

    def xcom_return_value(self, dag_id: str, dag_run_id: str, task_id: str) -> Any:
        """
        Return the ``return_value`` XCom of a task of the run, decoded.

        Raises:
            SourceFailed: ``xcom_missing`` when there is none, ``xcom_invalid``
                when it cannot be decoded.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        path = (
            f"/dags/{_q(dag_id)}/dagRuns/{_q(dag_run_id)}/taskInstances/{_q(task_id)}"
            "/xcomEntries/return_value"
        )
        response = self._api("GET", path)
        if response.status == 404:
            raise SourceFailed(
                f"task {task_id} of run {dag_run_id} ({dag_id}) has no return_value XCom",
                error_type="xcom_missing",
            )
        if response.status != 200 or not isinstance(response.data, Mapping):
            raise self._failure(response, f"reading the XCom of {task_id}")
        return parse_xcom_value(response.data.get("value"), repr_string=self.api_version == "v1")

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

    # --- plumbing -----------------------------------------------------------

    def _detect_version(self) -> Literal["v1", "v2"]:
        for version in ("v2", "v1"):
            response = self._send("GET", f"{self.base_url}/api/{version}/version", headers={})
            if response.status == 200:
                log.debug("airflow.version", api_version=version, url=_safe_url(self.base_url))
                return version
        raise SourceFailed(
            f"{_safe_url(self.base_url)} answers neither /api/v2/version nor /api/v1/version",
            error_type="airflow_error",
        )

    def _api(self, method: str, path: str, *, body: Any = None) -> _Response:
        """One API call with auth; a v2 token is renewed once if rejected."""
        version = self.api_version
        url = f"{self.base_url}/api/{version}{path}"
        if version == "v1":
            return self._send(method, url, body=body, headers=self._basic_auth())
        response = self._send(method, url, body=body, headers=self._bearer(renew=False))
        if _token_rejected(response):
            log.info("airflow.token_rejected", status=response.status)
            response = self._send(method, url, body=body, headers=self._bearer(renew=True))
        return response

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
        return token, _jwt_expiry(token)

    def _send(
        self, method: str, url: str, *, body: Any = None, headers: Mapping[str, str]
    ) -> _Response:
        """Send with retries on network errors and 5xx; return status and JSON."""
        all_headers = {"Accept": "application/json", **headers}
        encoded = None
        if body is not None:
            encoded = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        safe = _safe_url(url)
        try:
            return retrying(
                lambda: self._once(method, url, encoded, all_headers, safe),
                attempts=4,
                timeout=60.0,
                wait_initial=0.5,
                wait_max=5.0,
            )
        except TransientHTTPError as exc:
            log.warning("airflow.unavailable", method=method, url=safe, error=exc.reason)
            raise ExecutorUnavailable(f"Airflow at {safe} is unreachable: {exc.reason}") from None

    def _once(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], safe: str
    ) -> _Response:
        try:
            response = self._http.send(method, url, body=body, headers=headers)
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
        return _Response(response.status, data)

    def _failure(self, response: _Response, doing: str) -> SourceFailed:
        message = error_message(response.status, response.data)
        if response.status in (401, 403):
            return SourceFailed(
                f"Airflow refused {doing} for user {self.username!r} ({message})",
                error_type="airflow_auth",
            )
        return SourceFailed(f"Airflow failed {doing} ({message})", error_type="airflow_error")


def check_dag_id(dag_id: object) -> str:
    """
    Return *dag_id* when it matches Airflow's id pattern (``[\\w.-]``, 1-250).

    Raises:
        SourceFailed: ``invalid_source`` otherwise.
    """
    if not isinstance(dag_id, str) or not DAG_ID_RE.fullmatch(dag_id):
        raise SourceFailed(
            "dag_id must be 1-250 letters, digits, '_', '.' or '-' (Airflow's id pattern)",
            error_type="invalid_source",
        )
    return dag_id


def _token_rejected(response: _Response) -> bool:
    if response.status == 401:
        return True
    detail = response.data.get("detail") if isinstance(response.data, Mapping) else None
    return response.status == 403 and detail == _INVALID_JWT


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _dag_run(data: Any, dag_id: str) -> DagRun:
    if not isinstance(data, Mapping) or not isinstance(data.get("dag_run_id"), str):
        raise SourceFailed(
            "Airflow answered with something that is not a DAG run", error_type="airflow_error"
        )
    conf = data.get("conf")
    return DagRun(
        dag_id=str(data.get("dag_id") or dag_id),
        dag_run_id=data["dag_run_id"],
        state=str(data.get("state") or "queued"),
        conf=conf if isinstance(conf, Mapping) else {},
        start_date=data.get("start_date"),
        end_date=data.get("end_date"),
    )
