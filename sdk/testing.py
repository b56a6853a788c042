"""Test helpers: virtual time and an in-memory log.

`MockClock` makes backoff and durable sleeps take no real time; pass it as
``Runtime(clock=MockClock(), log=MemoryEventLog())``.
"""

from perdure.eventlog import MemoryEventLog
from perdure.runtime import MockClock

__all__ = ["MemoryEventLog", "MockClock"]
