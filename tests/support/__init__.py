"""What the tests share: call counters, reading a run's log, waiting (one copy of each).

Import it as ``tests.support`` (pytest puts the repository root on ``sys.path``,
see ``pythonpath`` in pyproject.toml). The SIGKILL campaigns' harness is
`tests.support.kill_loop`; the CLI and gateway helpers are `tests.support.cli`
and `tests.support.gateway`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeVar

from perdure import EventLog, RunInfo
from perdure.eventlog import Event, TaskAttemptFailed, TaskAttemptStarted

E = TypeVar("E", bound=Event)


class Calls:
    """Thread-safe counter of body executions (sync bodies run in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        #: every key hit, in order
        self.order: list[str] = []

    def hit(self, key: str = "body") -> int:
        """Count one execution of `key`; return how many there were before (0 = first)."""
        with self._lock:
            before = self.counts[key]
            self.counts[key] += 1
            self.order.append(key)
            return before

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def total(self) -> int:
        return sum(self.counts.values())


def cfg(thread_id: Any) -> dict[str, Any]:
    """The functional API's config for a thread (any value: the bad-input tests pass odd ones)."""
    return {"configurable": {"thread_id": thread_id}}


def of_type(events: Iterable[Event], cls: type[E]) -> list[E]:
    """The events of one class, in log order."""
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise TypeError(f"of_type wants an event class, not {cls!r}")
    return [event for event in events if isinstance(event, cls)]


def names(events: Iterable[Event]) -> list[str]:
    """Wire names of events, e.g. ["run_started", "task_attempt_started", ...]."""
    return [type(event).WIRE_NAME for event in events]


async def events_of(log: EventLog, run_id: str) -> list[Event]:
    return await log.read(run_id)


async def only_run(log: EventLog) -> RunInfo:
    """The single run in `log` (fails the test if there is not exactly one)."""
    runs = await log.list_runs()
    assert len(runs) == 1, runs
    return runs[0]


async def retry_delays(log: EventLog, run_id: str) -> list[float]:
    """Seconds between each failed attempt and its scheduled retry, read from the log."""
    failed = of_type(await log.read(run_id), TaskAttemptFailed)
    return [round(e.next_retry_at - e.ts, 6) for e in failed if e.next_retry_at is not None]


async def attempt_numbers(log: EventLog, run_id: str) -> tuple[list[int], list[int]]:
    """(attempts started, attempts failed) of a run, in log order."""
    events = await log.read(run_id)
    started = [e.attempt for e in of_type(events, TaskAttemptStarted)]
    failed = [e.attempt for e in of_type(events, TaskAttemptFailed)]
    return started, failed


async def wait_for(predicate: Any, *, timeout: float = 5.0) -> None:
    """Poll an async predicate on the event loop until it holds (bounded real time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s: {predicate}")
        await asyncio.sleep(0.002)
