"""The crawl engine's wiring (architecture §14): the ``CRAWL_*`` policy, the local executor.

Imports nothing heavy until called: :func:`local_executor` may start a spare
crawl process before the executor's own modules are imported, so the two
start-ups overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from atlasreg_cursor.adapters.core.crawl_process import CrawlPolicy
    from atlasreg_cursor.ports import Executor

    from .settings import Settings


def crawl_policy(s: Settings) -> CrawlPolicy:
    """The crawl policy of the ``CRAWL_*`` settings."""
    import attrs

    from atlasreg_cursor.adapters.core.crawl_process import CrawlPolicy

    policy = CrawlPolicy(
        max_per_host=s.crawl_max_per_host,
        obey_robots=s.crawl_obey_robots,
        download_delay=s.crawl_download_delay,
        autothrottle=s.crawl_autothrottle,
        concurrent_requests=s.crawl_concurrent_requests,
        retry_times=s.crawl_retry_times,
    )
    return attrs.evolve(policy, user_agent=s.crawl_user_agent) if s.crawl_user_agent else policy


def local_executor(s: Settings, *, ahead: bool = False, keep_warm: bool = False) -> Executor:
    """
    The local executor and its crawl processes.

    Args:
        s: the settings (``CURSOR_HOME``, ``CRAWL_*``, ``SCRAPY_PROJECT_PATH``,
            ``ALLOW_PRIVATE_SOURCES``).
        ahead: start a spare crawl process now, before the executor's own
            imports (a command that runs jobs): the two start-ups overlap.
        keep_warm: start one again after each run (the daemon).
    """
    from atlasreg_cursor.adapters.core.crawl_process import CrawlSessions

    work = s.home / "work"
    work.mkdir(parents=True, exist_ok=True)
    crawls = CrawlSessions(
        work_dir=work / "crawls",
        policy=crawl_policy(s),
        project_path=s.scrapy_project_path,
        allow_private=s.allow_private_sources,
        env_allow=(s.crawl_env_allow or "").split(","),
        idle_seconds=s.crawl_idle_seconds,
        keep_spare=keep_warm,
    )
    if ahead:
        crawls.start_spare()
    try:
        from atlasreg_cursor.adapters.local.executor import LocalExecutor

        return LocalExecutor(
            work_dir=work,
            scrapy_project_path=s.scrapy_project_path,
            allow_private_sources=s.allow_private_sources,
            crawls=crawls,
        )
    except BaseException:
        crawls.close()  # its spare must not outlive a failed build
        raise
