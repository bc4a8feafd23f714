"""Running ``atlasreg-cursor`` as a real subprocess in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

CLI = [sys.executable, "-m", "atlasreg_cursor"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI subprocess: this one, minus Cursor settings, plus *extra*."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CF_", "HOOK_", "MODE", "QUEUE_", "R2_", "MINIO_"))
    }
    keep["LOG_FORMAT"] = "json"
    keep.update(extra or {})
    return keep


def run_cli(
    args: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion and return what it printed."""
    return subprocess.run(
        [*CLI, "--env-file", "/nonexistent", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start the CLI in the background (the daemon)."""
    return subprocess.Popen(
        [*CLI, "--env-file", "/nonexistent", *args],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
