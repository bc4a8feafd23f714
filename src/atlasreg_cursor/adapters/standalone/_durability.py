"""What about a Redis server would lose queued messages, with the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis


def durability_warnings(
    persistence: Mapping[str, Any], memory: Mapping[str, Any], save: str | None
) -> list[str]:
    """
    Judge a server by its ``INFO persistence``, ``INFO memory`` and ``save`` setting.

    Args:
        persistence: the ``INFO persistence`` section.
        memory: the ``INFO memory`` section.
        save: the ``save`` setting, ``None`` when ``CONFIG GET`` was refused.

    Returns:
        One sentence per problem; ``[]`` when the server keeps the queue.
    """
    warnings = []
    if not int(persistence.get("aof_enabled", 0)):
        if save == "":
            warnings.append(
                'Redis has no persistence (appendonly no, save ""): a restart loses every'
                " queued and in-flight message. Fix: appendonly yes and appendfsync"
                " always in redis.conf (or CONFIG SET appendonly yes, CONFIG SET"
                " appendfsync always)"
            )
        else:
            warnings.append(
                "Redis keeps the queue in RDB snapshots only (appendonly no): a crash"
                " loses what changed since the last snapshot. Fix: appendonly yes and"
                " appendfsync always in redis.conf (or CONFIG SET appendonly yes,"
                " CONFIG SET appendfsync always)"
            )
    policy = text(memory.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {policy}: under memory pressure it deletes keys,"
            " queued messages and their leases included. Fix: maxmemory-policy noeviction"
            " (CONFIG SET maxmemory-policy noeviction) and enough maxmemory"
        )
    return warnings


def text(value: Any) -> str:
    """Return a reply value as text (bytes decoded as UTF-8, lossily)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def server_settings(client: redis.Redis) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """
    Read what :func:`durability_warnings` judges: ``INFO persistence``, ``INFO memory``, ``save``.

    ``save`` is ``None`` where ``CONFIG GET`` is refused (managed servers often do).
    """
    persistence = dict(client.info("persistence"))
    memory = dict(client.info("memory"))
    try:
        raw: dict[Any, Any] = dict(client.config_get("save"))
    except redis.ResponseError:
        return persistence, memory, None
    value = raw.get("save", raw.get(b"save"))
    return persistence, memory, None if value is None else text(value)
