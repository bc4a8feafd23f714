"""AtlasReg Core's DAGs over the Airflow REST API (v1 or v2): the DAG protocol.

Triggering is idempotent: the caller chooses ``dag_run_id``; a 409 means the
run exists, so it is fetched and adopted (a resumed run never triggers
twice). The trigger body carries ``"logical_date": null`` on v2 and leaves it
out on v1 (v1 refuses ``null``). A paused DAG would leave the run queued
forever, so ``is_paused`` is read first and a paused DAG fails clearly
(``dag_paused``); an unknown DAG is ``dag_not_found``. :meth:`AirflowClient.wait`
polls with backoff until the run is ``success`` or ``failed``, or the deadline
passes (``timeout``; the run is left alone so a resumed Cursor run can adopt
it). A ``dag_id`` or task id that does not match Airflow's id pattern, or
is made only of dots, is refused before any request (``invalid_source``);
every path segment is percent-encoded, dots of a segment made only of dots
too (``%2E%2E``), so no id can climb out of ``/dags/<dag_id>/``. The other
failures are ``SourceFailed`` with an ``error_type``.

Versions, authentication, retries and error bodies are the transport's
(:mod:`.airflow_api`).

Settings read (by the composition root): ``AIRFLOW_API_URL``,
``AIRFLOW_USERNAME``, ``AIRFLOW_PASSWORD``, ``AIRFLOW_API_VERSION``.
"""

from __future__ import annotations

import ast
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import structlog
import urllib3

from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.sources import AIRFLOW_ID_RULE, is_airflow_id

from .airflow_api import AirflowApi, ApiResponse, ApiVersion, error_message

log = structlog.get_logger()

