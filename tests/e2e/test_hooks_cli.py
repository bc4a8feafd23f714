"""`hooks list|resend`: the notifications waiting in the outbox, shown and sent again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlasreg_cursor.sample_site import start_sample_site
from tests.support.cli import cli_env, run_cli
from tests.support.services import free_port
from tests.support.webhook_receiver import SECRETS, WebhookReceiver, webhook_receiver  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """The bundled sample site on a free loopback port."""
    with start_sample_site() as site:
        yield site.base_url


def test_a_notification_that_could_not_be_sent_is_listed_and_resent(
    tmp_path: Path, site_url: str, webhook_receiver: WebhookReceiver
) -> None:
    """`ingest` with the receiver away leaves it pending; `hooks resend` delivers the same webhook-id."""
    watchlist = tmp_path / "watchlist.json"
    watchlist.write_text(
        json.dumps(
            {
                "sources": [
                    {
                        "id": "ons",
                        "handler_id": "DOWNLOAD_CSV",
                        "url_feed": f"{site_url}/dados/ocorrencias.csv",
                        "csv": {
                            "delimiter": ";",
                            "fields": {"title": "descricao", "url": "link", "date": "data"},
                        },
                    }
                ]
            }
        )
    )
    base = {
        "CURSOR_HOME": str(tmp_path),
        "WATCHLIST_FILE": str(watchlist),
        "ALLOW_PRIVATE_SOURCES": "true",
        "HOOK_HMAC_SECRET": SECRETS[0],
        "HOOK_ATTEMPTS": "1",
    }
    away = cli_env({**base, "HOOK_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    back = cli_env({**base, "HOOK_ENDPOINT": webhook_receiver.url})

    ingest = run_cli(["ingest", "--date", "2026-11-24"], env=away, cwd=tmp_path)
    line = json.loads(ingest.stdout.strip().splitlines()[-1])
    pending = json.loads(run_cli(["hooks", "list"], env=away, cwd=tmp_path).stdout)
    resent = run_cli(["hooks", "resend", line["run_id"]], env=back, cwd=tmp_path)
    after = json.loads(run_cli(["hooks", "list"], env=back, cwd=tmp_path).stdout)
    everything = json.loads(run_cli(["hooks", "list", "--all"], env=back, cwd=tmp_path).stdout)
    missing = run_cli(["hooks", "resend", "run_000000000000"], env=back, cwd=tmp_path)

    assert 0 == ingest.returncode, ingest.stderr[-2000:]
    assert (False, "success") == (line["notified"], line["status"])
    assert [(line["run_id"], "pending", 1)] == [
        (p["run_id"], p["state"], p["attempts"]) for p in pending
    ]
    assert 0 == resent.returncode, resent.stderr[-2000:]
    assert ["delivered"] == [r["state"] for r in json.loads(resent.stdout)]
    (request,) = webhook_receiver.requests
    assert f"{line['run_id']}-ingest-complete" == request.header("webhook-id")
    assert (SECRETS[0],) == request.standard_verified
    assert [] == after
    assert ["delivered"] == [e["state"] for e in everything]
    assert 1 == missing.returncode
