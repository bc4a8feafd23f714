"""The Cloudflare Worker of ``integrations/cloudflare-worker`` served by workerd.

A session fixture starts ``test/miniflare-runner.mjs`` (Node + Miniflare,
which runs workerd, the real Workers runtime) once. It serves several copies
of the Worker from ``wrangler.toml``'s ``main``, each with its own bindings
and its own loopback port, over one shared R2 bucket ``GOLD``:

- ``main``: the current secret plus older ones (rotation; one plain, one
  ``whsec_`` without padding), legacy-only requests refused (the ``false``
  of ``wrangler.toml``), ``HOOK_SEEN`` KV bound;
- ``legacy``: the same secrets, ``ACCEPT_LEGACY_SIGNATURE="true"``, no KV;
- ``legacy-toml``: the same with ``ACCEPT_LEGACY_SIGNATURE = true`` as TOML
  writes it (a boolean);
- ``legacy-invalid``: ``ACCEPT_LEGACY_SIGNATURE="yes"``, a configuration error;
- ``misconfigured``: a ``whsec_`` secret that is not base64;
- ``unconfigured``: no ``HOOK_HMAC_SECRET`` at all;
- ``failing``: ``test/failing-worker.mjs``, the same Worker whose handlers,
  R2 and KV fail on request (markers in the bucket, see its header);
- ``probe``: ``test/probe-worker.mjs``, ``verify.js`` on any input, to hold
  it against the Python verifier.

The runner speaks JSON lines (its header documents the protocol): the
fixture puts objects into R2, reads KV and collects what the Worker logs.
It needs ``node`` and the npm packages (``npm ci`` in the integration
folder); without them the tests skip locally and fail in CI.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .services import missing_service

WORKER_DIR = Path(__file__).resolve().parents[2] / "integrations" / "cloudflare-worker"
RUNNER = WORKER_DIR / "test" / "miniflare-runner.mjs"

CURRENT_SECRET = "whsec_C2FibGUgY3VycmVudCBrZXkgb2YgdGhlIHdvcmtlcg=="
PREVIOUS_SECRET = "whsec_cHJldmlvdXMga2V5LCBzdGlsbCBhY2NlcHRlZA=="
PLAIN_SECRET = "a-plain-text-secret-used-as-utf8-bytes"
UNPADDED_SECRET = "whsec_a2V5IHNlbnQgd2l0aCBubyBwYWRkaW5nIGF0IGFsbA"  # "==" left off
BROKEN_SECRET = "whsec_this is not base64!"
START_TIMEOUT = 90.0
REPLY_TIMEOUT = 30.0


def worker_configs(vars_: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The copies of the Worker the runtime serves (see the module docstring)."""
    secrets = {
        "HOOK_HMAC_SECRET": CURRENT_SECRET,
        "HOOK_HMAC_ADDITIONAL_SECRETS": f"{PREVIOUS_SECRET}, {PLAIN_SECRET},{UNPADDED_SECRET}",
    }
    legacy_toml = tomllib.loads("ACCEPT_LEGACY_SIGNATURE = true")
    return [
        {"name": "main", "bindings": {**vars_, **secrets}, "kv": True},
        {
            "name": "legacy",
            "bindings": {**vars_, **secrets, "ACCEPT_LEGACY_SIGNATURE": "true"},
            "kv": False,
        },
        {"name": "legacy-toml", "bindings": {**vars_, **secrets, **legacy_toml}},
        {
            "name": "legacy-invalid",
            "bindings": {**vars_, **secrets, "ACCEPT_LEGACY_SIGNATURE": "yes"},
        },
        {"name": "misconfigured", "bindings": {**vars_, "HOOK_HMAC_SECRET": BROKEN_SECRET}},
        {"name": "unconfigured", "bindings": dict(vars_)},
        {
            "name": "failing",
            "main": "test/failing-worker.mjs",
            "bindings": {**vars_, **secrets},
            "kv": True,
        },
        {"name": "probe", "main": "test/probe-worker.mjs"},
    ]


