"""On a test that hangs, write what its event loops are waiting for.

pytest-timeout's dump shows the threads, and a hung asyncio test shows only its loop
polling; this writes every pending asyncio task's stack (found through the garbage
collector, whatever loop runs it) to stderr a few seconds before the timeout fires.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading


def dump_pending_tasks(title: str) -> None:
    """Write the stack of every pending asyncio task in the process to stderr."""
    out = io.StringIO()
    out.write(f"\n===== pending asyncio tasks: {title} =====\n")
    for found in gc.get_objects():
        if isinstance(found, asyncio.Task) and not found.done():
            out.write(f"--- {found.get_name()} {found.get_coro()!r}\n")
            try:
                found.print_stack(limit=12, file=out)
            except Exception as exc:  # a diagnostic: never fail the run over it
                out.write(f"(no stack: {exc!r})\n")
    # sys.__stderr__: a test that redirects sys.stderr (the CLI helper does) must not
    # swallow the dump.
    stream = sys.__stderr__ or sys.stderr
    stream.write(out.getvalue())
    stream.flush()


class HangWatch:
    """A timer that dumps pending tasks if the test is still running after `seconds`."""

    def __init__(self, title: str, seconds: float) -> None:
        self._timer = threading.Timer(seconds, dump_pending_tasks, (title,))
        self._timer.daemon = True

    def __enter__(self) -> HangWatch:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
