"""Where the `perdure` command line's output goes: results on stdout, errors and progress on stderr.

Human output is escaped (`safe_text`: untrusted ids and values never reach the
terminal raw) and, on a terminal, drawn with rich: tables that fit the width,
coloured statuses, progress bars. Colours only on a terminal, never with
``NO_COLOR`` set. Machine output (``--json``) is printed exactly, the same
bytes whether or not stdout is a terminal.

rich is imported when something is drawn on a terminal, never for ``--help``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from perdure.cli._text import safe_text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

USAGE = 2
FAILED = 1


class CliError(Exception):
    """A problem to report on stderr as one readable line, with the exit code to return."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = FAILED) -> NoReturn:
    raise CliError(message, code)


def out(*lines: str) -> None:
    """Human-readable lines to stdout, control characters escaped (see `safe_text`).

    Errors and progress go to stderr; exact output (``--json``) goes through
    `out_exact` or `out_json`.
    """
    for line in lines:
        print(safe_text(line))


def out_exact(*lines: str) -> None:
    """Lines printed exactly as given: machine-readable output (JSON) only."""
    for line in lines:
        print(line)


def out_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=repr))


def is_terminal(stream: Any = None) -> bool:
    """Whether `stream` (default: stdout) is a terminal to draw on with rich, as rich decides
    it (``FORCE_COLOR`` and ``TTY_COMPATIBLE=1`` count) — without importing rich for a pipe.

    False when rich cannot be imported: the plain output then serves terminals too.
    """
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    import os

    tty = (isatty is not None and isatty()) or os.environ.get("FORCE_COLOR")
    if not tty and os.environ.get("TTY_COMPATIBLE") != "1":
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def console(stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr): colours only on a terminal, none
    with ``NO_COLOR``; markup and emoji codes off, so a value like ``[red]x[/red]`` prints
    as it is."""
    from rich.console import Console

    return Console(
        file=sys.stderr if stderr else sys.stdout,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
    )


def show(*items: RenderableType) -> None:
    """Print rich renderables (tables, styled texts) to stdout. Build their texts with
    `rich.text.Text` from `safe_text` values: never from markup strings."""
    screen = console()
    for item in items:
        screen.print(item)


class Progress:
    """A progress bar on stderr for a long operation, only when stderr is a terminal.

    Call it with ``(done, total)``; `note` shows a line of text instead; `done` removes it.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._task: Any = None
        self._live = is_terminal(sys.stderr)

    def _start(self, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task(safe_text(self.label), total=total)
        self._bar.start()

    def __call__(self, done: int, total: int) -> None:
        if not self._live:
            return
        if self._bar is None:
            self._start(total)
        self._bar.update(self._task, completed=done, total=total)

    def note(self, text: str) -> None:
        if not self._live:
            return
        if self._bar is None:
            self._start(None)
        self._bar.update(self._task, description=safe_text(text))

    def done(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
