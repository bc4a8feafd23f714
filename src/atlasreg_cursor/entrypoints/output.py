"""What the CLI prints and the codes it exits with, shared by every command.

Exit codes: 0 success, 1 the job failed, 2 bad usage or settings,
3 a transient failure (retry later), 130 interrupted, 141 the reader of
stdout went away (``atlasreg-cursor config show | head``).

``--help`` imports this module before anything else: it imports only what
an interpreter has already loaded (``json`` is imported where it is used,
``typing`` only for the type checker).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType
    from typing import Any, Literal, TextIO

    OutputFormat = Literal["json", "table"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TRANSIENT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141

FORMATS: tuple[OutputFormat, ...] = ("json", "table")


def print_json(data: Any, *, stream: TextIO | None = None) -> None:
    """Print *data* as indented JSON on stdout."""
    import json

    print(json.dumps(data, indent=2, ensure_ascii=False, default=str), file=stream or sys.stdout)


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str],
    fmt: OutputFormat = "json",
    stream: TextIO | None = None,
) -> None:
    """
    Print *rows* as JSON (the full rows) or as an aligned table of *columns*.

    Args:
        rows: one mapping per row.
        columns: the keys shown, in order, as table columns.
        fmt: ``json`` (default, for scripts) or ``table`` (for people).
    """
    out = stream or sys.stdout
    if fmt == "json":
        print_json(list(rows), stream=out)
        return
    print(format_table(rows, columns), file=out)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned text table: a header of upper-cased *columns*, one line per row."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max([len(header[i]), *(len(r[i]) for r in cells)]) for i in range(len(columns))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False, default=str)
    return " ".join(str(value).split())


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print ``atlasreg-cursor: message`` on stderr; return *code*."""
    print(f"atlasreg-cursor: {message}", file=sys.stderr)
    return code


def confirm(question: str, *, assume_yes: bool) -> bool | None:
    """
    Ask *question* on the terminal; ``None`` when nobody can answer.

    Returns ``True`` at once with *assume_yes*; without a terminal on stdin
    (a script, CI) and without *assume_yes* it returns ``None``: the caller
    refuses rather than guessing.
    """
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return None
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


class quiet_broken_pipe:
    """
    Turn a closed stdout (``| head``) into a quiet exit instead of a traceback.

    ``with quiet_broken_pipe() as closed:`` gives a list; it holds
    :data:`EXIT_PIPE_CLOSED` when the pipe closed, so the caller returns
    that code.
    """

    def __init__(self) -> None:
        self.closed: list[int] = []

    def __enter__(self) -> list[int]:
        return self.closed

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            if kind is None:
                sys.stdout.flush()
        except BrokenPipeError:
            kind = BrokenPipeError
        if kind is None or not issubclass(kind, BrokenPipeError):
            return False
        import contextlib

        # Point stdout at /dev/null so the interpreter's final flush is silent too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        self.closed.append(EXIT_PIPE_CLOSED)
        return True
