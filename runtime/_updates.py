"""A run's updates as they happen: typed records and the `Subscription` that delivers them.

``runtime.subscribe(run_id)`` (before starting or resuming the run) returns a
`Subscription`; it receives, in order:

- `Committed`: events the run made durable (a task finished, an interrupt, ...);
- `Custom`: an item a workflow body gave its ``writer``;
- `Settled`: the run's outcome when it stops (finished, failed, paused on an interrupt);
- `Closed`: the run cannot go on here (parked, or the runtime closed); last.

Iterating a subscription (``async for update in sub``) ends after a `Settled` or
a `Closed`; `get` takes one update at a time and never ends the stream itself.
Close a subscription when done (``with runtime.subscribe(run_id) as sub:``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, TypeAlias

import attrs

from perdure.eventlog import Event
from perdure.runtime._outcome import Outcome


@attrs.frozen
class Committed:
    """Events of the run that are durable now, in log order."""

    run_id: str
    events: tuple[Event, ...]


@attrs.frozen
class Custom:
    """An item the workflow body gave its ``writer`` (not stored)."""

    run_id: str
    item: Any


@attrs.frozen
class Settled:
    """The run stopped: completed, failed, cancelled, parked, or paused on interrupts."""

    run_id: str
    outcome: Outcome

    @property
    def interrupted(self) -> bool:
        """True when the run waits for an answer (``outcome.interrupts`` holds the questions)."""
        return self.outcome.status == "waiting"


@attrs.frozen
class Closed:
    """Nothing more comes: the run cannot go on here, or the runtime closed. `error` says why."""

    run_id: str
    error: BaseException


Update: TypeAlias = Committed | Custom | Settled | Closed


class Subscription:
    """The updates of one run, from when it was made until `close` (see the module docstring).

    Made by `Runtime.subscribe`; not made directly.
    """

    def __init__(self, run_id: str, on_close: Callable[[Subscription], None]) -> None:
        self.run_id = run_id
        self._queue: asyncio.Queue[Update] = asyncio.Queue()
        self._on_close: Callable[[Subscription], None] | None = on_close
        #: Updates delivered to this subscription so far (taken or not).
        self.received = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Subscription(run_id={self.run_id!r}, {state}, received={self.received})"

    def add(self, update: Update) -> None:
        """Deliver `update` after those already received.

        The runtime delivers the run's own updates; a caller may add one it learned
        otherwise (the `Settled` outcome a concurrent `Runtime.wait` returned).
        """
        self.received += 1
        self._queue.put_nowait(update)

    async def get(self, timeout: float | None = None) -> Update:
        """The next update, waiting for it (a `TimeoutError` after `timeout` seconds)."""
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout)

    def __aiter__(self) -> AsyncIterator[Update]:
        return self._updates()

    async def _updates(self) -> AsyncIterator[Update]:
        while True:
            update = await self._queue.get()
            yield update
            if type(update) is Settled or type(update) is Closed:
                return

    @property
    def closed(self) -> bool:
        return self._on_close is None

    def close(self) -> None:
        """Stop receiving updates (closing twice is fine)."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
