"""Helpers shared by the function tests: call counters, gates, and reading a run's log."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from perdure import EventLog, RunInfo
from perdure.eventlog import Event, TaskAttemptFailed, TaskAttemptStarted


class Calls:
    """Thread-safe counter of body executions (sync functions run in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def hit(self, key: str = "body") -> int:
        """Count one execution of `key`; return how many there were before (0 = first)."""
        with self._lock:
            before = self.counts[key]
            self.counts[key] += 1
            return before

    def __getitem__(self, key: str) -> int:
        return self.counts[key]


async def only_run(log: EventLog) -> RunInfo:
    """The single run in `log` (fails the test if there is not exactly one)."""
    runs = await log.list_runs()
    assert len(runs) == 1, runs
    return runs[0]


def of_type(events: list[Event], cls: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, cls)]


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
