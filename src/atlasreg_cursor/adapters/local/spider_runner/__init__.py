"""The crawl process of a run: one Twisted reactor serving every Scrapy source.

Usage: ``python -m atlasreg_cursor.adapters.local.spider_runner CONFIG.json EVENTS_FD``
(started by :class:`atlasreg_cursor.adapters.core.crawl_process.CrawlSessions`).

``CONFIG.json``: ``{"policy": {max_per_host, obey_robots, download_delay,
autothrottle, user_agent, concurrent_requests, retry_times, retry_backoff},
"allow_private", "project", "scratch", "lag_seconds"}`` (``lag_seconds``:
the reactor-lag watchdog's threshold, ``null`` for none; see ``watchdog.py``;
tests add ``stub_network``, see :mod:`.resolver`; nothing else sets it).

Commands arrive as JSON lines on stdin:

- ``{"op": "crawl", "key", "deadline", "spec"}`` — crawl one source until
  ``deadline`` (``time.monotonic()``, shared by the processes of one host);
- ``{"op": "turn", "key", "host", "max_per_host", "download_delay"}`` — a
  place on ``host`` for one of the parent's downloads, granted (a ``turn``
  event) when the host's per-host limit and delay allow;
- ``{"op": "hold", "key", "host", "max_per_host", "download_delay"}`` — a
  place a download still holds from the run's previous crawl process
  (which died), counted at once;
- ``{"op": "release", "key"}`` — that download is over (or gave up waiting);
- ``{"op": "cancel", "key"}`` — the parent gave up on that source (or turn):
  it ends now, as at its deadline, its transfers in progress aborted;
- ``{"op": "shutdown"}`` — stop (project spiders gracefully) and exit.

Events go out as JSON lines on ``EVENTS_FD``: ``{"event": "ready", "pid"}``,
then one ``{"event": "done", "key", "spider", "stats", "errors",
"http_errors", "robots", "runner_error", "timed_out", "items_file"}`` per
source, its items written to ``items_file`` (JSON lines) as they came, and
``{"event": "turn", "key"}`` per granted turn.

A ``spec`` says what to crawl:

- ``{"kind": "newsroom", "url", "selectors": {item, title, url, date,
  summary, next_page}, "max_pages"}`` — a listing page read with CSS
  selectors (Scrapy syntax; relative URLs made absolute; ``next_page``
  followed up to ``max_pages`` pages);
- ``{"kind": "api", "url", "api": {items_path, fields, next_path}, "max_pages"}``
  — a JSON API (dotted paths; ``fields`` maps item field to the path inside
  each element);
- ``{"kind": "project", "spider", "spider_args", "fallback"}`` — a spider of
  the Scrapy project in the working directory, run as a crawler of its own
  (with the project's settings under the Cursor's politeness and guard);
  when the project has no such spider, ``fallback`` (a generic spec) runs.

Every spec may carry ``download_timeout``, ``max_items`` (the source's
cap, default 50,000: one item more stops the source and its ``done`` stats
say ``atlasreg/too_many_items``) and ``crawl`` (the source's politeness
overrides: ``max_per_host``, ``download_delay``, ``obey_robots``,
``autothrottle``, ``retry_times``, ``user_agent``).

The generic newsroom and API sources share ONE crawler and so one
downloader: its robots.txt cache and AutoThrottle apply across the whole run.
Each request carries its source in ``meta``; a source is done when none of
its requests is left, and at its deadline its requests are dropped. The
per-host limit (``CONCURRENT_REQUESTS_PER_DOMAIN``) and delay hold across
every crawler of the process, project spiders and the parent's downloads
included: every downloader takes its places from one table (``hosts.py``).

Every request of every crawler passes the URL guard (http/https only, the
address check unless ``allow_private``) and every connection goes to an
address vetted by the DNS resolver installed on the reactor.

A project spider that blocks the reactor for ``lag_seconds`` is failed and
interrupted by the watchdog thread (``watchdog.py``); the others go on.

When stdin closes without a ``shutdown`` (the parent died), or the parent
process changes, the crawl kills its whole process group.
"""
