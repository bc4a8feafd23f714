"""kill -9 of competing daemons at seeded points all over a run, with the DEFAULT lease and visibility.

Three queues at once (the waits overlap, so the suite stays short): SQLite
with one of two daemons killed, Redis with both killed and a fresh one
started, Cloudflare (emulator) with one of two killed. No lease, visibility
or poll setting is changed: the run orphaned by the kill must be finished,
and a notification cut off by it delivered, by another consumer within 60 s.

Each queue is killed in a different *phase* of the victim's run, drawn from
FAULT_SEED so that every run of the suite covers all three:

- ``sources``: at a random point while the sources download;
- ``publish``: while the Gold's create-only PUT is on its way to S3 (a proxy
  in front of S3 holds that one request until after the kill);
- ``notify``: while the run's ``ingest_complete`` waits for the receiver's
  answer (the outbox entry is claimed, its answer never comes back).

The file store of the SQLite daemons cannot be held mid-publish, so SQLite
draws ``sources`` or ``notify``. Kills are timed once the victim holds a
run's journal, never between a pull and the journal's creation: on
Cloudflare that window leaves the message to its 30-minute visibility
timeout, as docs/reliability.md says.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import botocore.session
import pytest
import redis

from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue
from tests.emulator.cloudflare import (
    DEFAULT_ACCOUNT,
    DEFAULT_TOKEN,
    CloudflareEmulator,
    cloudflare_emulator,  # noqa: F401
)
from tests.faults.report import FaultReport
from tests.faults.support import (
    Daemon,
    JobSpec,
    check,
    daemon_env,
    gold_writes,
    gold_writes_answered,
    gold_writes_logged_by,
    golds_in_bucket,
    golds_on_disk,
    jobs,
    journals_on_disk,
    wait_for,
    write_watchlist,
)
from tests.support.redis_server import redis_prefix, redis_url  # noqa: F401
from tests.support.s3_server import S3Server, s3_server  # noqa: F401
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = [
    pytest.mark.faults,
    pytest.mark.redis,
    pytest.mark.s3,
    pytest.mark.cloudflare,
    pytest.mark.slow,
]

RECOVERY_LIMIT = 60.0
JOBS = 4
RUN_SECONDS = 4
HOLD_SECONDS = 2.0
#: Every scenario is over within this (pytest's own timeout is 300 s).
SCENARIO_SECONDS = 210.0
PHASES = ("sources", "publish", "notify")
DATE = "2026-11-24"


@attrs.define
class Scenario:
    """One queue backend: its daemons' settings, how to read its state, where to kill."""

    name: str
    env: dict[str, str]
    specs: list[JobSpec]
    receiver: WebhookReceiver
    journals: Callable[[], dict[str, dict[str, Any]]]
    golds: Callable[[], dict[str, int]]
    queue_left: Callable[[], int]
    dead: Callable[[], int]
    phase: str = "sources"
    s3_proxy: TcpProxy | None = None
    bucket: str = ""
    kill_both: bool = False
    after_runs: Callable[[], None] = lambda: None
    daemons: list[Daemon] = attrs.Factory(list)
    result: dict[str, Any] = attrs.Factory(dict)
    error: BaseException | None = None


def _finished_at(journal: dict[str, Any]) -> float | None:
    stamp = journal.get("finished_at")
    return dt.datetime.fromisoformat(stamp).timestamp() if stamp else None


def _held_by(journals: dict[str, dict[str, Any]], owner: str) -> list[str]:
    return [
        run_id
        for run_id, journal in journals.items()
        if not journal.get("finished_at") and (journal.get("lease") or {}).get("owner") == owner
    ]


def draw_phases(rng: random.Random) -> dict[str, str]:
    """Each queue's kill phase: all three covered, SQLite never ``publish`` (file store)."""
    sqlite = rng.choice(["sources", "notify"])
    others = [p for p in PHASES if p != sqlite]
    rng.shuffle(others)
    return {"sqlite": sqlite, "redis": others[0], "cloudflare": others[1]}


