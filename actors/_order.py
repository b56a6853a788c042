"""Replayed outcomes in their live order: what lets a race replay with the winner it had live.

Each step records what the code had seen when it asked for it (`seen_seq`:
every event before that seq had been handed to it). On re-execution, an
outcome recorded at seq S is held back until the code has asked again for
every step it had asked for without seeing S; only then did the live code
see it. Sequential code never waits here (each step was asked for after the
previous outcome was seen); tasks started together, and races between a task
and a durable sleep, get their outcomes in the order the live code saw them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from perdure.actors._state import RunState

UNSEEN = 1 << 62  # a step with no recorded `seen_seq` (an older log) holds nothing back
#: Seconds a scope may hold outcomes back without asking for a step (see `Holdback.hold`).
STUCK_AFTER = 0.05


class Holdback:
    """The outcomes one body execution holds back, and when each is due."""

    __slots__ = ("_counter", "_later", "_loop", "_state", "held")

    def __init__(
        self, state: RunState, loop: asyncio.AbstractEventLoop, counter: Callable[[], int]
    ) -> None:
        self._state = state
        self._loop = loop
        #: how many steps the code has asked for so far in this execution
        self._counter = counter
        #: held-back outcomes: (settled seq, hand it out), in the order they were held
        self.held: list[tuple[int, Callable[[], None]]] = []
        #: built on first use: for each top-level position i, the least `seen_seq` of the
        #: recorded steps at i or after (what the code had seen before asking for them)
        self._later: list[int] | None = None

    def due(self, settled_seq: int) -> bool:
        """Whether the code has asked again for every step it asked for before it saw
        the outcome recorded at `settled_seq` (so handing it out now is what it saw live)."""
        later = self._later
        if later is None:
            seen = {
                int(position): step.seen_seq
                for position, step in self._state.steps.items()
                if step.seen_seq >= 0 and position.isdigit()
            }
            later = [UNSEEN] * (max(seen, default=-1) + 2)
            for index in range(len(later) - 2, -1, -1):
                later[index] = min(later[index + 1], seen.get(index, UNSEEN))
            self._later = later
        counter = self._counter()
        return counter >= len(later) or later[counter] > settled_seq

    def hold(self, settled_seq: int, release: Callable[[], None]) -> None:
        """Hand an outcome out once `due` (at a later step of the scope).

        Code that changed since the log may never ask for the steps an outcome is
        held for; if the scope asks for nothing for `STUCK_AFTER` seconds while
        outcomes are held, they are all handed out rather than wait forever.
        """
        if not self.held:
            self._loop.call_later(STUCK_AFTER, self._unstick, self._counter())
        self.held.append((settled_seq, release))

    def _unstick(self, counter: int) -> None:
        if not self.held:
            return
        if counter == self._counter():
            self.release_until(UNSEEN)
        else:
            self._loop.call_later(STUCK_AFTER, self._unstick, self._counter())

    def release_until(self, settled_seq: int) -> None:
        """Hand out every held outcome settled up to `settled_seq`, in order."""
        ready = [entry for entry in self.held if entry[0] <= settled_seq]
        self.held = [entry for entry in self.held if entry[0] > settled_seq]
        for _, release in sorted(ready, key=lambda entry: entry[0]):
            release()

    def release_due(self) -> None:
        """Hand out the held outcomes that are due now (the scope asked for another step)."""
        ready = [entry for entry in self.held if self.due(entry[0])]
        if ready:
            self.held = [entry for entry in self.held if entry not in ready]
            for _, release in sorted(ready, key=lambda entry: entry[0]):
                release()
