"""Stopping background asyncio tasks for sure.

Every layer runs loops in background tasks (timers, lease watches, notices) and
stops them on close. A single ``task.cancel()`` is not always enough: on Python
3.11, ``asyncio.wait_for`` (psycopg's pool waits for a connection with it)
returns normally, dropping the cancellation, when what it waits for completes in
the same turn as the cancel (gh-86296). A loop whose cancellation was dropped runs
on, and a close that awaits it waits for ever. `cancel_and_wait` cancels again
until the task has really finished.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: How long to wait for a cancelled task before cancelling it again (seconds).
RECANCEL_AFTER = 0.05


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel `task` and return once it has finished, cancelling it again while it runs.

    An exception the task ended with (other than its cancellation) is raised here. If
    the caller itself is cancelled meanwhile, that cancellation propagates as usual.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_AFTER)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error
