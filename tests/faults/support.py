"""What the fault tests share: daemons as processes, jobs, invariant checks, the report.

Each fault test injects a real fault (a process killed, a server stopped, a
proxy dropping replies), then checks its invariants after the chaos: no
message lost, one Gold per run, every published run notified with one
stable ``webhook-id``, nothing dead-lettered because of an infrastructure
fault, the daemon alive. "Doubled" is measured where a double would show:
each Gold's writes (the daemons' logs, and the S3 server's answers where a
proxy stands in front of it) and the notifications the receiver got (see
:class:`Checked`). Its figures go into the machine-readable report
(:class:`~tests.faults.report.FaultReport`), merged at the end of the
run into ``$FAULT_REPORT`` (default ``var/fault-report.json``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from atlasreg_cursor.domain.messages import MessageType
from atlasreg_cursor.domain.runs import derive_run_id
from tests.support.cli import CLI, cli_env
from tests.support.tcp_proxy import Exchange
from tests.support.webhook_receiver import ReceivedRequest, WebhookReceiver

# --- jobs ----------------------------------------------------------------------------


@attrs.frozen
class JobSpec:
    """One job message of a scenario and the run it becomes."""

    body: bytes
    message_id: str
    run_id: str


def jobs(prefix: str, count: int, *, date: str = "2026-11-24") -> list[JobSpec]:
    """*count* daily-ingest messages with their own ``message_id``."""
    out = []
    for i in range(count):
        message_id = f"{prefix}-{i:02d}"
        body = json.dumps(
            {"type": "start_daily_ingest", "date": date, "message_id": message_id},
            separators=(",", ":"),
        ).encode()
        run_id = derive_run_id(MessageType.START_DAILY_INGEST, message_id)
        out.append(JobSpec(body=body, message_id=message_id, run_id=run_id))
    return out


def write_watchlist(path: Path, site_url: str, *, slow_seconds: float = 0.0) -> Path:
    """A watchlist with a CSV source (and a slow one, so runs last *slow_seconds*)."""
    csv = {
        "delimiter": ";",
        "fields": {"title": "descricao", "url": "link", "date": "data"},
    }
    sources: list[dict[str, Any]] = [
        {
            "id": "ons_ocorrencias",
            "handler_id": "DOWNLOAD_CSV",
            "url_feed": f"{site_url}/dados/ocorrencias.csv",
            "timeout_seconds": 60,
            "csv": csv,
        }
    ]
    if slow_seconds:
        sources.append(
            {
                "id": "ons_lento",
                "handler_id": "DOWNLOAD_CSV",
                "url_feed": f"{site_url}/slow?seconds={slow_seconds}",
                "timeout_seconds": 60,
                "csv": csv,
            }
        )
    path.write_text(json.dumps({"sources": sources}))
    return path


# --- daemons ---------------------------------------------------------------------------


class Daemon:
    """``atlasreg-cursor run`` as a process, its log lines in a file."""

    def __init__(
        self, env: Mapping[str, str], cwd: Path, name: str, *, stdout: int | None = None
    ) -> None:
        self.name = name
        self.log_path = cwd / f"daemon-{name}.log"
        self._log: IO[bytes] | None = None
        if stdout is None:
            self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in wait)
        self.proc = subprocess.Popen(
            [*CLI, "--env-file", "/nonexistent", "run"],
            env=dict(env),
            cwd=cwd,
            stdout=stdout if stdout is not None else self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no cleanup at all."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        return code

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines so far."""
        if not self.log_path.exists():
            return []
        return log_lines(self.log_path.read_text(errors="replace"))

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines of event *name*."""
        return [line for line in self.lines() if line.get("event") == name]

    def tail(self, count: int = 40) -> str:
        """The last lines, for assertion messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])


def log_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon's output (other lines left out)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            out.append(parsed)
    return out


def daemon_env(
    home: Path, watchlist: Path, receiver: WebhookReceiver, **extra: str
) -> dict[str, str]:
    """Settings every fault daemon shares; *extra* per scenario."""
    from tests.support.webhook_receiver import SECRETS

    return cli_env(
        {
            "CURSOR_HOME": str(home),
            "WATCHLIST_FILE": str(watchlist),
            "EXECUTOR_BACKEND": "local",
            "ALLOW_PRIVATE_SOURCES": "true",
            "HOOK_ENDPOINT": receiver.url,
            "HOOK_HMAC_SECRET": SECRETS[0],
            "METRICS_PORT": "0",
            "LOG_LEVEL": "INFO",
            **extra,
        }
    )


# --- invariants ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Checked:
    """
    What the invariants found after the chaos.

    ``doubled`` is what a consumer of the results would see twice: a run
    whose Gold was written more than once (``doubled_golds``: each write
    after the first), and a notification delivered again as something else
    (``doubled_notifications``: a second body under one ``webhook-id``, or a
    second ``webhook-id`` for one run's ``ingest_complete``). The same
    notification delivered again with the same id and bytes is a retry the
    receiver deduplicates, not a double.
    """

    messages: int
    lost: int
    doubled_golds: int
    doubled_notifications: int
    notifications_delivered: int
    webhook_ids_stable: bool
    missing_notifications: tuple[str, ...]
    golds_never_seen_written: tuple[str, ...]

    @property
    def doubled(self) -> int:
        """Golds written again plus notifications doubled."""
        return self.doubled_golds + self.doubled_notifications

    def figures(self) -> dict[str, Any]:
        """For the report."""
        return {
            "messages": self.messages,
            "lost": self.lost,
            "doubled": self.doubled,
            "doubled_golds": self.doubled_golds,
            "doubled_notifications": self.doubled_notifications,
            "notifications_delivered": self.notifications_delivered,
        }


