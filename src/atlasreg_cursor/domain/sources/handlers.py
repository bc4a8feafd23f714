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
#: Airflow's ``KEY_REGEX`` (``airflow.utils.helpers``) and ``ID_LEN`` (250).
DAG_ID_RE = re.compile(r"[\w.-]{1,250}")
