"""Real Airflow stacks for tests: Airflow 3.3.2 (/api/v2) and 2.10.5 (/api/v1).

Each stack runs from its own venv, made by ``.ci/airflow.sh``:
``AIRFLOW3_VENV`` (default ``~/.cache/atlasreg-cursor/airflow-3.3.2``) and
``AIRFLOW2_VENV`` (default ``~/.cache/atlasreg-cursor/airflow-2.10.5``). A
missing venv skips locally and fails in CI.

- Airflow 3: ``api-server`` + ``scheduler --skip-serve-logs`` +
  ``dag-processor``; LocalExecutor with parallelism 2, SQLite, the simple
  auth manager with a pre-seeded passwords file and a fixed JWT secret.
- Airflow 2: ``webserver -w 1`` + ``scheduler --skip-serve-logs``;
  SequentialExecutor, SQLite, basic auth, an admin made with
  ``airflow users create``.

Both bind 127.0.0.1 on free ports (never 8793/8794), load the test DAGs of
``tests/fixtures/airflow_dags/<v3|v2>`` with new DAGs unpaused, start at most
once per session (whichever test module asks first) and are stopped by
process group at the end of the session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from .services import free_port, missing_service, wait_until

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "tests" / "fixtures" / "airflow_dags"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atlasreg-cursor"
TEST_DAG_IDS = ("atlasreg_success", "atlasreg_failing", "atlasreg_paused", "atlasreg_slow")
USERNAME = "admin"
PASSWORD = "admin-test-password"
JWT_SECRET = "atlasreg-test-jwt-secret-0123456789abcdef"
START_TIMEOUT = 240.0


@attrs.frozen(kw_only=True)
class AirflowStack:
    """A running Airflow: where it answers, how to log in, how long it took."""

    version: str
    api_version: str
    base_url: str
    username: str
    password: str = attrs.field(repr=False)
    jwt_secret: str = attrs.field(repr=False)
    home: Path
    start_seconds: float


_lock = threading.Lock()
_stacks: dict[str, AirflowStack] = {}
_procs: dict[str, list[subprocess.Popen[bytes]]] = {}


def _venv(kind: str) -> Path:
    if kind == "v3":
        return Path(os.environ.get("AIRFLOW3_VENV", CACHE / "airflow-3.3.2"))
    return Path(os.environ.get("AIRFLOW2_VENV", CACHE / "airflow-2.10.5"))


def _base_env(venv: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",
        }
    )
    return env


def _v3_env(venv: Path, home: Path, port: int) -> dict[str, str]:
    env = _base_env(venv, home)
    (home / "passwords.json").write_text(json.dumps({USERNAME: PASSWORD}))
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__API__SECRET_KEY": "atlasreg-test-secret-key-0123456789",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
    )
    return env


def _v2_env(venv: Path, home: Path, port: int) -> dict[str, str]:
    env = _base_env(venv, home)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
            "AIRFLOW__API__AUTH_BACKENDS": (
                "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session"
            ),
            "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(port),
            "AIRFLOW__WEBSERVER__WORKERS": "1",
            "AIRFLOW__WEBSERVER__SECRET_KEY": "atlasreg-test-secret-key-0123456789",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
        }
    )
    return env


def _run(cmd: list[str], env: dict[str, str], home: Path, name: str) -> None:
    log_path = home / f"{name}.log"
    with log_path.open("wb") as log_file:
        done = subprocess.run(
            cmd,
            env=env,
            cwd=home,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd[:3])} failed:\n{_tail(log_path)}")


def _spawn(cmd: list[str], env: dict[str, str], home: Path, name: str) -> subprocess.Popen[bytes]:
    with (home / f"{name}.log").open("wb") as log_file:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=home,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _v3_token(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": USERNAME, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["access_token"])


def _wait_ready(kind: str, base: str, procs: list[subprocess.Popen[bytes]], home: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT

    def alive() -> None:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            logs = "\n".join(f"--- {path.name}\n{_tail(path)}" for path in home.glob("*.log"))
            raise RuntimeError(f"an Airflow process exited early:\n{logs}")

    health = f"{base}/api/v2/monitor/health" if kind == "v3" else f"{base}/health"

    def healthy() -> bool:
        alive()
        return _status(health) == 200

    if not wait_until(healthy, timeout=deadline - time.monotonic(), interval=0.25):
        raise RuntimeError(f"Airflow {kind} did not become healthy in {START_TIMEOUT:.0f}s")
    if kind == "v3":
        headers = {"Authorization": f"Bearer {_v3_token(base)}"}
        api = f"{base}/api/v2"
    else:
        raw = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {raw}"}
        api = f"{base}/api/v1"

    def dags_parsed() -> bool:
        alive()
        return all(_status(f"{api}/dags/{dag_id}", headers) == 200 for dag_id in TEST_DAG_IDS)

    if not wait_until(dags_parsed, timeout=deadline - time.monotonic(), interval=0.5):
        raise RuntimeError(f"Airflow {kind} did not list the test DAGs in {START_TIMEOUT:.0f}s")


def _start(kind: str) -> AirflowStack:
    venv = _venv(kind)
    airflow = venv / "bin" / "airflow"
    if not airflow.exists():
        missing_service(
            f"Airflow {kind} venv at {venv} (run `bash .ci/airflow.sh`, or set "
            f"{'AIRFLOW3_VENV' if kind == 'v3' else 'AIRFLOW2_VENV'})"
        )
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix=f"airflow-{kind}-"))
    shutil.copytree(DAGS / kind, home / "dags")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = _v3_env(venv, home, port) if kind == "v3" else _v2_env(venv, home, port)
    _run([str(airflow), "db", "migrate"], env, home, "migrate")
    procs: list[subprocess.Popen[bytes]] = []
    _procs[kind] = procs
    if kind == "v3":
        procs.append(
            _spawn(
                [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port)],
                env,
                home,
                "api-server",
            )
        )
        procs.append(
            _spawn([str(airflow), "scheduler", "--skip-serve-logs"], env, home, "scheduler")
        )
        procs.append(_spawn([str(airflow), "dag-processor"], env, home, "dag-processor"))
    else:
        _run(
            [
                str(airflow),
                "users",
                "create",
                "--username",
                USERNAME,
                "--password",
                PASSWORD,
                "--firstname",
                "Atlas",
                "--lastname",
                "Reg",
                "--role",
                "Admin",
                "--email",
                "admin@example.invalid",
            ],
            env,
            home,
            "users",
        )
        procs.append(
            _spawn(
                [str(airflow), "webserver", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
                env,
                home,
                "webserver",
            )
        )
        procs.append(
            _spawn([str(airflow), "scheduler", "--skip-serve-logs"], env, home, "scheduler")
        )
    try:
        _wait_ready(kind, base, procs, home)
    except RuntimeError as exc:
        _stop(kind)
        pytest.fail(str(exc))
    return AirflowStack(
        version="3.3.2" if kind == "v3" else "2.10.5",
        api_version="v2" if kind == "v3" else "v1",
        base_url=base,
        username=USERNAME,
        password=PASSWORD,
        jwt_secret=JWT_SECRET if kind == "v3" else "",
        home=home,
        start_seconds=round(time.monotonic() - started, 1),
    )


def _stop(kind: str) -> None:
    procs = _procs.pop(kind, [])
    stack = _stacks.pop(kind, None)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the group left behind
        proc.wait(timeout=10)
    if stack is not None:
        shutil.rmtree(stack.home, ignore_errors=True)


def _shared(kind: str) -> Iterator[AirflowStack]:
    with _lock:
        stack = _stacks.get(kind)
        if stack is None:
            stack = _stacks[kind] = _start(kind)
            print(f"\nAirflow {stack.version} ready in {stack.start_seconds}s at {stack.base_url}")
    yield stack
    with _lock:
        _stop(kind)


@pytest.fixture(scope="session")
def airflow3() -> Iterator[AirflowStack]:
    """The session's Airflow 3.3.2 stack (/api/v2)."""
    yield from _shared("v3")


@pytest.fixture(scope="session")
def airflow2() -> Iterator[AirflowStack]:
    """The session's Airflow 2.10.5 stack (/api/v1)."""
    yield from _shared("v2")