class _Clock:
    """What is left of a scenario's time."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self, wanted: float) -> float:
        return max(0.0, min(wanted, self.deadline - time.monotonic()))


def _wait_for_the_kill_point(
    scenario: Scenario, victim: str, target: str, rng: random.Random, clock: _Clock
) -> float:
    """Sleep until the seeded point of *target*'s run where the victim dies; return the delay."""
    if scenario.phase == "sources":
        delay = rng.uniform(0.2, RUN_SECONDS - 0.5)
        time.sleep(delay)
        return delay
    if scenario.phase == "publish":
        assert scenario.s3_proxy is not None
        arrived = scenario.s3_proxy.hold_request(
            f"/gold/{DATE}/{target}.json".encode(), HOLD_SECONDS
        )
    else:
        arrived = scenario.receiver.hold(target.encode(), HOLD_SECONDS)
    assert arrived.wait(clock.left(60)), f"{scenario.name}: {target} never reached {scenario.phase}"
    started = time.monotonic()
    delay = rng.uniform(0.3, HOLD_SECONDS - 0.5)
    if scenario.phase == "notify":  # the victim has taken its next run (or none is left)
        wait_for(
            lambda: (
                _held_by(scenario.journals(), victim)
                or len(scenario.journals()) == len(scenario.specs)
            ),
            timeout=HOLD_SECONDS - 0.5,
            interval=0.05,
        )
    time.sleep(max(0.0, delay - (time.monotonic() - started)))
    return delay


def _notified_again_at(receiver: WebhookReceiver, run_id: str) -> float | None:
    """When the run's notification arrived a second time (sent again after the kill)."""
    seen = [
        r.received_at
        for r in receiver.requests
        if r.path.endswith("/ingest-complete") and json.loads(r.body).get("run_id") == run_id
    ]
    return seen[1] if len(seen) > 1 else None


def play(scenario: Scenario, rng: random.Random, cwd: Path) -> None:
    """Start two daemons, kill at a seeded point of a run, measure the recovery."""
    clock = _Clock(SCENARIO_SECONDS)
    cwd.mkdir(exist_ok=True)
    names = [f"{scenario.name}-a", f"{scenario.name}-b"]
    for name in names:
        scenario.daemons.append(Daemon({**scenario.env, "CONSUMER_ID": name}, cwd, name))
    daemons = list(scenario.daemons)
    victims = daemons if scenario.kill_both else daemons[:1]
    held: list[str] = []

    def victim_holds_a_run() -> bool:
        held[:] = _held_by(scenario.journals(), names[0])
        return bool(held)

    assert wait_for(victim_holds_a_run, timeout=clock.left(60), interval=0.05), daemons[0].tail()
    target = held[0]
    delay = _wait_for_the_kill_point(scenario, names[0], target, rng, clock)
    journals = scenario.journals()
    orphans = {r for victim in victims for r in _held_by(journals, victim.name)}
    cut_off = scenario.phase == "notify"  # its notification was in flight
    killed_at = time.time()
    for victim in victims:
        victim.kill9()
    survivors = [d for d in daemons if d not in victims]
    if scenario.kill_both:
        fresh = f"{scenario.name}-c"
        scenario.daemons.append(Daemon({**scenario.env, "CONSUMER_ID": fresh}, cwd, fresh))
        survivors.append(scenario.daemons[-1])

    def recovered() -> bool:
        journals = scenario.journals()
        runs = all(_finished_at(journals.get(r, {})) for r in orphans)
        return runs and (not cut_off or _notified_again_at(scenario.receiver, target) is not None)

    assert wait_for(recovered, timeout=clock.left(RECOVERY_LIMIT + 30), interval=0.5), survivors[
        0
    ].tail()
    journals = scenario.journals()
    recovery = [round(float(_finished_at(journals[r]) or 0) - killed_at, 1) for r in orphans]
    if cut_off:
        recovery.append(
            round(float(_notified_again_at(scenario.receiver, target) or 0) - killed_at, 1)
        )
    assert wait_for(
        lambda: (
            all(_finished_at(j) for j in scenario.journals().values())
            and len(scenario.journals()) == len(scenario.specs)
        ),
        timeout=clock.left(60),
    )
    scenario.after_runs()
    drained = wait_for(
        lambda: (
            scenario.queue_left() == 0
            and len({json.loads(r.body)["run_id"] for r in scenario.receiver.requests})
            >= len(scenario.specs)
        ),
        timeout=clock.left(60),
        interval=0.5,
    )
    alive = all(d.alive() for d in survivors)
    codes = [d.stop(timeout=clock.left(30) + 5) for d in survivors]
    adopted = sum(
        1 for d in survivors for e in d.events("gold.published") if e.get("adopted") is True
    )
    # every daemon's log, the killed ones too, and the S3 server's answers
    answered = (
        gold_writes_answered(scenario.s3_proxy.exchanges, scenario.bucket)
        if scenario.s3_proxy is not None
        else None
    )
    writes = gold_writes(gold_writes_logged_by(scenario.daemons), answered or {})
    checked = check(scenario.specs, scenario.golds(), scenario.receiver, writes)
    scenario.result = {
        "invariant": (
            "the orphaned run is finished, and a notification cut off delivered, by another"
            " consumer within 60 s with the default settings; one Gold and one stable"
            " notification per run; nothing dead-lettered"
        ),
        "faults_injected": len(victims),
        "killed": [v.name for v in victims],
        "kill_phase": scenario.phase,
        "kill_delay_seconds": round(delay, 2),
        "orphaned_runs": len(orphans),
        "orphaned_notifications": int(cut_off),
        "golds_adopted_by_survivors": adopted,
        "gold_puts_answered_2xx": None if answered is None else sum(answered.values()),
        "golds_never_seen_written": list(checked.golds_never_seen_written),
        "recovery_seconds_after_kill_9": recovery,
        "drained": drained,
        "survivors_alive": alive,
        "exit_codes": codes,
        "dead_lettered_by_infrastructure_faults": scenario.dead(),
        "webhook_ids_stable": checked.webhook_ids_stable,
        "missing_notifications": list(checked.missing_notifications),
        **checked.figures(),
    }


