"""The Core executor passes the executor contract: a real Celery worker, the fixture
Scrapy project in the run's crawl process, the loopback contract site."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from atlasreg_cursor.adapters.core.executor import CoreExecutor
from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain.sources import SourceConfig
from tests.contract.executor_contract import ExecutorContract, parse_source
from tests.support.celery_worker import CeleryWorker, celery_worker, core_calls  # noqa: F401
from tests.support.contract_site import CATALOGUE, ContractSite, contract_site  # noqa: F401

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"
API = {
    "items_path": "data.items",
    "fields": {"title": "titulo", "url": "link", "summary": "resumo"},
}

pytestmark = [pytest.mark.celery, pytest.mark.redis, pytest.mark.scrapy]


class CoreScenarios:
    """The project's ``sample_news`` spider (robots.txt obeyed too); Core's ``custom_scrape``
    task crashing or hanging."""

    def __init__(
        self, site: ContractSite, calls: Callable[[str | None], list[dict[str, Any]]]
    ) -> None:
        self.site = site
        self.calls = calls

    def working(self, source_id: str, *, keywords: Sequence[str] = ()) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_NEWSROOM_PLAYER",
            spider_id="sample_news",
            url_feed=self.site.url("/noticias/"),
            keywords=list(keywords),
            timeout_seconds=60,
        )

    def expected_ids(self, source: SourceConfig) -> set[str]:
        return {f"sample-{slug}" for slug, _, _ in CATALOGUE}

    def crashing(self, source_id: str) -> SourceConfig:
        return parse_source(
            id=source_id, handler_id="CUSTOM_SCRAPER", mode="fail", timeout_seconds=60
        )

    def hanging(self, source_id: str, *, timeout: float) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="CUSTOM_SCRAPER",
            mode="slow",
            seconds=300,
            timeout_seconds=timeout,
        )

    def started(self, source: SourceConfig) -> bool:
        return any(
            c["arguments"]["source_config"]["id"] == source.id for c in self.calls("custom_scrape")
        )

    def disallowed(self, source_id: str) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_NEWSROOM_PLAYER",
            spider_id="sample_news",
            url_feed=self.site.url("/privado/noticias/"),
            timeout_seconds=60,
        )

    def on_host(self, source_id: str, host: str, *, seconds: float) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_CVM_API",
            url_feed=self.site.url(f"/delay?seconds={seconds}&s={source_id}", host),
            timeout_seconds=60,
            api=API,
        )


class TestCoreExecutor(ExecutorContract):
    """CoreExecutor: project spiders and generic fallbacks in one crawl process, Celery tasks."""

    CRASH_ERRORS = frozenset({"task_failed"})

    @pytest.fixture
    def executor(self, celery_worker: CeleryWorker, tmp_path: Path) -> Iterator[CoreExecutor]:
        local = LocalExecutor(
            work_dir=tmp_path / "work", scrapy_project_path=PROJECT, allow_private_sources=True
        )
        core = CoreExecutor(
            celery=celery_worker.gateway(),
            airflow=None,
            scrapy_project_path=PROJECT,
            local_fallback=local,
            allow_private_sources=True,
        )
        yield core
        core.close()

    @pytest.fixture
    def scenarios(self, contract_site: ContractSite, core_calls: Any) -> CoreScenarios:
        return CoreScenarios(contract_site, core_calls)
