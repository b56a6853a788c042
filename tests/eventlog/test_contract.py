"""The `EventLog` contract (`perdure.testing.contract`), run against the memory and LMDB logs.

An adapter passes when it behaves exactly like the others there; adapter
specifics (locking, map growth, corruption, group commit) live in
test_lmdb.py. The PostgreSQL log runs the same suite in tests/postgres/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perdure.eventlog import EventLog, LmdbEventLog, MemoryEventLog
from perdure.testing.contract import EventLogContract


class TestMemoryEventLog(EventLogContract):
    durable = False

    def open_log(self) -> EventLog:
        return MemoryEventLog()


class TestLmdbEventLog(EventLogContract):
    @pytest.fixture(autouse=True)
    def _store(self, tmp_path: Path) -> None:
        self.path = tmp_path / "store"

    def open_log(self) -> EventLog:
        return LmdbEventLog(self.path)
