"""The in-memory executor the unit tests use passes the executor contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from atlasreg_cursor.domain.errors import SourceFailed
from atlasreg_cursor.domain.hashing import sha256_hex
from atlasreg_cursor.domain.sources import SourceConfig
from tests.contract.executor_contract import ExecutorContract, parse_source
from tests.fakes.executor import FakeExecutor
from tests.support.contract_site import CATALOGUE, ContractSite, contract_site  # noqa: F401


class FakeScenarios:
    """The fake is told what each source does; it fetches nothing."""

    def __init__(self, site: ContractSite, fake: FakeExecutor) -> None:
        self.site = site
        self.fake = fake
        self.items = [
            {"title": title, "url": site.url(f"/noticias/{slug}"), "summary": summary}
            for slug, title, summary in CATALOGUE
        ]

    def _source(self, source_id: str, path: str, **fields: Any) -> SourceConfig:
        url = self.site.url(path)
        self.fake.pages[url] = self.items
        return parse_source(
            id=source_id,
            handler_id="SCRAPY_CVM_API",
            url_feed=url,
            **{"timeout_seconds": 60, **fields},
        )

    def working(self, source_id: str, *, keywords: Sequence[str] = ()) -> SourceConfig:
        return self._source(source_id, "/api/avisos", keywords=list(keywords))

    def expected_ids(self, source: SourceConfig) -> set[str]:
        return {sha256_hex(item["url"].encode())[:32] for item in self.items}

    def crashing(self, source_id: str) -> SourceConfig:
        self.fake.behaviours[source_id] = SourceFailed(
            "the spider crashed", error_type="spider_error"
        )
        return self._source(source_id, "/api/avisos")

    def hanging(self, source_id: str, *, timeout: float) -> SourceConfig:
        self.fake.sleep[source_id] = 3600
        return self._source(source_id, "/slow", timeout_seconds=timeout)

    def started(self, source: SourceConfig) -> bool:
        return ("run_source", source.id) in self.fake.calls

    def disallowed(self, source_id: str) -> SourceConfig:
        self.fake.behaviours[source_id] = SourceFailed(
            "robots.txt of the site disallows the source's URL", error_type="robots_disallowed"
        )
        return self._source(source_id, "/privado/api/avisos")

    def on_host(self, source_id: str, host: str, *, seconds: float) -> SourceConfig:
        url = self.site.url(f"/delay?seconds={seconds}&s={source_id}", host)
        self.fake.pages[url] = self.items
        return parse_source(id=source_id, handler_id="SCRAPY_CVM_API", url_feed=url)


class TestFakeExecutor(ExecutorContract):
    """FakeExecutor: timeouts cut, close_run honoured, keywords and identity as the real ones."""

    FETCHES_URLS = False
    CUT_GRACE = 1.0
    CANCEL_GRACE = 1.0

    @pytest.fixture
    def executor(self) -> FakeExecutor:
        return FakeExecutor()

    @pytest.fixture
    def scenarios(self, contract_site: ContractSite, executor: FakeExecutor) -> FakeScenarios:
        return FakeScenarios(contract_site, executor)
