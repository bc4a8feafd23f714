"""The Redis queue's Lua scripts: package data under ``lua/``, read once.

Each state change of the queue is one script (``lua/<name>.lua``, whose
header says what KEYS and ARGV it takes and what it returns). The scripts
that check a lease start with ``lua/prelude.lua`` (server time, ``lease``).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import attrs
import redis
from redis.commands.core import Script

from atlasreg_cursor.ports.queue import Delivery

#: Scripts that begin with the prelude.
_WITH_PRELUDE = frozenset({"receive", "ack", "retry", "dead_letter", "extend"})


@functools.cache
def script_source(name: str) -> str:
    """
    Return the Lua source of script *name*, prelude included where it needs one.

    Raises:
        FileNotFoundError: no ``lua/<name>.lua`` ships with the package.
    """
    text = resources.files(__package__ or __name__).joinpath("lua", f"{name}.lua")
    source = text.read_text(encoding="utf-8")
    if name in _WITH_PRELUDE:
        return script_source("prelude") + source
    return source


@attrs.frozen
class QueueScripts:
    """The queue's scripts registered on one client (``EVALSHA``, loaded on first use)."""

    receive: Script
    ack: Script
    retry: Script
    dead_letter: Script
    extend: Script
    send: Script
    replay_dead: Script
    purge_dead: Script

    @classmethod
    def register(cls, client: redis.Redis) -> QueueScripts:
        """Register every script on *client*."""
        scripts = {
            field.name: client.register_script(script_source(field.name))
            for field in attrs.fields(cls)
        }
        return cls(**scripts)


def leased_from(reply: list[Any]) -> tuple[int, list[Delivery]]:
    """Return the wait (ms, -1 for none) and the deliveries of a ``receive`` reply."""
    deliveries = [
        Delivery(
            queue_message_id=reply[i].decode("ascii"),
            body=bytes(reply[i + 1]),
            attempts=int(reply[i + 2]),
            lease_token=reply[i + 3].decode("ascii"),
            identity_from_queue=False,
        )
        for i in range(1, len(reply), 4)
    ]
    return int(reply[0]), deliveries
