"""The baseline of the fan-out row: one plain Scrapy ``CrawlerProcess``.

Usage: ``python benchmarks/plain_scrapy.py URLS.json CONCURRENCY PER_HOST [polite]``.
Fetches every URL once with the politeness the Cursor uses by default
(robots.txt obeyed, at most PER_HOST requests at once per host, no delay)
and CONCURRENCY requests at once in all, parses each JSON answer into
items; prints how many items it got. With ``polite``, Scrapy's downloader is
replaced by the crawl process's ``PoliteDownloader`` (the stock one lets a
slot's whole queue out at once and so exceeds PER_HOST; see README.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess


class ApiSpider(scrapy.Spider):
    """GET each URL, yield ``data.items``."""

    name = "plain_api"

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = urls

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.urls:
            yield scrapy.Request(url, headers={"Accept": "application/json"}, dont_filter=True)

    def parse(self, response: Any) -> Iterator[dict[str, Any]]:
        yield from json.loads(response.body)["data"]["items"]


def main() -> None:
    urls = json.loads(Path(sys.argv[1]).read_text())
    concurrency, per_host = int(sys.argv[2]), int(sys.argv[3])
    polite = sys.argv[4:] == ["polite"]
    downloader = "atlasreg_cursor.adapters.local.spider_runner.downloader.PoliteDownloader"
    process = CrawlerProcess(
        {
            **({"DOWNLOADER": downloader} if polite else {}),
            "LOG_LEVEL": "WARNING",
            "TELNETCONSOLE_ENABLED": False,
            "ROBOTSTXT_OBEY": True,
            "CONCURRENT_REQUESTS": concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": per_host,
            "DOWNLOAD_DELAY": 0,
            "COOKIES_ENABLED": False,
        }
    )
    crawler = process.create_crawler(ApiSpider)
    process.crawl(crawler, urls=urls)
    process.start()
    print(crawler.stats.get_value("item_scraped_count"))


if __name__ == "__main__":
    main()