TERMINAL_STATES = frozenset({"success", "failed"})
POLL_GRACE_SECONDS = 2.0  # the last poll may answer this long after the wait's deadline


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
        breaker: the ``airflow`` circuit breaker; calls fail fast while it is open.
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
        self.api = AirflowApi(
            base_url=base_url,
            username=username,
            password=password,
            api_version=api_version,
            timeout=timeout,
            pool=pool,
            breaker=breaker,
        )

    def __repr__(self) -> str:
        return f"AirflowClient({self.api!r})"

    @property
    def username(self) -> str:
        """The API user."""
        return self.api.username

    @property
    def token_requests(self) -> int:
        """How many tokens were asked for (v2)."""
        return self.api.token_requests

    # --- public API ---------------------------------------------------------

    @property
    def api_version(self) -> Literal["v1", "v2"]:
        """The API version spoken (detected on first use with ``auto``).

        Raises:
            ExecutorUnavailable: Airflow cannot be reached.
            SourceFailed: ``airflow_error`` when neither version answers.
        """
        return self.api.version

    def probe(self) -> str:
        """
        Make one authenticated call (``GET /dags?limit=1``) and say what answered.

        Returns:
            ``API v2 answers user 'u' (12 DAGs)``: what ``health`` reports.

        Raises:
            ExecutorUnavailable: Airflow cannot be reached.
            SourceFailed: ``airflow_auth`` when the credentials are refused,
                ``airflow_error`` for another refusal.
        """
        response = self.api.call("GET", "/dags?limit=1")
        if response.status != 200:
            raise self.api.failure(response, "listing DAGs")
        data = response.data if isinstance(response.data, Mapping) else {}
        total = data.get("total_entries")
        dags = f" ({total} DAGs)" if isinstance(total, int) else ""
        return f"API {self.api_version} answers user {self.username!r}{dags}"

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
        response = self.api.call("POST", path, body=body)
        ctx = {"dag_id": dag_id, "dag_run_id": dag_run_id}
        if response.status == 200:
            run = _dag_run(response.data, dag_id)
            log.info("airflow.triggered", state=run.state, **ctx)
            return run
        if response.status == 409:
            try:
                existing = self.get_run(dag_id, dag_run_id)
            except SourceFailed:
                raise self.api.failure(response, f"triggering {dag_id}") from None
            if dict(existing.conf) != dict(conf):
                log.warning("airflow.adopted_with_other_conf", **ctx)
            log.info("airflow.adopted", state=existing.state, **ctx)
            return attrs.evolve(existing, adopted=True)
        raise self.api.failure(response, f"triggering {dag_id}")

    def check_dag(self, dag_id: str) -> Mapping[str, Any]:
        """
        Return the DAG's details when it exists and is not paused.

        Raises:
            SourceFailed: ``invalid_source`` (not Airflow's id pattern),
                ``dag_not_found`` or ``dag_paused``.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        check_dag_id(dag_id)
        response = self.api.call("GET", f"/dags/{_q(dag_id)}")
        if response.status == 404:
            raise SourceFailed(
                f"Airflow has no DAG {dag_id!r} ({error_message(404, response.data)})",
                error_type="dag_not_found",
            )
        if response.status != 200:
            raise self.api.failure(response, f"reading DAG {dag_id}")
        data = response.data if isinstance(response.data, Mapping) else {}
        if data.get("is_paused"):
            log.warning("airflow.dag_paused", dag_id=dag_id)
            raise SourceFailed(
                f"DAG {dag_id!r} is paused in Airflow: a run would stay queued forever; "
                "unpause it in Airflow",
                error_type="dag_paused",
            )
        return data

    def get_run(self, dag_id: str, dag_run_id: str, *, deadline: float | None = None) -> DagRun:
        """
        Return the current state of a run.

        Args:
            deadline: a ``time.monotonic()`` instant the call must not outlast.

        Raises:
            SourceFailed: ``dag_run_not_found`` or another refusal; ``timeout``
                when Airflow has not answered by *deadline*.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        path = f"/dags/{_q(dag_id)}/dagRuns/{_q(dag_run_id)}"
        response = self.api.call("GET", path, deadline=deadline)
        if response.status == 404:
            raise SourceFailed(
                f"Airflow has no run {dag_run_id!r} of DAG {dag_id!r}",
                error_type="dag_run_not_found",
            )
        if response.status != 200:
            raise self.api.failure(response, f"reading run {dag_run_id}")
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
            # A slow answer must not carry the wait past its deadline.
            run = self.get_run(dag_id, dag_run_id, deadline=deadline + POLL_GRACE_SECONDS)
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
        response = self.api.call("GET", path)
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
            SourceFailed: ``invalid_source`` when *task_id* is not Airflow's
                id pattern (nothing is sent), ``xcom_missing`` when there is
                none, ``xcom_invalid`` when it cannot be decoded.
            ExecutorUnavailable: Airflow cannot be reached.
        """
        check_task_id(task_id)
        path = (
            f"/dags/{_q(dag_id)}/dagRuns/{_q(dag_run_id)}/taskInstances/{_q(task_id)}"
            "/xcomEntries/return_value"
        )
        response = self.api.call("GET", path)
        if response.status == 404:
            raise SourceFailed(
                f"task {task_id} of run {dag_run_id} ({dag_id}) has no return_value XCom",
                error_type="xcom_missing",
            )
        if response.status != 200 or not isinstance(response.data, Mapping):
            raise self.api.failure(response, f"reading the XCom of {task_id}")
        return parse_xcom_value(response.data.get("value"), repr_string=self.api_version == "v1")

    def close(self) -> None:
        """Close pooled connections."""
        self.api.close()


def check_dag_id(dag_id: object) -> str:
    """
    Return *dag_id* when it matches Airflow's id pattern (``[\\w.-]``, 1-250,
    not only dots).

    Raises:
        SourceFailed: ``invalid_source`` otherwise.
    """
    return _checked_id(dag_id, "dag_id")


def check_task_id(task_id: object) -> str:
    """
    Return *task_id* when it matches Airflow's id pattern (as :func:`check_dag_id`).

    Raises:
        SourceFailed: ``invalid_source`` otherwise.
    """
    return _checked_id(task_id, "task id")


def _checked_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not is_airflow_id(value):
        raise SourceFailed(f"{what} must be {AIRFLOW_ID_RULE}", error_type="invalid_source")
    return value


def _q(segment: str) -> str:
    """
    One path segment, percent-encoded whole: ``/``, ``?``, ``#``, ``%`` and the
    dots of ``.`` or ``..`` (which clients would remove as dot segments).

    Raises:
        SourceFailed: ``invalid_source`` for an empty segment.
    """
    if not segment:
        raise SourceFailed("an Airflow id is empty", error_type="invalid_source")
    quoted = urllib.parse.quote(segment, safe="")
    return quoted.replace(".", "%2E") if not quoted.strip(".") else quoted


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


__all__ = [
    "AirflowApi",
    "AirflowClient",
    "ApiResponse",
    "DagRun",
    "check_dag_id",
    "check_task_id",
    "error_message",
    "parse_xcom_value",
]
