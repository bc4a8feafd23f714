"""Every CLI command with sentinel secrets in its environment: none may ever come out.

The commands run through the real ``main()`` (in this process, to keep the
suite fast: the interpreter start-up costs seconds per command here) in local mode with every secret setting
set to a sentinel (webhook HMAC secrets, Cloudflare token, R2/MinIO keys,
passwords inside DATABASE_URL, AIRFLOW_API_URL, ELASTICSEARCH_URL, REDIS_URL,
CELERY_BROKER_URL) and a watchlist whose url_feeds carry ``user:PASSWORD@``
and ``?api_key=KEY``. Every stdout, stderr, log line, stored object, journal,
outbox entry and webhook the receiver got is searched for the sentinels.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from pathlib import Path
from unittest import mock

import pytest

from atlasreg_cursor.entrypoints.cli import main
from tests.security.netlab import RecordingServer, send
from tests.support.cli import cli_env
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.security, pytest.mark.slow]

SECRETS = {
    "HOOK_HMAC_SECRET": "HMACSECRET-SENTINEL-1",
    "HOOK_HMAC_ADDITIONAL_SECRETS": "HMACOLD-SENTINEL-2",
    "CF_API_TOKEN": "CFTOKEN-SENTINEL-3",
    "R2_ACCESS_KEY": "R2ACCESS-SENTINEL-4",
    "R2_SECRET_KEY": "R2SECRET-SENTINEL-5",
    "MINIO_ACCESS_KEY": "MINIOACCESS-SENTINEL-6",
    "MINIO_SECRET_KEY": "MINIOSECRET-SENTINEL-7",
    "DATABASE_URL": "postgresql://atlas:DBPASS-SENTINEL-8@127.0.0.1:5432/atlas",
    "AIRFLOW_API_URL": "http://admin:AFURLPASS-SENTINEL-9@127.0.0.1:9/",
    "AIRFLOW_PASSWORD": "AFPASS-SENTINEL-10",
    "ELASTICSEARCH_URL": "http://elastic:ESPASS-SENTINEL-11@127.0.0.1:9200",
    "REDIS_URL": "redis://:REDISPASS-SENTINEL-12@127.0.0.1:6379/15",
    "CELERY_BROKER_URL": "redis://:CELERYPASS-SENTINEL-13@127.0.0.1:6379/15",
}
URL_PASSWORD = "URLPASS-SENTINEL-14"
API_KEY = "APIKEY-SENTINEL-15"
SENTINELS = [
    *re.findall(r"[A-Z0-9]+-SENTINEL-[0-9]+", " ".join(SECRETS.values())),
    URL_PASSWORD,
    API_KEY,
]
DATE = "2026-11-24"


def _watchlist(internal: int, site: int) -> dict[str, object]:
    """Hostile url_feeds; *internal* is the port the userinfo/api_key feeds aim at."""
    csv = {"fields": {"title": "title", "url": "url"}}
    return {
        "sources": [
            {
                "id": "userinfo_internal",
                "handler_id": "DOWNLOAD_CSV",
                "csv": csv,
                "url_feed": f"http://user:{URL_PASSWORD}@127.0.0.1:{internal}/x.csv?api_key={API_KEY}",
            },
            {
                "id": "apikey_internal",
                "handler_id": "DOWNLOAD_CSV",
                "csv": csv,
                "url_feed": f"http://127.0.0.1:{internal}/x.csv?api_key={API_KEY}",
            },
            {
                "id": "apikey_site_404",
                "handler_id": "DOWNLOAD_CSV",
                "csv": csv,
                "url_feed": f"http://127.0.0.1:{site}/missing.csv?api_key={API_KEY}&token={API_KEY}",
            },
            {
                "id": "apikey_site_500",
                "handler_id": "DOWNLOAD_CSV",
                "csv": csv,
                "timeout_seconds": 20,
                "url_feed": f"http://127.0.0.1:{site}/broken.csv?api_key={API_KEY}",
            },
            {
                "id": "apikey_site_ok",
                "handler_id": "DOWNLOAD_CSV",
                "csv": csv,
                "url_feed": f"http://127.0.0.1:{site}/ok.csv?api_key={API_KEY}",
            },
            {"id": "dag", "handler_id": "AIRFLOW_DAG", "dag_id": "sigel_daily"},
        ]
    }


def _leaks(text: str) -> list[str]:
    return [s for s in SENTINELS if s in text]


def test_no_command_leaks_a_secret(tmp_path: Path, internal: RecordingServer) -> None:
    """Outputs, logs, stored objects, journals and webhooks hold none of the sentinels."""
    site = RecordingServer(
        {
            "/ok.csv": lambda h, _q: send(h, 200, f"title,url\nMulta {API_KEY[:3]},/a\n".encode()),
            "/broken.csv": lambda h, _q: send(h, 500, f"upstream says {API_KEY}".encode()),
        }
    )
    receiver = WebhookReceiver()
    receiver.start()
    home = tmp_path / "home"
    watchlist = tmp_path / "input" / "watchlist.json"
    watchlist.parent.mkdir()
    watchlist.write_text(json.dumps(_watchlist(internal.port, site.port)))
    # with ALLOW_PRIVATE_SOURCES the same feeds aim at the site, never at the internal server
    site_only = tmp_path / "input" / "site-only.json"
    site_only.write_text(json.dumps(_watchlist(site.port, site.port)))
    base = cli_env(
        {
            **SECRETS,
            "CURSOR_HOME": str(home),
            "WATCHLIST_FILE": str(tmp_path / "input" / "installed.json"),
            "LOG_LEVEL": "DEBUG",
            "CF_ACCOUNT_ID": "acct",
            "HOOK_ENDPOINT": receiver.url,
        }
    )
    private = {**base, "ALLOW_PRIVATE_SOURCES": "true"}
    outputs: list[str] = []
    timings: list[tuple[str, float]] = []
    try:

        def cli(*args: str, env: dict[str, str] = base, ok: tuple[int, ...] = (0, 1)) -> str:
            started = time.monotonic()
            out, err = io.StringIO(), io.StringIO()
            with (
                mock.patch.dict(os.environ, env, clear=True),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                code = main(["--env-file", "/nonexistent", *args])
            text = out.getvalue() + err.getvalue()
            outputs.append(f"$ {' '.join(args)}\n{text}")
            timings.append((" ".join(args[:2]), round(time.monotonic() - started, 1)))
            assert code in ok, text
            return out.getvalue()

        cli("config", "validate", str(watchlist))
        cli("config", "push", str(watchlist), "--allow-invalid-sources", ok=(0,))
        cli("config", "show", ok=(0,))
        cli("config", "validate")
        cli("enqueue", "start_daily_ingest", "--date", DATE, ok=(0,))
        cli("run", "--until-empty", "--no-http", ok=(0,))
        cli("config", "push", str(site_only), "--allow-invalid-sources", ok=(0,))
        ingest = json.loads(cli("ingest", "--date", DATE, env=private).splitlines()[-1])
        cli("reprocess", "--date", DATE, env=private)
        cli("runs", "list", ok=(0,))
        cli("runs", "show", ingest["run_id"], ok=(0,))
        hooks = json.loads(cli("hooks", "list", "--all", ok=(0,)))
        resent = json.loads(cli("hooks", "resend", ingest["run_id"]))
        cli("schedule", "show", ok=(0,))
        cli("verify", ingest["gold_key"], ok=(0,))
        cli("dlq", "list", ok=(0,))
        cli("dlq", "replay", "no-such-message")
        cli("dlq", "purge", "--yes", ok=(0,))
        cli("health", ok=(0,))
        cli("demo", "--home", str(tmp_path / "demo"), ok=(0,))
    finally:
        site.stop()
        receiver.stop()
    stored = {
        str(path): path.read_bytes().decode("utf-8", "replace")
        for root in (home, tmp_path / "demo")
        for path in root.rglob("*")
        if path.is_file()
    }
    webhooks = [json.dumps({**dict(r.headers), "body": r.body.decode()}) for r in receiver.requests]

    print(timings)
    assert "partial" == ingest["status"]
    assert ingest["run_id"] in {h["run_id"] for h in hooks}
    assert {ingest["run_id"]} == {h["run_id"] for h in resent}
    assert any(path.endswith(".json") and "/gold/" in path for path in stored)
    assert receiver.requests
    assert [] == _leaks("\n".join(outputs))
    assert {} == {p: _leaks(t) for p, t in stored.items() if _leaks(t)}
    assert [] == _leaks("\n".join(webhooks))