class WorkerRuntime:
    """
    A running Miniflare runner: Worker URLs, R2 and KV access, Worker logs.

    Args:
        proc: the runner process, its configuration already written.
        stderr_path: where the runner's own stderr goes (shown on failures).
    """

    def __init__(self, proc: subprocess.Popen[str], stderr_path: Path) -> None:
        self._proc = proc
        self._stderr_path = stderr_path
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._logs: list[dict[str, Any]] = []
        self._urls: dict[str, str] | None = None
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"type": "log", "stream": "runner", "line": line.rstrip("\n")}
            with self._cond:
                if message.get("type") == "ready":
                    self._urls = dict(message["urls"])
                elif message.get("type") == "reply":
                    self._replies[int(message["id"])] = message
                else:
                    self._logs.append(message)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stderr(self) -> str:
        """What the runner wrote to stderr so far."""
        return self._stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> dict[str, str]:
        """
        Wait until workerd listens; return the URL of each copy of the Worker.

        Raises:
            RuntimeError: the runner exited or did not get ready in time.
        """
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._urls is not None or self._proc.poll() is not None, timeout
            )
            if self._urls is None:
                state = "exited" if ready else f"was not ready after {timeout:.0f} s"
                raise RuntimeError(f"the Miniflare runner {state}:\n{self.stderr()}")
            return self._urls

    def url(self, worker: str) -> str:
        """Base URL of one copy of the Worker."""
        assert self._urls is not None
        return self._urls[worker]

    def command(self, op: str, **args: Any) -> Any:
        """
        Run one runner command and return its value.

        Raises:
            RuntimeError: the command failed, or no reply came in time.
        """
        cid = next(self._ids)
        assert self._proc.stdin is not None
        with self._cond:
            self._proc.stdin.write(json.dumps({"id": cid, "op": op, **args}) + "\n")
            self._proc.stdin.flush()
            if not self._cond.wait_for(lambda: cid in self._replies, REPLY_TIMEOUT):
                raise RuntimeError(f"no reply to {op} within {REPLY_TIMEOUT} s:\n{self.stderr()}")
            reply = self._replies.pop(cid)
        if not reply["ok"]:
            raise RuntimeError(f"{op} failed: {reply['error']}")
        return reply["value"]

    def put(self, key: str, body: bytes) -> None:
        """Store *body* under *key* in the shared ``GOLD`` bucket."""
        self.command("put", key=key, base64=base64.b64encode(body).decode("ascii"))

    def delete(self, key: str) -> None:
        """Remove *key* from the ``GOLD`` bucket."""
        self.command("delete", key=key)

    def kv_get(self, worker: str, key: str) -> str | None:
        """Read *key* from the ``HOOK_SEEN`` namespace of *worker*."""
        value: str | None = self.command("kv_get", worker=worker, key=key)
        return value

    def events(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The Worker's JSON log events (see ``log.js``) matching *predicate*."""
        with self._cond:
            lines = [m["line"] for m in self._logs if m.get("stream") == "stdout"]
        found = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and predicate(event):
                    found.append(event)
        return found

    def wait_for_event(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """
        Wait for the first log event matching *predicate* and return it.

        Raises:
            AssertionError: none came within *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.events(predicate)
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._proc.poll() is not None:
                    raise AssertionError(f"no matching Worker log event within {timeout} s")
                self._cond.wait(min(remaining, 1.0))

    def stop(self) -> None:
        """Close the runner's stdin (it disposes of Miniflare) and wait for it."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=5)


def start_runtime(stderr_path: Path) -> WorkerRuntime:
    """Start the runner on the Worker of ``wrangler.toml``; not yet ready."""
    node = shutil.which("node")
    if node is None:
        missing_service("node (the Worker tests run workerd through Miniflare)")
    if not (WORKER_DIR / "node_modules" / "miniflare").is_dir():
        missing_service(f"the Worker's npm packages (run `npm ci` in {WORKER_DIR})")
    wrangler = tomllib.loads((WORKER_DIR / "wrangler.toml").read_text())
    config = {
        "main": wrangler["main"],
        "compatibilityDate": wrangler["compatibility_date"],
        "compatibilityFlags": wrangler.get("compatibility_flags", []),
        "workers": worker_configs(wrangler.get("vars", {})),
    }
    stderr = stderr_path.open("w")
    proc = subprocess.Popen(
        [str(node), str(RUNNER)],
        cwd=WORKER_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        encoding="utf-8",
    )
    stderr.close()
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config) + "\n")
    proc.stdin.flush()
    return WorkerRuntime(proc, stderr_path)


@pytest.fixture(scope="session")
def worker_runtime() -> Iterator[WorkerRuntime]:
    """The Worker in workerd, once per session; stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="worker-runtime-") as tmp:
        runtime = start_runtime(Path(tmp) / "runner.stderr")
        try:
            runtime.wait_ready(START_TIMEOUT)
            yield runtime
        finally:
            runtime.stop()
