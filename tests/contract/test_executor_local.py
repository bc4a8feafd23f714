"""The local executor passes the executor contract (real Scrapy crawls, loopback site)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from atlasreg_cursor.adapters.local.executor import LocalExecutor
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.domain.sources import SourceConfig
from tests.contract.executor_contract import ExecutorContract, parse_source
from tests.support.contract_site import CATALOGUE, ContractSite, contract_site  # noqa: F401

PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "scrapy_project"
API = {
    "items_path": "data.items",
    "fields": {"title": "titulo", "url": "link", "summary": "resumo"},
}

pytestmark = pytest.mark.scrapy


class LocalScenarios:
    """Generic API sources; the project's ``crasher``; a hanging download."""

    def __init__(self, site: ContractSite) -> None:
        self.site = site

    def working(self, source_id: str, *, keywords: Sequence[str] = ()) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_CVM_API",
            url_feed=self.site.url("/api/avisos"),
            keywords=list(keywords),
            timeout_seconds=60,
            api=API,
        )

    def expected_ids(self, source: SourceConfig) -> set[str]:
        return {
            sha256_hex(self.site.url(f"/noticias/{slug}").encode())[:32] for slug, _, _ in CATALOGUE
        }

    def crashing(self, source_id: str) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_NEWSROOM_PLAYER",
            spider_id="crasher",
            url_feed=self.site.url("/noticias/"),
            timeout_seconds=60,
        )

    def hanging(self, source_id: str, *, timeout: float) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_NEWSROOM_PLAYER",
            url_feed=self.site.url("/slow?seconds=300"),
            timeout_seconds=timeout,
            selectors={"item": "article", "title": "h2 a::text"},
        )

    def started(self, source: SourceConfig) -> bool:
        return self.site.record.hits["/slow"] > 0

    def disallowed(self, source_id: str) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_CVM_API",
            url_feed=self.site.url("/privado/api/avisos"),
            timeout_seconds=60,
            api=API,
        )

    def on_host(self, source_id: str, host: str, *, seconds: float) -> SourceConfig:
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_CVM_API",
            url_feed=self.site.url(f"/delay?seconds={seconds}&s={source_id}", host),
            timeout_seconds=60,
            api=API,
        )


class TestLocalExecutor(ExecutorContract):
    """LocalExecutor with the fixture Scrapy project (its ``crasher`` spider)."""

    @pytest.fixture
    def executor(self, tmp_path: Path) -> Iterator[LocalExecutor]:
        local = LocalExecutor(
            work_dir=tmp_path / "work", scrapy_project_path=PROJECT, allow_private_sources=True
        )
        yield local
        local.close()

    @pytest.fixture
    def scenarios(self, contract_site: ContractSite) -> LocalScenarios:
        return LocalScenarios(contract_site)
