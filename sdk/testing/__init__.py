"""Test helpers: virtual time, an in-memory log, and a log that injects storage faults.

`MockClock` makes backoff and durable sleeps take no real time; pass it as
``Runtime(clock=MockClock(), log=MemoryEventLog())``. `FaultyEventLog` wraps a
log and fails chosen operations (`Fault`), to test how code copes with a
failing store.
"""

from perdure._faults import Fault, FaultyEventLog, InjectedRecord, InjectedStorageError
from perdure.eventlog import MemoryEventLog
from perdure.runtime import MockClock

__all__ = [
    "Fault",
    "FaultyEventLog",
    "InjectedRecord",
    "InjectedStorageError",
    "MemoryEventLog",
    "MockClock",
]