def _expire_leases(emulator: CloudflareEmulator, queue_id: str) -> None:
    emulator.expire_leases(queue_id)


def _kill_left_over(scenario: Scenario) -> None:
    """No daemon outlives its scenario, whatever happened."""
    for daemon in scenario.daemons:
        if daemon.alive():
            daemon.kill9()


def _receiver() -> WebhookReceiver:
    receiver = WebhookReceiver()
    receiver.start()
    return receiver


def _s3(server: S3Server) -> Any:
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def _bucket_journals(client: Any, bucket: str) -> dict[str, dict[str, Any]]:
    out = {}
    listed = client.list_objects_v2(Bucket=bucket, Prefix="runs/")
    for item in listed.get("Contents", []):
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        out[item["Key"].removeprefix("runs/").removesuffix(".json")] = json.loads(body)
    return out


@pytest.fixture
def receivers() -> Iterator[list[WebhookReceiver]]:
    """Three webhook receivers, one per scenario."""
    made = [_receiver() for _ in range(3)]
    yield made
    for receiver in made:
        receiver.stop()


def test_kill_9_recovery_with_default_settings_on_every_queue(
    tmp_path: Path,
    site_url: str,
    redis_url: str,
    redis_prefix: str,
    s3_server: S3Server,
    cloudflare_emulator: CloudflareEmulator,
    receivers: list[WebhookReceiver],
    rng: random.Random,
    fault_report: FaultReport,
) -> None:
    """Invariant: recovery < 60 s with defaults; one Gold per run; every run notified; none dead."""
    watchlist = write_watchlist(tmp_path / "watchlist.json", site_url, slow_seconds=RUN_SECONDS)
    s3 = _s3(s3_server)
    phases = draw_phases(rng)
    s3_port = int(s3_server.endpoint.rsplit(":", 1)[1])
    proxies = {name: TcpProxy(s3_port) for name in ("redis", "cloudflare")}

    # SQLite: one of two daemons killed
    local_home = tmp_path / "local"
    local_home.mkdir()
    local_specs = jobs("kill-sqlite", JOBS)
    sqlite = SqliteQueue(local_home / "queue.sqlite3")
    for spec in local_specs:
        sqlite.send(spec.body)
    local = Scenario(
        name="sqlite",
        env=daemon_env(local_home, watchlist, receivers[0], MODE="local"),
        specs=local_specs,
        receiver=receivers[0],
        journals=lambda: journals_on_disk(local_home / "store"),
        golds=lambda: golds_on_disk(local_home / "store"),
        queue_left=lambda: sum(v or 0 for v in attrs.astuple(sqlite.stats())[:3]),
        dead=lambda: sqlite.stats().dead or 0,
        phase=phases["sqlite"],
    )

    # Redis: both daemons killed, a fresh one started
    redis_home = tmp_path / "redis"
    redis_home.mkdir()
    queue_name = f"{redis_prefix}:ingest-queue"
    key = f"cursor:queue:{queue_name}"
    client = redis.Redis.from_url(redis_url)
    redis_specs = jobs("kill-redis", JOBS)
    for spec in redis_specs:
        client.rpush(key, spec.body)
    redis_bucket = f"kill-{uuid.uuid4().hex[:10]}"
    standalone = Scenario(
        name="redis",
        env=daemon_env(
            redis_home,
            watchlist,
            receivers[1],
            MODE="standalone",
            EXECUTOR_BACKEND="local",
            REDIS_URL=redis_url,
            QUEUE_NAME=queue_name,
            MINIO_ENDPOINT=proxies["redis"].url_host,
            MINIO_ACCESS_KEY=s3_server.access_key,
            MINIO_SECRET_KEY=s3_server.secret_key,
            GOLD_BUCKET=redis_bucket,
        ),
        specs=redis_specs,
        receiver=receivers[1],
        journals=lambda: _bucket_journals(s3, redis_bucket),
        golds=lambda: golds_in_bucket(s3, redis_bucket),
        queue_left=lambda: client.llen(key) + client.zcard(key + ":inflight"),
        dead=lambda: client.llen(key + ":dead"),
        phase=phases["redis"],
        s3_proxy=proxies["redis"],
        bucket=redis_bucket,
        kill_both=True,
    )

    # Cloudflare (emulator): one of two daemons killed; its run is swept from its journal
    cf_home = tmp_path / "cloudflare"
    cf_home.mkdir()
    dlq = cloudflare_emulator.create_queue()
    cf_queue = cloudflare_emulator.create_queue(max_retries=10, dead_letter_queue=dlq)
    cf_specs = jobs("kill-cloudflare", JOBS)
    for spec in cf_specs:
        cloudflare_emulator.inject_message(cf_queue, json.loads(spec.body))
    cf_bucket = f"kill-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=cf_bucket)
    cloudflare = Scenario(
        name="cloudflare",
        env=daemon_env(
            cf_home,
            watchlist,
            receivers[2],
            MODE="cloudflare",
            CONFIG_BACKEND="file",
            CF_API_ENDPOINT=cloudflare_emulator.url,
            CF_API_TOKEN=DEFAULT_TOKEN,
            CF_ACCOUNT_ID=DEFAULT_ACCOUNT,
            CF_QUEUE_ID=cf_queue,
            CF_DLQ_QUEUE_ID=dlq,
            CF_QUEUE_MAX_RETRIES="10",
            R2_ENDPOINT=f"http://{proxies['cloudflare'].url_host}",
            R2_ACCESS_KEY=s3_server.access_key,
            R2_SECRET_KEY=s3_server.secret_key,
            R2_BUCKET_NAME=cf_bucket,
        ),
        specs=cf_specs,
        receiver=receivers[2],
        journals=lambda: _bucket_journals(s3, cf_bucket),
        golds=lambda: golds_in_bucket(s3, cf_bucket),
        queue_left=lambda: len(cloudflare_emulator.messages(cf_queue)),
        dead=lambda: len(cloudflare_emulator.messages(dlq)),
        phase=phases["cloudflare"],
        s3_proxy=proxies["cloudflare"],
        bucket=cf_bucket,
        # the killed daemon's message stays leased for its 30-minute visibility;
        # let it come back now: it must be acked as a duplicate
        after_runs=lambda: _expire_leases(cloudflare_emulator, cf_queue),
    )

    scenarios = [local, standalone, cloudflare]
    seeds = [rng.random() for _ in scenarios]

    def run(scenario: Scenario, seed: float) -> None:
        try:
            play(scenario, random.Random(seed), tmp_path / scenario.name)
        except BaseException as exc:  # reported after the other scenarios finished
            scenario.error = exc
        finally:
            _kill_left_over(scenario)

    threads = [
        threading.Thread(target=run, args=pair, daemon=True)
        for pair in zip(scenarios, seeds, strict=True)
    ]
    for thread in threads:
        thread.start()
    ends = time.monotonic() + SCENARIO_SECONDS + 20
    for thread in threads:
        thread.join(timeout=max(0.0, ends - time.monotonic()))
    stuck = [s.name for s, t in zip(scenarios, threads, strict=True) if t.is_alive()]
    for scenario in scenarios:
        _kill_left_over(scenario)
    client.close()
    for proxy in proxies.values():
        proxy.stop()
    for scenario in scenarios:
        fault_report.record(f"kill_9_{scenario.name}", **scenario.result)

    assert [] == stuck, f"scenarios still running after {SCENARIO_SECONDS + 20:.0f} s"
    assert set(PHASES) == {s.phase for s in scenarios}
    for scenario in scenarios:
        if scenario.error is not None:
            raise scenario.error
        result = scenario.result
        assert result["recovery_seconds_after_kill_9"]
        assert max(result["recovery_seconds_after_kill_9"]) < RECOVERY_LIMIT, result
        assert (0, 0, 0) == (
            result["lost"],
            result["doubled"],
            result["dead_lettered_by_infrastructure_faults"],
        ), result
        assert [] == result["golds_never_seen_written"], result
        assert ([], True) == (result["missing_notifications"], result["webhook_ids_stable"]), result
        assert (True, True) == (result["drained"], result["survivors_alive"]), result
        assert {0} == set(result["exit_codes"]), result
