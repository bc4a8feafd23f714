"""Side-by-side benchmarks with in-run baselines; prints ratios.

Each row times the project's code and a baseline doing the least work that
gets the same result, in the same process, interleaved, and reports the
median ratio (project / baseline). Memory rows use tracemalloc peaks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

from atlasreg_cursor.domain.gold import (
    EventType,
    GoldEvent,
    build_gold,
    gold_to_dict,
    serialize_gold,
)
from atlasreg_cursor.domain.messages import parse_message


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    name: str, ours: Callable[[], object], baseline: Callable[[], object], rounds: int
) -> dict[str, object]:
    """Run both *rounds* times, interleaved; return medians and their ratio."""
    a, b = [], []
    for _ in range(rounds):
        a.append(_timed(ours))
        b.append(_timed(baseline))
    ours_s, base_s = statistics.median(a), statistics.median(b)
    return {
        "benchmark": name,
        "ours_s": round(ours_s, 6),
        "baseline_s": round(base_s, 6),
        "ratio": round(ours_s / base_s, 2),
    }


def _gold(events: int):
    evs = [
        GoldEvent(
            event_id=str(uuid.UUID(int=i)),
            title=f"Multa de R$ {i},00 aplicada",
            summary="texto " * 20,
            event_type=EventType.MULTA,
            company=None,
            amount=float(i),
            date="2026-11-24",
            source="aneel_news",
            source_url=f"https://example.com/{i}",
            confidence_score=0.9,
            is_critical=False,
        )
        for i in range(events)
    ]
    return build_gold(
        run_id="run_0123456789ab",
        date=dt.date(2026, 11, 24),
        generated_at=dt.datetime.now(dt.UTC),
        sources_processed=1,
        documents_count=events,
        events=evs,
        errors=[],
    )


def bench_gold(rounds: int) -> list[dict[str, object]]:
    gold = _gold(1000)
    data = gold_to_dict(gold)
    rows = [
        compare(
            "gold serialize+sha256 (1,000 events)",
            lambda: serialize_gold(gold),
            lambda: json.dumps(data),
            rounds,
        )
    ]
    big = _gold(10_000)
    big_data = gold_to_dict(big)
    peaks = []
    for fn in (lambda: serialize_gold(big), lambda: json.dumps(big_data)):
        tracemalloc.start()
        fn()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    rows.append(
        {
            "benchmark": "gold peak memory (10,000 events)",
            "ours_bytes": peaks[0],
            "baseline_bytes": peaks[1],
            "ratio": round(peaks[0] / peaks[1], 2),
        }
    )
    return rows


def bench_parse(rounds: int) -> list[dict[str, object]]:
    raw = (
        b'{"type":"start_daily_ingest","date":"2026-11-24",'
        b'"payload":{"sources":["a","b"]},"message_id":"m1"}'
    )
    n = 2000
    return [
        compare(
            f"parse_message x{n}",
            lambda: [parse_message(raw) for _ in range(n)],
            lambda: [json.loads(raw) for _ in range(n)],
            rounds,
        )
    ]


def bench_sqlite(rounds: int, n: int) -> list[dict[str, object]]:
    from atlasreg_cursor.adapters.local.sqlite_queue import SqliteQueue

    tmp = Path(tempfile.mkdtemp())
    queue = SqliteQueue(tmp / "q.sqlite3")
    raw = sqlite3.connect(tmp / "raw.sqlite3", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB)")
    body = b'{"type":"start_daily_ingest","date":"2026-11-24"}'

    def ours() -> None:
        for _ in range(n):
            queue.send(body)
        for _ in range(n):
            (d,) = queue.receive(1)
            queue.ack(d)

    def baseline() -> None:
        for _ in range(n):
            raw.execute("INSERT INTO m (body) VALUES (?)", (body,))
        for _ in range(n):
            row = raw.execute("SELECT id FROM m ORDER BY id LIMIT 1").fetchone()
            raw.execute("DELETE FROM m WHERE id = ?", row)

    return [compare(f"SqliteQueue send/receive/ack x{n}", ours, baseline, rounds)]


def bench_redis(rounds: int, n: int) -> list[dict[str, object]]:
    import redis

    from atlasreg_cursor.adapters.standalone.redis_queue import RedisListQueue

    url = "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        return [{"benchmark": "RedisListQueue", "skipped": f"Redis unavailable: {exc}"}]
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    queue = RedisListQueue(url, key_prefix=prefix)
    body = b'{"type":"start_daily_ingest","date":"2026-11-24"}'
    raw_key = prefix + "raw"

    def ours() -> None:
        for _ in range(n):
            queue.send(body)
        for _ in range(n):
            (d,) = queue.receive(1)
            queue.ack(d)

    def baseline() -> None:
        for _ in range(n):
            client.rpush(raw_key, body)
        for _ in range(n):
            client.lpop(raw_key)

    try:
        return [compare(f"RedisListQueue send/receive/ack x{n}", ours, baseline, rounds)]
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--crawl",
        action="store_true",
        help="also the fan-out rows (ours, plain Scrapy, ideal), the --help row and the "
        "parent's CPU profile (several minutes; see fanout.py)",
    )
    args = parser.parse_args()
    from atlasreg_cursor.entrypoints.log import configure_logging

    configure_logging("console", "WARNING")
    rounds, n = (3, 100) if args.quick else (7, 500)
    rows = [
        *bench_parse(rounds),
        *bench_gold(rounds),
        *bench_sqlite(rounds, n),
        *bench_redis(rounds, n),
    ]
    if args.crawl:
        import fanout

        fanout.compile_package()
        sizes = (40,) if args.quick else (40, 200)
        rows += [*fanout.bench_help(rounds * 2), *fanout.bench_fanout(rounds, sizes)]
        rows.append(fanout.profile_parent(200))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
