"""``atlasreg-cursor demo`` as a subprocess: Gold on disk, SHA-256, events, verified webhook."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from atlasreg_cursor.domain.gold import parse_gold
from atlasreg_cursor.sample_site import expected_demo_outcome
from tests.support.cli import cli_env, run_cli

pytestmark = [pytest.mark.scrapy, pytest.mark.slow]
SECRET = "whsec_" + base64.b64encode(b"demo-test-key-0123456789abcdef!!").decode()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """Run the demo once; return its home, its JSON line and its stderr."""
    home = tmp_path_factory.mktemp("demo")
    done = run_cli(
        ["demo", "--home", str(home)], env=cli_env({"HOOK_HMAC_SECRET": SECRET}), cwd=home
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return home, json.loads(lines[-1]), done.stderr


def test_summary_line_matches_the_gold_on_disk(demo: tuple[Path, dict, str]) -> None:
    """The JSON line names a Gold whose bytes hash to the printed SHA-256."""
    home, summary, _ = demo
    body = (home / "store" / summary["gold_key"]).read_bytes()
    gold = parse_gold(json.loads(body))

    assert hashlib.sha256(body).hexdigest() == summary["sha256"]
    assert len(body) == summary["size"]
    assert (summary["events_count"], summary["documents_count"], summary["errors_count"]) == (
        gold.metadata.events_count,
        gold.metadata.documents_count,
        len(gold.errors),
    )
    meta = json.loads((home / "store" / ".meta" / (summary["gold_key"] + ".json")).read_text())
    assert summary["sha256"] in json.dumps(meta)


def test_events_are_what_the_sample_site_holds(demo: tuple[Path, dict, str]) -> None:
    """Event counts by type and source, and the one failing source, are as expected."""
    home, summary, _ = demo
    expected = expected_demo_outcome()
    gold = json.loads((home / "store" / summary["gold_key"]).read_bytes())

    by_type = Counter(e["event_type"] for e in gold["events"])
    by_source = Counter(e["source"] for e in gold["events"])
    assert expected.events_by_type() == dict(by_type)
    assert {sid: s.documents for sid, s in expected.sources.items() if s.documents} == dict(
        by_source
    )
    assert (expected.status, expected.events_count) == (summary["status"], summary["events_count"])
    assert [("sigel_daily", "handler_not_available")] == [
        (e["source_id"], e["error_type"]) for e in gold["errors"]
    ]
    fines = [e for e in gold["events"] if e["event_type"] == "MULTA" and e["amount"]]
    assert fines
    assert all(any(x["type"] == "CNPJ" for x in e["entities"]) for e in fines if e["company"])


def test_webhook_was_received_and_verifies_independently(demo: tuple[Path, dict, str]) -> None:
    """The webhook the demo received verifies with the standardwebhooks package and hmac."""
    home, summary, stderr = demo
    (received,) = [
        json.loads(line) for line in (home / "webhooks-received.jsonl").read_text().splitlines()
    ]
    body = received["body"].encode()
    headers = received["headers"]

    Webhook(SECRET).verify(body, headers, json_parse=False)
    import hmac

    assert hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest() == headers["X-Signature"]
    payload = json.loads(body)
    assert ("ingest_complete", summary["gold_key"], summary["sha256"]) == (
        payload["event_type"],
        payload["result"]["file_path"],
        payload["result"]["sha256"],
    )
    assert summary["notified"] is True
    assert "1 verified" in stderr


def test_demo_explains_its_failing_source_and_what_to_try(demo: tuple[Path, dict, str]) -> None:
    """The failing source is explained, and the next commands name this demo's home and run."""
    home, summary, stderr = demo

    assert "sigel_daily fails on purpose: it is an AIRFLOW_DAG source" in stderr
    assert (
        f"CURSOR_HOME={home} ALLOW_PRIVATE_SOURCES=true atlasreg-cursor runs list -o table"
        in stderr
    )
    assert f"atlasreg-cursor runs show {summary['run_id']}" in stderr
    assert f"atlasreg-cursor verify {summary['gold_key']}" in stderr
