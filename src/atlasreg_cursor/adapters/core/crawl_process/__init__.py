"""One crawl process per run, from the parent side (local and Core executors).

The first Scrapy-served source of a run starts one long-lived crawler
process for that run (``atlasreg_cursor.adapters.local.spider_runner``: one
Twisted reactor, one shared downloader for the generic spiders, project
spiders as extra crawlers beside it), or takes the spare one started ahead
of any run (:meth:`CrawlSessions.start_spare`: its start-up overlaps the
caller's). :meth:`CrawlSessions.crawl` sends the
process a source's crawl spec as a JSON line on its stdin and blocks until
that source's result comes back on the events pipe, so results stream per
source while the run's other sources go on crawling.
:meth:`CrawlSessions.host_turn` asks the same process for a turn on a host
for one of the parent's downloads (a CSV): downloads and crawl requests of a
run share one per-host budget (``CRAWL_MAX_PER_HOST`` and the delay); the
turns still held when the process dies are counted by the run's next one.
:meth:`CrawlSessions.cancel_source` ends a source's wait at once and has the
process end its crawl (requests dropped, transfers aborted, places freed).

Timeouts are enforced inside the crawl: at a source's deadline the process
drops that source's requests and reports it as timed out. A project spider
that blocks the process's reactor for ``reactor_lag`` seconds is failed
(``spider_error``) and interrupted by the process's watchdog, and is never
sent again; the others go on. The parent kills the process only as a last
resort:

- a source gets no answer within :data:`REPORT_GRACE_SECONDS` of its
  deadline: that source is a timeout and, when the process had started (its
  reactor is wedged), the process is killed and the others of the run are
  sent again to a new process (once); a process that does not start within
  :data:`STARTUP_SECONDS` is killed;
- :meth:`CrawlSessions.close_run` (the run's source phase is over): sources
  still crawling return ``cancelled`` at once and the process is stopped;
- the run's process stayed idle for ``idle_seconds`` (a safety net when
  nobody closes the run), or the spare was not taken within it;
- :meth:`CrawlSessions.close`: every process, the spare too;
- the parent dies: the crawler sees its stdin close (and its parent change)
  and kills its whole process group.

The crawler gets an allow-listed environment (:func:`crawl_environment`):
none of the Cursor's secrets reach it.

Modules: :mod:`.wire` (commands, events and names shared with the crawler),
:mod:`.policy` and :mod:`.outcome` (what goes in, what comes out),
:mod:`.environment`, :mod:`.process` (one subprocess), :mod:`.sessions`
(one process per run).

Settings read (by the composition root): ``CRAWL_*``, ``SCRAPY_PROJECT_PATH``,
``ALLOW_PRIVATE_SOURCES``.
"""

from .environment import ENV_ALLOW, crawl_environment
from .outcome import CrawlOutcome
from .policy import CONTACT_URL, CrawlPolicy, default_user_agent
from .process import KILL_GRACE_SECONDS, STDERR_TAIL_BYTES, CrawlProcess, stop_process_group
from .sessions import (
    DEFAULT_IDLE_SECONDS,
    REPORT_GRACE_SECONDS,
    STARTUP_SECONDS,
    CrawlSessions,
)
from .wire import (
    DEFAULT_REACTOR_LAG_SECONDS,
    FORBIDDEN_STAT,
    INVALID_URL_STAT,
    MAX_ITEMS,
    PARENT_PID_ENV,
    RUNNER_MODULE,
    TOO_MANY_ITEMS_STAT,
    item_cap,
)

__all__ = [
    "CONTACT_URL",
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_REACTOR_LAG_SECONDS",
    "ENV_ALLOW",
    "FORBIDDEN_STAT",
    "INVALID_URL_STAT",
    "KILL_GRACE_SECONDS",
    "MAX_ITEMS",
    "PARENT_PID_ENV",
    "REPORT_GRACE_SECONDS",
    "RUNNER_MODULE",
    "STARTUP_SECONDS",
    "STDERR_TAIL_BYTES",
    "TOO_MANY_ITEMS_STAT",
    "CrawlOutcome",
    "CrawlPolicy",
    "CrawlProcess",
    "CrawlSessions",
    "crawl_environment",
    "default_user_agent",
    "item_cap",
    "stop_process_group",
]
