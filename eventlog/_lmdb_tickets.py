"""How callers wait for the LMDB writer: tickets, queued appends, and settling them.

A caller's append travels to the writer thread as a `PendingAppend` carrying a
`Ticket` (its loop and a future); the writer hands outcomes back with
`loop.call_soon_threadsafe(settle, ...)`. `ResizeGuard` keeps map growth
(which needs no open transaction in the process) apart from reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs

from perdure.eventlog._events import Event
from perdure.eventlog._protocol import RunStatus

#: Appenders woken per event-loop iteration when a batch settles (see `settle`).
SETTLE_CHUNK = 64


class ResizeGuard:
    """Keeps `set_mapsize` (which needs no open transaction in the process) apart from reads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def resizing(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


@attrs.define(slots=True, eq=False)
class Ticket:
    """Where to report an outcome: a future on the loop that waits for it.

    `on_durable`, if set, runs (in `context`) the moment the outcome is known to
    be success, before the waiting task is even woken (see `EventLog.append`).
    """

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    on_durable: Callable[[], None] | None = None
    context: contextvars.Context | None = None


@attrs.define(slots=True, eq=False)
class PendingAppend:
    """One append (already through `check_batch`), waiting for the writer."""

    ticket: Ticket
    run_id: str
    expected_seq: int
    events: tuple[Event, ...]
    status: RunStatus | None


@attrs.define(slots=True, eq=False)
class Barrier:
    """Resolved once everything queued before it is committed (used by `close`)."""

    ticket: Ticket


def release(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def settle(settled: list[tuple[Ticket, BaseException | None]]) -> None:
    """Runs on the caller's loop: hand each waiting append its outcome.

    A big batch wakes its appenders `SETTLE_CHUNK` at a time, one chunk per
    loop iteration, so other callbacks (timers, I/O) run in between instead
    of waiting behind a thousand resumed tasks.
    """
    for ticket, outcome in settled[:SETTLE_CHUNK]:
        future = ticket.future
        if future.done():  # the caller was cancelled; the outcome stands regardless
            continue
        error = outcome
        if error is None and ticket.on_durable is not None:
            try:
                if ticket.context is not None:
                    ticket.context.run(ticket.on_durable)
                else:
                    ticket.on_durable()
            except BaseException as exc:  # the append raises it; the batch stays durable
                error = exc
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    if len(settled) > SETTLE_CHUNK:
        settled[0][0].loop.call_soon(settle, settled[SETTLE_CHUNK:])
