"""The crawl process's environment: allow-listed variables, none of the Cursor's secrets."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .wire import PARENT_PID_ENV

#: Variables the crawler process inherits (plus ``LC_*`` and ``CRAWL_ENV_ALLOW``).
ENV_ALLOW = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "SCRAPY_SETTINGS_MODULE",
        "SCRAPY_PROJECT",
    }
)


def crawl_environment(
    extra_names: Iterable[str] = (), extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """
    The crawler's environment: allow-listed variables only, plus *extra*.

    Secrets of the Cursor (``HOOK_HMAC_SECRET``, ``CF_API_TOKEN``, storage
    keys, ``DATABASE_URL``, …) are never passed; *extra_names*
    (``CRAWL_ENV_ALLOW``) lets a project spider get the variables it needs.
    The package's root is put on ``PYTHONPATH`` and the parent's pid in
    ``ATLASREG_CRAWL_PARENT``.

    Proxy variables (``*_PROXY``, ``NO_PROXY``, any case) are never passed,
    not even through *extra_names* or *extra*: Scrapy would send requests to
    the proxy, which resolves names itself and so defeats the connection to
    the vetted address.
    """
    allowed = ENV_ALLOW | frozenset(n.strip() for n in extra_names if n.strip())
    env = {k: v for k, v in os.environ.items() if k in allowed or k.startswith("LC_")}
    env.update(extra or {})
    for name in [k for k in env if _is_proxy_variable(k)]:
        del env[name]
    # <root>/atlasreg_cursor/adapters/core/crawl_process/environment.py
    package_root = str(Path(__file__).resolve().parents[4])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, package_root])
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def _is_proxy_variable(name: str) -> bool:
    return name.upper().endswith("_PROXY")
