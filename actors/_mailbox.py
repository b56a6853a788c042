"""An actor's mailbox: a deque and at most one waiting reader.

`asyncio.Queue` does more than an actor needs (bounded size, several getters,
`join()` bookkeeping on every put); a run's mailbox has one consumer, its
actor, and is written from the event loop's thread only. This is the part of
the per-message cost that every task step pays twice.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Mailbox:
    """FIFO of messages for one run; `get` is awaited by one actor at a time."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, message: Any) -> None:
        self._items.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put_back(self, messages: list[Any]) -> None:
        """Return taken `messages` to the front, in order (their actor crashed before them)."""
        self._items.extendleft(reversed(messages))
        waiter = self._waiter
        if messages and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Any:
        """The oldest message; `asyncio.QueueEmpty` if there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> Any:
        """The oldest message, waiting for one if need be."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.popleft()
