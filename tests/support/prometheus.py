"""A real Prometheus server (Debian's ``prometheus`` package) for tests."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import urllib3

from .services import free_port, missing_service, wait_until

JOB = "atlasreg-cursor"


def require_prometheus() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``, or fail (CI) / skip."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        missing_service("prometheus and promtool (apt-get install prometheus)")
    assert prometheus is not None
    assert promtool is not None
    return prometheus, promtool


class Prometheus:
    """A running server: its base URL and a PromQL query helper."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=10))

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET an API path; the decoded JSON envelope."""
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        data: dict[str, Any] = json.loads(self._http.request("GET", url).data)
        return data

    def query(self, expr: str) -> dict[str, Any]:
        """Evaluate *expr* now (``/api/v1/query``)."""
        return self.api("/api/v1/query", query=expr)

    def values(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """The instant vector of *expr* as (labels, value) pairs; [] on error or no data."""
        answer = self.query(expr)
        if answer.get("status") != "success" or answer["data"]["resultType"] != "vector":
            return []
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]


@contextlib.contextmanager
def start_prometheus(
    workdir: Path, targets: Sequence[str], *, rule_files: Sequence[Path] = ()
) -> Iterator[Prometheus]:
    """Run Prometheus scraping *targets* every second, with *rule_files* loaded."""
    prometheus, _ = require_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    rules = []
    for path in rule_files:
        copy = workdir / path.name
        shutil.copyfile(path, copy)
        rules.append(str(copy))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": rules,
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": list(targets)}]}],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        ready = wait_until(
            lambda: server._http.request("GET", server.base_url + "/-/ready").status == 200,
            timeout=30,
            interval=0.2,
        )
        assert ready, (workdir / "prometheus.log").read_text()[-2000:]
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
