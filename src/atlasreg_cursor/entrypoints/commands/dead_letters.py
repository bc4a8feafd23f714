"""Dead-letter commands: ``dlq list|replay|purge`` on a queue that keeps its dead letters."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from atlasreg_cursor.entrypoints.bootstrap import build
from atlasreg_cursor.entrypoints.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    confirm,
    fail,
    print_json,
    print_rows,
)
from atlasreg_cursor.entrypoints.settings import Settings
from atlasreg_cursor.ports import DeadLetterBox


@contextlib.contextmanager
def _dead_letter_box(settings: Settings) -> Iterator[DeadLetterBox | None]:
    """The queue's dead letters (``None``, said on stderr, when it keeps none); closed after."""
    with build(settings) as app:
        box = app.dead_letters
        if box is None:
            fail(f"the {settings.backend('queue')} queue does not keep dead letters locally")
        yield box


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq list``: dead letters with their reasons."""
    with _dead_letter_box(settings) as box:
        if box is None:
            return EXIT_USAGE
        rows = [
            {
                "queue_message_id": d.queue_message_id,
                "reason": d.reason,
                "attempts": d.attempts,
                "dead_at": d.dead_at,
                "body": d.body.decode("utf-8", "replace"),
            }
            for d in box.list_dead(args.limit)
        ]
        print_rows(
            rows, columns=("queue_message_id", "attempts", "dead_at", "reason"), fmt=args.output
        )
        return EXIT_OK


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq replay QUEUE_MESSAGE_ID``: back onto the queue."""
    with _dead_letter_box(settings) as box:
        if box is None:
            return EXIT_USAGE
        ok = box.replay_dead(args.queue_message_id)
        print_json({"replayed": ok, "queue_message_id": args.queue_message_id})
        return EXIT_OK if ok else EXIT_FAILED


def cmd_dlq_purge(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq purge``: asks on a terminal; a script must pass ``--yes``."""
    with _dead_letter_box(settings) as box:
        if box is None:
            return EXIT_USAGE
        count = len(box.list_dead(100_000))
        answer = confirm(f"delete {count} dead letters for good?", assume_yes=args.yes)
        if answer is None:
            return fail("dlq purge deletes for good: pass --yes (no terminal to ask)", EXIT_USAGE)
        if not answer:
            print("nothing deleted", file=sys.stderr)
            return EXIT_FAILED
        print_json({"purged": box.purge_dead()})
        return EXIT_OK