def notifications_by_run(requests: Iterable[ReceivedRequest]) -> dict[str, list[ReceivedRequest]]:
    """Received ``ingest_complete`` webhooks by run id (signatures verified)."""
    out: dict[str, list[ReceivedRequest]] = {}
    for request in requests:
        if not request.path.endswith("/ingest-complete") or not request.standard_verified:
            continue
        out.setdefault(json.loads(request.body)["run_id"], []).append(request)
    return out


def doubled_notifications(requests: Iterable[ReceivedRequest]) -> int:
    """
    Notifications the receiver would take twice: each further body under one
    ``webhook-id``, and each further ``webhook-id`` of one run's ``ingest_complete``.
    """
    requests = [r for r in requests if r.standard_verified]
    bodies: dict[str | None, set[bytes]] = {}
    for request in requests:
        bodies.setdefault(request.header("webhook-id"), set()).add(request.body)
    ids = [
        {r.header("webhook-id") for r in reqs} for reqs in notifications_by_run(requests).values()
    ]
    return sum(len(b) - 1 for b in bodies.values()) + sum(len(i) - 1 for i in ids)


def _gold_run_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json").removesuffix("_reprocessed")


def gold_writes_logged(lines: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Golds written per run id, from daemons' log lines (``gold.published`` not adopted)."""
    return Counter(
        str(line["run_id"])
        for line in lines
        if line.get("event") == "gold.published" and line.get("adopted") is False
    )


def gold_writes_logged_by(daemons: Iterable[Daemon]) -> Counter[str]:
    """Golds written per run id, from the logs of every daemon (the killed ones too)."""
    return gold_writes_logged(line for daemon in daemons for line in daemon.lines())


def gold_writes_answered(exchanges: Iterable[Exchange], bucket: str) -> Counter[str]:
    """Gold PUTs the S3 server answered 2xx, per run id, as a proxy in front of it saw them
    (:attr:`TcpProxy.exchanges <tests.support.tcp_proxy.TcpProxy.exchanges>`)."""
    return Counter(
        _gold_run_id(exchange.path)
        for exchange in list(exchanges)
        if exchange.method == "PUT"
        and exchange.path.startswith(f"/{bucket}/gold/")
        and 200 <= exchange.status < 300
    )


def gold_writes(*seen: Mapping[str, int]) -> dict[str, int]:
    """The writes of each run's Gold: the most any witness saw (each sees a lower bound)."""
    out: dict[str, int] = {}
    for counts in seen:
        for run_id, count in counts.items():
            out[run_id] = max(out.get(run_id, 0), count)
    return out


def check(
    specs: list[JobSpec],
    golds: Mapping[str, int],
    receiver: WebhookReceiver,
    writes: Mapping[str, int],
) -> Checked:
    """
    Count what the invariants say: each Gold written once, one stable notification per run.

    Args:
        golds: Gold objects found per run id (a run without one is lost).
        writes: how often each run's Gold was written (:func:`gold_writes`).
    """
    by_run = notifications_by_run(receiver.requests)
    lost = sum(1 for spec in specs if golds.get(spec.run_id, 0) == 0)
    stable = all(
        len({r.header("webhook-id") for r in reqs}) == 1 and len({r.body for r in reqs}) == 1
        for reqs in by_run.values()
    )
    missing = tuple(spec.run_id for spec in specs if spec.run_id not in by_run)
    return Checked(
        messages=len(specs),
        lost=lost,
        doubled_golds=sum(max(0, n - 1) for n in writes.values()),
        doubled_notifications=doubled_notifications(receiver.requests),
        notifications_delivered=sum(1 for spec in specs if spec.run_id in by_run),
        webhook_ids_stable=stable,
        missing_notifications=missing,
        golds_never_seen_written=tuple(
            sorted(run_id for run_id, n in golds.items() if n and not writes.get(run_id))
        ),
    )


def golds_on_disk(store_root: Path) -> dict[str, int]:
    """Gold objects per run id in a file store."""
    counts: dict[str, int] = {}
    gold = store_root / "gold"
    if not gold.exists():
        return counts
    for path in gold.rglob("*.json"):
        run_id = _gold_run_id(path.name)
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def golds_in_bucket(client: Any, bucket: str) -> dict[str, int]:
    """Gold objects per run id in an S3 bucket."""
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="gold/"):
        for item in page.get("Contents", []):
            run_id = _gold_run_id(item["Key"])
            counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def journals_on_disk(store_root: Path) -> dict[str, dict[str, Any]]:
    """The journals of a file store, by run id (unreadable ones left out)."""
    out = {}
    runs = store_root / "runs"
    if runs.exists():
        for path in runs.glob("*.json"):
            try:
                out[path.name.removesuffix(".json")] = json.loads(path.read_bytes())
            except ValueError:
                continue
    return out


def wait_for(check_fn: Any, *, timeout: float, interval: float = 0.2) -> bool:
    """Call *check_fn* until it is true or *timeout* passes (exceptions count as false)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check_fn():
                return True
        except Exception:  # noqa: S110 (a check may race the state it reads)
            pass
        time.sleep(interval)
    return False
