"""Settings: one frozen attrs class built with cattrs from the environment.

This is the only module that reads ``os.environ``. Every field's variable is
its name in upper case (``hook_endpoint`` ← ``HOOK_ENDPOINT``). An optional
``.env`` file, read with python-dotenv as Docker Compose reads one (comments,
inline comments, quotes, ``export``, ``${VAR}``), fills what the environment
does not set.
A bad value is a :class:`SettingsError` naming the variable; secrets never
appear in reprs, logs or error messages.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import attrs
import cattrs

from atlasreg_cursor.domain.redaction import redact_url as _redact_url

from .backends import BACKENDS, queue_backend
from .errors import SettingsError as SettingsError

Mode = Literal["local", "standalone", "cloudflare"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AirflowVersion = Literal["auto", "v1", "v2"]

MODE_DEFAULTS: dict[str, dict[str, str]] = {
    "local": {"queue": "sqlite", "config": "file", "storage": "file", "executor": "local"},
    "standalone": {"queue": "redis", "config": "file", "storage": "minio", "executor": "core"},
    "cloudflare": {"queue": "cloudflare", "config": "kv", "storage": "r2", "executor": "core"},
}
"""The backends each ``MODE`` implies; every name is one of :data:`.backends.BACKENDS`."""

_SECRET = {"secret": True}


def _secret(default: Any = None) -> Any:
    return attrs.field(default=default, repr=False, metadata=_SECRET)


def _url(default: Any = None) -> Any:
    """A URL setting: shown (in reprs and ``config show``) with its credentials hidden."""
    return attrs.field(default=default, repr=lambda v: repr(_redact_url(v) if v else v))


@attrs.frozen(kw_only=True)
class Settings:
    """Every setting of architecture §9 (documented in ``.env.example``)."""

    mode: Mode = "local"
    queue_backend: str | None = None
    config_backend: str | None = None
    storage_backend: str | None = None
    notifier_backend: str | None = None
    executor_backend: str | None = None

    cursor_home: Path = Path("var")
    watchlist_file: Path | None = None
    watchlist_key: str = "NEWS_WATCHLIST_CONFIG"
    config_ttl_seconds: float = 300.0
    queue_name: str = "ingest-queue"

    cf_api_endpoint: str = _url("https://api.cloudflare.com")
    cf_api_token: str | None = _secret()
    cf_account_id: str | None = None
    cf_queue_endpoint: str | None = _url(None)
    cf_kv_api_endpoint: str | None = _url(None)
    cf_kv_namespace_id: str | None = None
    cf_queue_id: str | None = None
    cf_dlq_queue_id: str | None = None

    r2_endpoint: str | None = _url(None)
    r2_access_key: str | None = _secret()
    r2_secret_key: str | None = _secret()
    r2_bucket_name: str = "atlasreg-gold"
    gold_bucket: str | None = None
    minio_endpoint: str | None = _url(None)
    minio_access_key: str | None = _secret()
    minio_secret_key: str | None = _secret()
    minio_secure: bool = False
    s3_create_bucket: bool = True

    hook_endpoint: str | None = _url(None)
    hook_hmac_secret: str | None = _secret()
    hook_hmac_additional_secrets: str | None = _secret()
    hook_standard_signature: bool = True
    hook_legacy_signature: bool = True
    hook_timeout_seconds: float = 15.0
    hook_attempts: int = 6

    database_url: str | None = _secret()
    redis_url: str = attrs.field(default="redis://127.0.0.1:6379/2", repr=False, metadata=_SECRET)
    celery_broker_url: str | None = _secret()
    celery_result_backend: str | None = _secret()
    celery_queue: str | None = None
    airflow_api_url: str | None = _url(None)
    airflow_username: str | None = None
    airflow_password: str | None = _secret()
    airflow_api_version: AirflowVersion = "auto"
    elasticsearch_url: str | None = _url(None)
    scrapy_project_path: Path | None = None
    allow_private_sources: bool = False
    core_tasks: str | None = None
    airflow_dags: str | None = None
    processing_concurrency: int = 16

    log_format: LogFormat = "json"
    log_level: LogLevel = "INFO"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    consumer_id: str | None = None

    # --- the crawl engine (Scrapy): politeness and the crawl process --------------
    crawl_max_per_host: int = 2
    crawl_obey_robots: bool = True
    crawl_download_delay: float = 0.0
    crawl_autothrottle: bool = False
    crawl_user_agent: str | None = None
    crawl_concurrent_requests: int = 32
    crawl_retry_times: int = 2
    crawl_idle_seconds: float = 120.0
    crawl_env_allow: str | None = None

    max_attempts: int = 5
    visibility_timeout_seconds: float | None = None
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    lease_seconds: float = 30.0
    poll_seconds: float = 5.0

    # --- operations: schedule, readiness, circuit breakers ---
    schedule: str | None = None
    schedule_tz: str = "America/Sao_Paulo"
    probe_interval_seconds: float = 15.0
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 60.0
    # --- reliability: outbox, sweeping, stopping, queue limits -----------------
    notify_max_age_hours: float = 72.0
    notify_retry_base_seconds: float = 10.0
    notify_retry_max_seconds: float = 600.0
    notify_scan_seconds: float = 10.0
    notify_workers: int = 4
    sweep_orphans: bool | None = None
    sweep_seconds: float = 10.0
    stop_grace_seconds: float = 8.0
    cf_queue_max_retries: int = 3

    def backend(self, port: str) -> str:
        """
        The backend for *port*: its override, else what ``MODE`` implies.

        For a port ``MODE`` does not decide (the notifier): the first backend
        of its table whose ``default_when`` holds (webhook with a
        ``HOOK_ENDPOINT``, else the outbox file).
        """
        override = getattr(self, f"{port}_backend")
        if override:
            return str(override)
        implied = MODE_DEFAULTS[self.mode].get(port)
        if implied is not None:
            return implied
        return next(name for name, b in BACKENDS[port].items() if b.default_when(self))

    @property
    def home(self) -> Path:
        """``CURSOR_HOME``, absolute."""
        return self.cursor_home.expanduser().resolve()

    @property
    def watchlist_path(self) -> Path:
        """The local watchlist file."""
        if self.watchlist_file is not None:
            return self.watchlist_file.expanduser()
        return self.home / "config" / "news_watchlist_config.json"

    @property
    def bucket(self) -> str:
        """``GOLD_BUCKET``, else ``R2_BUCKET_NAME``."""
        return self.gold_bucket or self.r2_bucket_name

    @property
    def core_task_names(self) -> tuple[str, ...] | None:
        """``CORE_TASKS``: the Celery tasks a source may name; ``None`` (unset) allows any."""
        return _listed(self.core_tasks)

    @property
    def airflow_dag_patterns(self) -> tuple[str, ...] | None:
        """``AIRFLOW_DAGS``: the DAG ids (shell-style patterns) a source may trigger."""
        return _listed(self.airflow_dags)

    @property
    def hook_secrets(self) -> tuple[str, ...]:
        """The primary secret then the rotation extras."""
        extra = [s.strip() for s in (self.hook_hmac_additional_secrets or "").split(",")]
        primary = (self.hook_hmac_secret,) if self.hook_hmac_secret else ()
        return (*primary, *(s for s in extra if s))

    def new_consumer_id(self) -> str:
        """
        Who a daemon is, for journal leases: ``CONSUMER_ID``, else a new unique id.

        ``<hostname>-<pid>-<random>``, with a fresh random part on every call:
        containers often share a fixed hostname and run as pid 1, and one
        process may hold two daemons, so the random part is what tells them
        apart. The composition root calls it once per App.
        """
        if self.consumer_id:
            return self.consumer_id
        return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"

    @property
    def visibility_seconds(self) -> float:
        """
        ``VISIBILITY_TIMEOUT_SECONDS``, else the queue's default.

        A queue whose leases the heartbeat extends (SQLite, Redis) gets a
        short one, so a crashed consumer's message comes back within about
        ``LEASE_SECONDS``; one that cannot (Cloudflare, over HTTP) needs a
        lease covering a whole run (30 minutes), and crashed runs are swept
        from their journals instead.
        """
        if self.visibility_timeout_seconds is not None:
            return self.visibility_timeout_seconds
        return self.lease_seconds if queue_backend(self).extends_leases else 1800.0

    @property
    def sweeps(self) -> bool:
        """``SWEEP_ORPHANS``, else on where the queue cannot extend a lease (Cloudflare)."""
        if self.sweep_orphans is not None:
            return self.sweep_orphans
        return not queue_backend(self).extends_leases

    def redacted(self) -> dict[str, Any]:
        """
        Every setting by variable name, for ``config show``.

        Secrets are ``***`` (a secret URL keeps its host: ``redis://:***@host``);
        every URL setting (``*_URL``, ``*_ENDPOINT``, ``CELERY_*``) has its
        user-info password and credential-like query parameters hidden.
        """
        out: dict[str, Any] = {}
        for field in attrs.fields(Settings):
            value = getattr(self, field.name)
            if field.metadata.get("secret") and value:
                value = redact_url(value) if "://" in str(value) else "***"
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[field.name.upper()] = str(value) if isinstance(value, Path) else value
        return out


def redact_url(url: str) -> str:
    """Hide the credentials of a URL (``redis://:pw@host`` → ``redis://:***@host``)."""
    return _redact_url(url)


def _listed(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated setting as its items; ``None`` when unset."""
    if value is None:
        return None
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(Path, lambda v, _: Path(str(v)))
    return conv


def read_env_file(path: Path) -> dict[str, str]:
    """
    Read a ``.env`` file as Docker Compose does (python-dotenv).

    ``#`` comments and inline comments (``MODE=local # the default``),
    single or double quotes, an ``export`` prefix, ``${VAR}`` expansion.

    Raises:
        SettingsError: a line is not ``KEY=VALUE`` (its number is named, not its text).
    """
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    text = path.read_text(encoding="utf-8")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise SettingsError(
                f"{path}:{binding.original.line}: expected NAME=value "
                "(a comment starts with #, a value with spaces needs quotes)"
            )
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {key: value for key, value in values.items() if value is not None}


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")
) -> Settings:
    """
    Build :class:`Settings` from *environ* (default ``os.environ``) and *env_file*.

    Raises:
        SettingsError: naming the variable whose value is wrong.
    """
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update(read_env_file(env_file))
    merged.update(env)
    known = {f.name.upper(): f for f in attrs.fields(Settings)}
    data = {
        known[name].name: value for name, value in merged.items() if name in known and value != ""
    }
    if "log_level" in data:  # any case, as logging itself takes it: info, Info, INFO
        data["log_level"] = data["log_level"].strip().upper()
    try:
        settings = _converter().structure(data, Settings)
    except cattrs.ClassValidationError as exc:
        raise SettingsError(_describe(exc, known)) from None
    _check(settings)
    return settings


def _describe(exc: cattrs.ClassValidationError, known: Mapping[str, Any]) -> str:
    hints = get_type_hints(Settings)
    problems = []
    for sub in exc.exceptions:
        note = getattr(sub, "__notes__", [""])
        field_name = note[0].split("attribute ")[-1].split(" ")[0] if note else ""
        name = field_name.strip("'\"").upper() if field_name else "?"
        field = known.get(name)
        if field is None:
            problems.append(f"{name}: {_message(sub)}")
        elif field.metadata.get("secret"):
            problems.append(f"{name}: invalid value")
        else:
            problems.append(f"{name}: {_expected(hints.get(field.name))}")
    return "invalid settings: " + "; ".join(problems)


def _expected(hint: Any) -> str:
    """What a field accepts, in plain words."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is Literal:
        return "must be one of: " + ", ".join(str(a) for a in args)
    if len(args) == 1:  # ``X | None``
        hint = args[0]
    if hint is bool:
        return "must be true or false (also yes/no, on/off, 1/0)"
    if hint is int:
        return "must be a whole number"
    if hint is float:
        return "must be a number"
    return "invalid value"


def _message(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
        return _message(exc.exceptions[0])
    return str(exc) or type(exc).__name__


def _check(settings: Settings) -> None:
    problems = []
    for port, table in BACKENDS.items():
        value = settings.backend(port)
        backend = table.get(value)
        if backend is None:
            problems.append(f"{port.upper()}_BACKEND: {value!r} is not one of {', '.join(table)}")
            continue
        problems += [
            f"{name.upper()}: required by the {value} {port}"
            for name in backend.requires
            if not getattr(settings, name)
        ]
    if problems:  # the checks below read the backends' capabilities
        raise SettingsError("invalid settings: " + "; ".join(problems))
    numbers = {
        "MAX_ATTEMPTS": settings.max_attempts >= 1,
        "VISIBILITY_TIMEOUT_SECONDS": 1 <= settings.visibility_seconds <= 43200,
        "LEASE_SECONDS": settings.lease_seconds >= 3,
        "NOTIFY_MAX_AGE_HOURS": settings.notify_max_age_hours > 0,
        "NOTIFY_RETRY_BASE_SECONDS": settings.notify_retry_base_seconds > 0,
        "NOTIFY_RETRY_MAX_SECONDS": settings.notify_retry_max_seconds > 0,
        "NOTIFY_SCAN_SECONDS": settings.notify_scan_seconds > 0,
        "NOTIFY_WORKERS": 1 <= settings.notify_workers <= 64,
        "SWEEP_SECONDS": settings.sweep_seconds > 0,
        "STOP_GRACE_SECONDS": settings.stop_grace_seconds >= 0,
        "CF_QUEUE_MAX_RETRIES": 1 <= settings.cf_queue_max_retries <= 100,
        "PROCESSING_CONCURRENCY": settings.processing_concurrency >= 1,
        "METRICS_PORT": 0 <= settings.metrics_port <= 65535,
        "HOOK_ATTEMPTS": settings.hook_attempts >= 1,
        "CONFIG_TTL_SECONDS": settings.config_ttl_seconds >= 0,
        "CRAWL_MAX_PER_HOST": 1 <= settings.crawl_max_per_host <= 16,
        "CRAWL_DOWNLOAD_DELAY": 0 <= settings.crawl_download_delay <= 60,
        "CRAWL_CONCURRENT_REQUESTS": 1 <= settings.crawl_concurrent_requests <= 512,
        "CRAWL_RETRY_TIMES": 0 <= settings.crawl_retry_times <= 10,
        "CRAWL_IDLE_SECONDS": 1 <= settings.crawl_idle_seconds <= 86400,
    }
    problems += [f"{name}: out of range" for name, ok in numbers.items() if not ok]
    problems += _check_operations(settings)
    for name in ("hook_endpoint", "airflow_api_url"):
        url = getattr(settings, name)
        if url and not url.startswith(("http://", "https://")):
            problems.append(f"{name.upper()}: must be an http(s) URL")
    problems += [
        f"{name}: list at least one name, comma-separated (unset allows any)"
        for name, listed in (
            ("CORE_TASKS", settings.core_task_names),
            ("AIRFLOW_DAGS", settings.airflow_dag_patterns),
        )
        if listed == ()
    ]
    agent = settings.crawl_user_agent
    if agent is not None and (len(agent) > 300 or any(not 32 <= ord(c) < 127 for c in agent)):
        problems.append("CRAWL_USER_AGENT: must be one line of printable ASCII (at most 300)")
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))


def _check_operations(settings: Settings) -> list[str]:
    """SCHEDULE, SCHEDULE_TZ, probe and breaker settings, in plain words."""
    from atlasreg_cursor.domain.cron import load_zone, parse_cron
    from atlasreg_cursor.domain.errors import InvalidSchedule

    problems = []
    try:
        load_zone(settings.schedule_tz)
    except InvalidSchedule as exc:
        problems.append(f"SCHEDULE_TZ: {exc}")
    if settings.schedule is not None:
        try:
            parse_cron(settings.schedule)
        except InvalidSchedule as exc:
            problems.append(f"SCHEDULE: {exc}")
    if not 1 <= settings.probe_interval_seconds <= 3600:
        problems.append("PROBE_INTERVAL_SECONDS: must be between 1 and 3600 seconds")
    if settings.breaker_fail_max < 1:
        problems.append("BREAKER_FAIL_MAX: must be a whole number of 1 or more")
    if not 1 <= settings.breaker_reset_seconds <= 86400:
        problems.append("BREAKER_RESET_SECONDS: must be between 1 and 86400 seconds")
    return problems
