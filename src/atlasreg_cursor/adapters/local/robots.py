"""robots.txt for the local executor's downloads (``DOWNLOAD_CSV``).

Crawls obey robots.txt inside the crawl process (Scrapy's middleware); a CSV
download is made by the parent with the guarded client, so it reads the
host's robots.txt with that same client first: same URL guard, same
addresses, the download's own deadline and cancel handle. The rules are
parsed with Protego, the parser Scrapy uses, and kept per run and origin.

As for crawls, robots.txt that cannot be had (4xx, 5xx, network error,
refused by the guard, over :data:`MAX_ROBOTS_BYTES`) allows everything.
"""

from __future__ import annotations

import threading
import time
import urllib.parse

from protego import Protego

from atlasreg_cursor.adapters.http import GuardedClient, TransientHTTPError
from atlasreg_cursor.adapters.http.policy import safe_url
from atlasreg_cursor.domain.errors import SourceFailed

MAX_ROBOTS_BYTES = 512 * 1024
ROBOTS_TIMEOUT_SECONDS = 30.0


class RobotsRules:
    """
    The robots.txt of the origins a run's downloads go to, read once per run.

    Args:
        client: the guarded client the downloads use.
    """

    def __init__(self, client: GuardedClient) -> None:
        self._client = client
        self._rules: dict[tuple[str, str], Protego | None] = {}
        self._lock = threading.Lock()

    def check(
        self,
        run_id: str,
        url: str,
        *,
        user_agent: str,
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> None:
        """
        Raise when robots.txt of *url*'s origin disallows it for *user_agent*.

        Raises:
            SourceFailed: ``robots_disallowed``; ``cancelled`` / ``timeout``
                when the download was stopped or its deadline passed meanwhile.
        """
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        key = (run_id, origin)
        with self._lock:
            known = key in self._rules
            rules = self._rules.get(key)
        if not known:
            rules = self._read(origin, user_agent, deadline, cancel)
            with self._lock:
                self._rules[key] = rules
        if rules is not None and not rules.can_fetch(url, user_agent):
            raise SourceFailed(
                f"robots.txt of {origin} disallows {safe_url(url)} for {user_agent!r}",
                error_type="robots_disallowed",
            )

    def forget(self, run_id: str) -> None:
        """Drop what was read for *run_id*."""
        with self._lock:
            for key in [k for k in self._rules if k[0] == run_id]:
                del self._rules[key]

    def _read(
        self, origin: str, user_agent: str, deadline: float, cancel: threading.Event | None
    ) -> Protego | None:
        try:
            got = self._client.fetch(
                f"{origin}/robots.txt",
                deadline=min(deadline, time.monotonic() + ROBOTS_TIMEOUT_SECONDS),
                max_bytes=MAX_ROBOTS_BYTES,
                accept="text/plain, */*;q=0.5",
                cancel=cancel,
                user_agent=user_agent,
            )
        except SourceFailed as exc:
            if exc.error_type == "cancelled" or (
                exc.error_type == "timeout" and time.monotonic() >= deadline
            ):
                raise
            return None
        except TransientHTTPError:
            return None
        return Protego.parse(got.body.decode("utf-8", errors="replace"))
