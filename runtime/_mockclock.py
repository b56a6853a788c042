"""`MockClock`: virtual time for tests; with autojump, time leaps to the next timer when idle.

Idle means nothing read the clock or started waiting on it for two
consecutive `autojump_threshold` windows of real time. Everything in perdure
that takes time (backoff, durable sleep) waits through the clock, so a test of
an 8-second backoff takes milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class MockClock:
    """A virtual clock. `advance(seconds)` moves it by hand; autojump moves it when idle."""

    def __init__(
        self,
        start: float = 1_700_000_000.0,
        *,
        autojump: bool = True,
        autojump_threshold: float = 0.002,
    ) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._activity = 0
        self.autojump = autojump
        self.autojump_threshold = autojump_threshold
        self._jumper: asyncio.Task[None] | None = None
        self.jumps = 0

    def now(self) -> float:
        self._activity += 1
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper now due."""
        if seconds < 0:
            raise ValueError("MockClock cannot go backwards")
        self._now += seconds
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def sleep_until(self, deadline: float) -> None:
        self._activity += 1
        if deadline <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), fut))
        if self.autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = asyncio.get_running_loop().create_task(self._autojump())
        await fut

    async def _autojump(self) -> None:
        while True:
            self._sleepers = [entry for entry in self._sleepers if not entry[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers:
                return
            seen = self._activity
            await asyncio.sleep(self.autojump_threshold)
            await asyncio.sleep(self.autojump_threshold)
            live = [entry for entry in self._sleepers if not entry[2].done()]
            if self._activity == seen and live:
                target = min(entry[0] for entry in live)
                if target > self._now:
                    self._now = target
                    self.jumps += 1
                self._wake_due()
