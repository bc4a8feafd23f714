"""Calls run on a few daemon threads and waited for a bounded time.

A ``ThreadPoolExecutor``'s workers are joined at interpreter exit, so one
call that ignores cancellation holds the process up. These threads are
daemon threads, as the source runner's are (architecture §5): a call still
running when the wait ends is left behind, and never keeps the process
alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen
class Finished(Generic[T]):
    """What one call gave: its value, or the exception it raised."""

    value: T | None = None
    error: Exception | None = None


def run_bounded(
    calls: Sequence[Callable[[], T]], *, workers: int, timeout: float, name: str
) -> tuple[dict[int, Finished[T]], list[int]]:
    """
    Run *calls* on at most *workers* daemon threads; wait up to *timeout* seconds.

    Returns:
        What each call that finished gave, by its index in *calls*, and the
        indexes of the others: still running (left to end on their own) or
        never started (they will not start).
    """
    todo = list(range(len(calls)))
    finished: dict[int, Finished[T]] = {}
    changed = threading.Condition()
    over = threading.Event()

    def work() -> None:
        while True:
            with changed:
                if over.is_set() or not todo:
                    return
                index = todo.pop(0)
            try:
                outcome: Finished[T] = Finished(value=calls[index]())
            except Exception as exc:  # handed to the caller, as a future would
                outcome = Finished(error=exc)
            with changed:
                finished[index] = outcome
                changed.notify_all()

    for number in range(min(workers, len(calls))):
        threading.Thread(target=work, name=f"{name}-{number}", daemon=True).start()
    deadline = time.monotonic() + timeout
    with changed:
        while len(finished) < len(calls):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            changed.wait(left)
        over.set()
        done = dict(finished)
    return done, [index for index in range(len(calls)) if index not in done]
