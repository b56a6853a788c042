"""How the supervisor uses a log that leases runs (PostgreSQL's claim_run/release_run),
checked on an in-memory log that records the calls."""

from __future__ import annotations

import asyncio

import pytest

from perdure import FunctionContext, Runtime, function
from perdure.actors import Wake
from perdure.eventlog import LeaseLostError
from perdure.runtime import Registry
from perdure.testing import MemoryEventLog

REG = Registry()


@function(registry=REG)
async def leased_echo(ctx: FunctionContext, n: int) -> int:
    return n


class LeasingLog(MemoryEventLog):
    """A memory log with leases: claims are recorded; a release waits until let go."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[str] = []
        self.refuse: set[str] = set()
        self.releasing = asyncio.Event()
        self.go = asyncio.Event()

    async def claim_run(self, run_id: str) -> None:
        self.claims.append(run_id)
        if run_id in self.refuse:
            raise LeaseLostError(f"run {run_id!r} is driven by another process", run_id=run_id)

    async def release_run(self, run_id: str) -> None:
        self.releasing.set()
        await self.go.wait()


async def test_a_message_that_arrives_while_the_lease_is_released_gets_one_live_actor() -> None:
    log = LeasingLog()
    async with Runtime(log=log, registry=REG, idle_timeout=0.01) as rt:
        assert await rt.run("leased_echo", {"n": 1}, run_id="r") == 1
        await asyncio.wait_for(log.releasing.wait(), 10)  # the idle actor stopped
        supervisor = rt._supervisor
        assert supervisor is not None
        supervisor.post("r", Wake())  # arrives while the old incarnation gives the lease back
        log.go.set()
        for _ in range(20):
            await asyncio.sleep(0)
        cell = supervisor.cells.get("r")
        assert cell is not None and cell.task is not None, "the live actor lost its cell"
        assert log.claims == ["r", "r"]


async def test_a_refused_lease_stops_the_actor_and_fails_the_callers_here() -> None:
    log = LeasingLog()
    log.refuse.add("held")
    async with Runtime(log=log, registry=REG) as rt:
        with pytest.raises(LeaseLostError, match="driven by another process"):
            await asyncio.wait_for(rt.run("leased_echo", {"n": 2}, run_id="held"), 10)
        supervisor = rt._supervisor
        assert supervisor is not None
        assert supervisor.leases_lost == 1 and "held" not in supervisor.cells
        assert supervisor.restarts == 0 and supervisor.parked == 0  # stopped, not restarted
        assert await log.get_run("held") is None
