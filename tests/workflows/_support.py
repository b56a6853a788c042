"""Small helpers shared by the workflow tests: configs, call counters, log inspection."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from perdure import EventLog
from perdure.eventlog import Event


def cfg(thread_id: str) -> dict[str, Any]:
    """The functional API's config for a thread."""
    return {"configurable": {"thread_id": thread_id}}


class Calls:
    """Thread-safe counter of task/body executions (sync bodies run in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.order: list[str] = []

    def hit(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1
            self.order.append(key)

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def total(self) -> int:
        return sum(self.counts.values())


async def events_of(log: EventLog, run_id: str) -> list[Event]:
    return await log.read(run_id)


def names(events: list[Event]) -> list[str]:
    """Wire names of events, e.g. ["run_started", "task_attempt_started", ...]."""
    return [type(event).WIRE_NAME for event in events]


def of_type(events: list[Event], wire_name: str) -> list[Any]:
    return [event for event, name in zip(events, names(events), strict=True) if name == wire_name]
