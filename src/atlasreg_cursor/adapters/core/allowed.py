"""What a watchlist may name on Core: Celery tasks and Airflow DAGs.

A ``CUSTOM_SCRAPER`` source names the Celery task it calls (``task_name``,
with its ``source_config`` and ``run_id``), an ``AIRFLOW_DAG`` source the DAG
it triggers (``dag_id``). The watchlist is untrusted (SECURITY.md §1), so
the operator lists what it may name: ``CORE_TASKS`` (task names, exactly)
and ``AIRFLOW_DAGS`` (DAG ids or shell-style patterns such as ``sigel_*``,
matched case-sensitively). A source naming anything else fails with
``not_allowed`` before anything is sent. An unset list allows any name (the
daemon warns at start-up in core mode).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import attrs

from atlasreg_cursor.domain.errors import SourceFailed


def _names(values: Iterable[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


@attrs.frozen(kw_only=True)
class CoreAllowList:
    """
    The Celery tasks and Airflow DAGs a source may name; ``None`` allows any.

    Args:
        tasks: Celery task names (``CORE_TASKS``).
        dags: DAG ids or shell-style patterns (``AIRFLOW_DAGS``).
    """

    tasks: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    dags: tuple[str, ...] | None = attrs.field(default=None, converter=_names)

    def check_task(self, name: str) -> str:
        """
        Return *name* when ``CORE_TASKS`` allows it.

        Raises:
            SourceFailed: ``not_allowed`` otherwise.
        """
        if self.tasks is not None and name not in self.tasks:
            raise SourceFailed(
                f"Celery task {name!r} is not in CORE_TASKS ({', '.join(self.tasks)})",
                error_type="not_allowed",
            )
        return name

    def check_dag(self, dag_id: str) -> str:
        """
        Return *dag_id* when ``AIRFLOW_DAGS`` allows it (a pattern matches it whole).

        Raises:
            SourceFailed: ``not_allowed`` otherwise.
        """
        if self.dags is not None and not any(
            fnmatch.fnmatchcase(dag_id, pattern) for pattern in self.dags
        ):
            raise SourceFailed(
                f"DAG {dag_id!r} is not in AIRFLOW_DAGS ({', '.join(self.dags)})",
                error_type="not_allowed",
            )
        return dag_id
