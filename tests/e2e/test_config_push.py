"""`config push`: validated watchlists installed into KV (emulator) or the local file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.emulator.cloudflare import (
    DEFAULT_ACCOUNT,
    DEFAULT_TOKEN,
    CloudflareEmulator,
    cloudflare_emulator,  # noqa: F401
)
from tests.support.cli import cli_env, run_cli

GOOD = {
    "sources": [
        {"id": "ons", "handler_id": "DOWNLOAD_CSV", "url_feed": "https://example.com/o.csv"}
    ]
}
BAD = {"sources": [*GOOD["sources"], {"id": "x", "handler_id": "NOPE"}]}


@pytest.mark.cloudflare
def test_push_to_kv_then_show_reads_it_back(
    tmp_path: Path, cloudflare_emulator: CloudflareEmulator
) -> None:
    """The file lands in the KV key, byte for byte, and `config show` reads it from KV."""
    namespace = cloudflare_emulator.create_namespace()
    env = cli_env(
        {
            "CONFIG_BACKEND": "kv",
            "CF_API_ENDPOINT": cloudflare_emulator.url,
            "CF_API_TOKEN": DEFAULT_TOKEN,
            "CF_ACCOUNT_ID": DEFAULT_ACCOUNT,
            "CF_KV_NAMESPACE_ID": namespace,
            "CURSOR_HOME": str(tmp_path),
        }
    )
    raw = json.dumps(GOOD).encode()
    (tmp_path / "w.json").write_bytes(raw)

    pushed = run_cli(["config", "push", "w.json"], env=env, cwd=tmp_path)
    shown = run_cli(["config", "show"], env=env, cwd=tmp_path)

    assert 0 == pushed.returncode, pushed.stderr
    assert raw == cloudflare_emulator.kv_get(namespace, "NEWS_WATCHLIST_CONFIG")
    assert ["ons"] == [s["id"] for s in json.loads(shown.stdout)["sources"]]
    assert DEFAULT_TOKEN not in shown.stdout + shown.stderr + pushed.stdout + pushed.stderr


def test_push_refuses_invalid_sources_unless_asked(tmp_path: Path) -> None:
    """An invalid source stops the install (exit 1) unless --allow-invalid-sources."""
    env = cli_env({"CURSOR_HOME": str(tmp_path)})
    (tmp_path / "bad.json").write_text(json.dumps(BAD))
    target = tmp_path / "config" / "news_watchlist_config.json"

    refused = run_cli(["config", "push", "bad.json"], env=env, cwd=tmp_path)
    existed = target.exists()
    forced = run_cli(
        ["config", "push", "bad.json", "--allow-invalid-sources"], env=env, cwd=tmp_path
    )

    assert (1, False) == (refused.returncode, existed)
    assert "unknown handler_id 'NOPE'" in refused.stderr
    assert 0 == forced.returncode
    assert BAD == json.loads(target.read_text())
