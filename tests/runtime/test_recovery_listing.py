"""The runtime's recovery must never die silently: a listing it cannot make is logged."""

from __future__ import annotations

from typing import Any

from perdure import MemoryEventLog, Runtime
from perdure.eventlog import RunInfo, StorageError


class BrokenListing(MemoryEventLog):
    async def list_runs(self, **filters: Any) -> list[RunInfo]:
        raise StorageError("the runs index cannot be read")


async def test_a_recovery_that_cannot_list_the_runs_says_so(logs: Any) -> None:
    async with Runtime(log=BrokenListing()) as rt:
        assert rt._recovery is not None
        await rt._recovery  # finished, not failed
    [entry] = logs.find("recovery could not list the unfinished runs; none was resumed")
    assert entry["log_level"] == "error" and "runs index cannot be read" in entry["error"]
