"""Watchlist commands: ``config show|validate|push`` and ``schedule show``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import structlog

from atlasreg_cursor.domain.errors import CursorError, InvalidConfig
from atlasreg_cursor.domain.redaction import redact_url
from atlasreg_cursor.domain.sources import WatchlistConfig, parse_watchlist_bytes
from atlasreg_cursor.entrypoints.backends import BACKENDS, config_backend
from atlasreg_cursor.entrypoints.bootstrap import build, known_handlers
from atlasreg_cursor.entrypoints.output import EXIT_FAILED, EXIT_OK, fail, print_json, print_rows
from atlasreg_cursor.entrypoints.settings import Settings
from atlasreg_cursor.entrypoints.startup import watchlist_warnings

log = structlog.get_logger()


@runtime_checkable
class _ValueWriter(Protocol):
    """A config source that can also store a value (the KV one)."""

    def put_value(self, key: str, value: bytes) -> None: ...


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    """``config show``: the settings (secrets redacted) and the watchlist."""
    try:
        with build(settings) as app:
            config = app.config.load()
    except CursorError as exc:
        print_json({"settings": settings.redacted(), "watchlist_error": str(exc)})
        return fail(f"watchlist: {type(exc).__name__}: {exc}")
    print_json(
        {
            "settings": settings.redacted(),
            "backends": {port: settings.backend(port) for port in BACKENDS},
            "sources": [
                {
                    "id": s.id,
                    "handler_id": s.handler_id,
                    "enabled": s.enabled,
                    "url_feed": redact_url(s.url_feed) if s.url_feed else None,
                    "schedule": s.schedule,
                }
                for s in config.sources
            ],
            "invalid_sources": [
                {"index": b.index, "id": b.source_id, "reason": b.reason} for b in config.invalid
            ],
            "global_settings": {
                "max_concurrent_sources": config.global_settings.max_concurrent_sources,
                "processing_timeout_minutes": config.global_settings.processing_timeout_minutes,
                "alert_on_zero_results": config.global_settings.alert_on_zero_results,
                "alert_recipients": list(config.global_settings.alert_recipients),
            },
        }
    )
    return EXIT_OK


def cmd_config_validate(settings: Settings, args: argparse.Namespace) -> int:
    """``config validate [FILE]``: the settings loaded; now the watchlist (or FILE)."""
    if getattr(args, "file", None):
        return _config_validate_file(settings, args.file)
    try:
        with build(settings) as app:
            config = app.config.load()
    except CursorError as exc:
        return fail(f"watchlist: {type(exc).__name__}: {exc}")
    return _report_watchlist(settings, config)


def _report_watchlist(settings: Settings, config: WatchlistConfig) -> int:
    enabled = sum(1 for s in config.sources if s.enabled)
    print(f"{len(config.sources)} valid sources ({enabled} enabled), {len(config.invalid)} invalid")
    for bad in config.invalid:
        print(f"  invalid sources[{bad.index}] {bad.source_id or '?'}: {bad.reason}")
    for warning in watchlist_warnings(settings, config):
        print(f"  warning: {warning}")
    return EXIT_FAILED if config.invalid else EXIT_OK


def _config_validate_file(settings: Settings, file: str) -> int:
    """``config validate FILE``: check a watchlist file without installing it."""
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        return fail(f"watchlist {file}: cannot be read: {exc.strerror or exc}")
    try:
        config = parse_watchlist_bytes(raw, known_handlers=known_handlers(settings))
    except InvalidConfig as exc:
        return fail(f"watchlist {file}: {type(exc).__name__}: {exc}")
    return _report_watchlist(settings, config)


def cmd_config_push(settings: Settings, args: argparse.Namespace) -> int:
    """Validate a watchlist file, then write it where the config backend reads it."""
    raw = Path(args.file).read_bytes()
    config = parse_watchlist_bytes(raw, known_handlers=known_handlers(settings))
    for bad in config.invalid:
        print(
            f"  invalid sources[{bad.index}] {bad.source_id or '?'}: {bad.reason}", file=sys.stderr
        )
    for warning in watchlist_warnings(settings, config):
        print(f"  warning: {warning}", file=sys.stderr)
    if config.invalid and not args.allow_invalid_sources:
        return fail("not installed: fix the invalid sources or pass --allow-invalid-sources")
    if config_backend(settings).writable:
        with build(settings) as app:
            target = app.config
            if not isinstance(target, _ValueWriter):
                return fail(f"the {type(target).__name__} config source cannot store a watchlist")
            target.put_value(settings.watchlist_key, raw)
        where = f"KV key {settings.watchlist_key}"
    else:
        path = settings.watchlist_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(path)
        where = str(path)
    print_json({"installed": where, "sources": len(config.sources), "invalid": len(config.invalid)})
    return EXIT_OK


def cmd_schedule_show(settings: Settings, args: argparse.Namespace) -> int:
    """``schedule show``: the next global slots and each source's own."""
    from atlasreg_cursor.entrypoints.scheduler import schedule_rows

    try:
        with build(settings) as app:
            watchlist: WatchlistConfig | None = app.config.load()
    except CursorError as exc:
        log.warning("schedule.watchlist_unavailable", error=str(exc))
        watchlist = None
    rows = schedule_rows(settings, watchlist, count=args.count)
    if not rows:
        print("SCHEDULE is not set: nothing is enqueued on a schedule", file=sys.stderr)
    print_rows(rows, columns=("slot", "local_time", "date", "sources"), fmt=args.output)
    return EXIT_OK
