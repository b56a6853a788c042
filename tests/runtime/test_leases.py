"""How the supervisor uses a log that leases runs (PostgreSQL's claim_run/release_run),
checked on an in-memory log that records the calls."""

from __future__ import annotations

import asyncio

import pytest

from perdure import FunctionContext, Runtime, entrypoint, function, sleep
from perdure.actors import Wake
from perdure.eventlog import LeaseLostError
from perdure.runtime import Registry
from perdure.testing import MemoryEventLog, MockClock
from tests.support.waiting import until

REG = Registry()


@function(registry=REG)
async def leased_echo(ctx: FunctionContext, n: int) -> int:
    return n


@entrypoint(registry=REG, name="leased_nap")
def leased_nap(n: int) -> int:
    sleep(60)
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


async def test_a_timer_whose_delivery_a_lost_lease_dropped_is_delivered_again() -> None:
    # Regression (the PostgreSQL failover campaign, on a loaded machine): a due timer was
    # delivered to a new actor whose lease was refused; the actor stopped with the timer
    # unfired, the scheduler still counted it in flight, and when this process later
    # held the run again (claiming its due timers leases it) nothing fired: the run
    # stayed "running"/"waiting" under a lease renewed for ever.
    log = LeasingLog()
    log.go.set()  # releases return at once
    clock = MockClock(start=1_000.0, autojump=False)
    async with Runtime(log=log, registry=REG, clock=clock, idle_timeout=0.01) as rt:
        supervisor = rt._supervisor
        assert supervisor is not None
        await rt.start(leased_nap, 7, run_id="nap")

        async def asleep_and_stopped() -> bool:
            return await rt.status("nap") == "waiting" and "nap" not in supervisor.cells

        await until(asleep_and_stopped, "the run to sleep and its idle actor to stop")
        log.refuse.add("nap")  # another process holds the run for a moment
        clock.advance(61)  # the timer is due: delivered here, the new actor's claim refused
        await until(lambda: supervisor.leases_lost >= 1, "the refused claim")
        log.refuse.discard("nap")  # the run is free again, and this process may drive it
        await until(lambda: _status_is(rt, "nap", "completed"), "the timer to fire again")
        assert (await rt.wait("nap", timeout=10)).result == 7


async def _status_is(rt: Runtime, run_id: str, status: str) -> bool:
    return await rt.status(run_id) == status


class SlowToListenLog(MemoryEventLog):
    """A memory log whose `listen` (a shared store's notices) takes a few loop turns."""

    async def listen(self, callback: object) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


async def test_a_timer_due_while_the_runtime_opens_fires() -> None:
    # Regression: on PostgreSQL the scheduler started before `open` had finished (it
    # awaits LISTEN and the worker record); a timer it claimed meanwhile was delivered
    # to a runtime not open yet, dropped, and counted in flight for ever. A restarted
    # worker did this to due timers it claimed at start (the failover campaign).
    log = SlowToListenLog()
    clock = MockClock(start=1_000.0, autojump=False)
    async with Runtime(log=log, registry=REG, clock=clock) as rt:
        await rt.start(leased_nap, 3, run_id="nap-open")
        await until(lambda: _status_is(rt, "nap-open", "waiting"), "the nap")
    clock.advance(61)  # due before the next runtime opens
    async with Runtime(log=log, registry=REG, clock=clock) as rt:
        await until(lambda: _status_is(rt, "nap-open", "completed"), "the due nap to fire")
