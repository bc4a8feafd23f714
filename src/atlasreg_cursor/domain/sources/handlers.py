"""The built-in source handlers and what each needs in its source."""

from __future__ import annotations

import re

BUILTIN_HANDLERS = frozenset(
    {"SCRAPY_CVM_API", "SCRAPY_NEWSROOM_PLAYER", "DOWNLOAD_CSV", "AIRFLOW_DAG", "CUSTOM_SCRAPER"}
)
#: Built-in handlers that fetch the source's ``url_feed`` (it is required).
URL_FEED_HANDLERS = frozenset({"SCRAPY_CVM_API", "SCRAPY_NEWSROOM_PLAYER", "DOWNLOAD_CSV"})
#: The built-in handler that triggers a DAG (``dag_id`` is required).
DAG_HANDLER = "AIRFLOW_DAG"
#: Airflow's ``KEY_REGEX`` (``airflow.utils.helpers``) and ``ID_LEN`` (250),
#: for DAG ids and task ids alike.
DAG_ID_RE = re.compile(r"[\w.-]{1,250}")
#: What an Airflow id must be, in words (error messages).
AIRFLOW_ID_RULE = "1-250 letters, digits, '_', '.' or '-', not only dots (Airflow's id pattern)"


def is_airflow_id(value: object) -> bool:
    """
    Tell whether *value* is a DAG or task id Airflow accepts and a URL path keeps.

    Airflow's pattern, matched whole, except ids made only of dots: ``.``
    and ``..`` are dot segments in a URL path, which HTTP clients remove
    (``/dags/../dagRuns`` is ``/dagRuns``).
    """
    return (
        isinstance(value, str) and DAG_ID_RE.fullmatch(value) is not None and value.strip(".") != ""
    )
