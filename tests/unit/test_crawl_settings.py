"""CRAWL_* settings: polite defaults, range checks, the policy the crawls get."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlasreg_cursor.adapters.core.crawl_process import (
    CrawlPolicy,
    crawl_environment,
    default_user_agent,
)
from atlasreg_cursor.entrypoints.bootstrap import crawl_policy
from atlasreg_cursor.entrypoints.settings import SettingsError, load_settings


def test_defaults_are_polite() -> None:
    """Two requests per host, robots.txt obeyed, no delay, no AutoThrottle, product User-Agent."""
    policy = crawl_policy(load_settings({}, env_file=None))

    assert CrawlPolicy() == policy
    assert (2, True, 0.0, False) == (
        policy.max_per_host,
        policy.obey_robots,
        policy.download_delay,
        policy.autothrottle,
    )
    assert policy.user_agent == default_user_agent()


def test_settings_reach_the_policy() -> None:
    """Every CRAWL_* variable is read into the policy."""
    env = {
        "CRAWL_MAX_PER_HOST": "1",
        "CRAWL_OBEY_ROBOTS": "false",
        "CRAWL_DOWNLOAD_DELAY": "1.5",
        "CRAWL_AUTOTHROTTLE": "true",
        "CRAWL_USER_AGENT": "Cursor (+https://example.org)",
        "CRAWL_CONCURRENT_REQUESTS": "8",
        "CRAWL_RETRY_TIMES": "0",
    }

    policy = crawl_policy(load_settings(env, env_file=None))

    assert (1, False, 1.5, True, "Cursor (+https://example.org)", 8, 0) == (
        policy.max_per_host,
        policy.obey_robots,
        policy.download_delay,
        policy.autothrottle,
        policy.user_agent,
        policy.concurrent_requests,
        policy.retry_times,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRAWL_MAX_PER_HOST", "0"),
        ("CRAWL_MAX_PER_HOST", "two"),
        ("CRAWL_DOWNLOAD_DELAY", "-1"),
        ("CRAWL_DOWNLOAD_DELAY", "nan"),
        ("CRAWL_CONCURRENT_REQUESTS", "0"),
        ("CRAWL_RETRY_TIMES", "11"),
        ("CRAWL_IDLE_SECONDS", "0"),
        ("CRAWL_OBEY_ROBOTS", "maybe"),
        ("CRAWL_USER_AGENT", "robô"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    """A wrong CRAWL_* value is a start-up error naming it."""
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, env_file=None)


def test_crawl_environment_is_allow_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only allow-listed variables (and CRAWL_ENV_ALLOW names) reach the crawler."""
    monkeypatch.setenv("HOOK_HMAC_SECRET", "s1")
    monkeypatch.setenv("R2_ACCESS_KEY", "s2")
    monkeypatch.setenv("DATABASE_URL", "s3")
    monkeypatch.setenv("CORE_PROJECT_TOKEN", "needed")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")

    env = crawl_environment(["CORE_PROJECT_TOKEN"], {"EXTRA": "1"})

    assert not {"HOOK_HMAC_SECRET", "R2_ACCESS_KEY", "DATABASE_URL"} & set(env)
    assert "needed" == env["CORE_PROJECT_TOKEN"]
    assert "C.UTF-8" == env["LC_ALL"]
    assert "1" == env["EXTRA"]
    assert "PYTHONPATH" in env


def test_the_core_executors_own_crawl_processes_follow_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a local fallback to share crawl processes with, the Core executor makes its
    own, with the CRAWL_* policy, allow-list and idle time."""
    from atlasreg_cursor.adapters.core.executor import CoreExecutor

    monkeypatch.setenv("CORE_PROJECT_TOKEN", "needed")
    env = {"CRAWL_MAX_PER_HOST": "1", "CRAWL_OBEY_ROBOTS": "false", "CRAWL_DOWNLOAD_DELAY": "2"}
    policy = crawl_policy(load_settings(env, env_file=None))
    core = CoreExecutor(
        celery=None,  # type: ignore[arg-type]  # never called here
        airflow=None,
        scrapy_project_path=tmp_path,
        local_fallback=None,
        policy=policy,
        env_allow=["CORE_PROJECT_TOKEN"],
        idle_seconds=7,
    )

    assert core.crawls is not None
    assert policy == core.crawls.policy
    assert (1, False, 2.0) == (policy.max_per_host, policy.obey_robots, policy.download_delay)
    assert 7 == core.crawls.idle_seconds
    assert "needed" == core.crawls.environment()["CORE_PROJECT_TOKEN"]
