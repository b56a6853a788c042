"""Idle eviction: settled runs leave memory; the next message rebuilds the actor from the log."""

from __future__ import annotations

import asyncio

import pytest

from perdure import FunctionContext, RetryPolicy, Runtime, function
from perdure.errors import RunFailedError
from perdure.testing import MemoryEventLog, MockClock

broken = {"value": True}


@function(name="evict_echo")
async def evict_echo(x: int) -> int:
    return x


@function(name="evict_until_fixed", retries=1)
async def evict_until_fixed(ctx: FunctionContext) -> str:
    if broken["value"]:
        raise RuntimeError("dependency down")
    return f"fixed on attempt {ctx.attempt}"


async def live_actors_drop_to_zero(runtime: Runtime, within: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while runtime.statistics().live_actors:
        assert loop.time() < deadline, f"actors still live: {runtime.statistics()}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def evicting(memlog: MemoryEventLog) -> Runtime:  # type: ignore[misc]
    async with Runtime(log=memlog, clock=MockClock(), idle_timeout=0.05) as runtime:
        yield runtime


async def test_settled_runs_are_evicted(evicting: Runtime) -> None:
    handles = [await evicting.start(evict_echo, {"x": i}) for i in range(20)]
    assert [await h.result() for h in handles] == list(range(20))
    assert evicting.statistics().live_actors > 0  # just finished: still in memory
    await live_actors_drop_to_zero(evicting)
    assert evicting.statistics().evicted >= 20
    # Results still come from the log without an actor.
    assert [await h.result() for h in handles] == list(range(20))
    assert await handles[3].status() == "completed"


async def test_a_message_to_an_evicted_run_rebuilds_it_from_the_log(
    evicting: Runtime, memlog: MemoryEventLog
) -> None:
    broken["value"] = True
    handle = await evicting.start(evict_until_fixed)
    with pytest.raises(RunFailedError):
        await handle.result()
    await live_actors_drop_to_zero(evicting)
    before = evicting.statistics().evicted

    broken["value"] = False
    await evicting.continue_run(handle.run_id)  # a message: the actor comes back
    assert await handle.result() == "fixed on attempt 0"
    assert await handle.status() == "completed"
    await live_actors_drop_to_zero(evicting)
    assert evicting.statistics().evicted > before
    assert len(await memlog.read(handle.run_id)) > 0


async def test_cancel_of_an_evicted_settled_run_changes_nothing(evicting: Runtime) -> None:
    handle = await evicting.start(evict_echo, {"x": 7})
    await handle.result()
    await live_actors_drop_to_zero(evicting)
    await evicting.cancel(handle.run_id)
    assert await handle.result() == 7
    assert await handle.status() == "completed"


async def test_busy_runs_are_not_evicted(evicting: Runtime) -> None:
    gate = asyncio.Event()

    @function(name="evict_busy")
    async def busy() -> str:
        await gate.wait()
        return "finished"

    handle = await evicting.start(busy)
    await asyncio.sleep(0.2)  # four idle timeouts: a run in an attempt must stay
    assert evicting.statistics().live_actors == 1
    gate.set()
    assert await handle.result() == "finished"
    await live_actors_drop_to_zero(evicting)


async def test_a_run_waiting_on_a_long_backoff_is_evicted_and_its_timer_rebuilds_it(
    memlog: MemoryEventLog,
) -> None:
    clock = MockClock(autojump=False)
    calls: list[int] = []

    @function(
        name="evict_backoff",
        retries=RetryPolicy(
            max_attempts=2, initial_interval_ms=3_600_000, max_interval_ms=3_600_000
        ),
    )
    async def flaky(ctx: FunctionContext) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt == 0:
            raise ConnectionError("down")
        return ctx.attempt

    async with Runtime(log=memlog, clock=clock, idle_timeout=0.05) as runtime:
        handle = await runtime.start(flaky)
        for _ in range(1000):
            if await memlog.next_timer() is not None:
                break
            await asyncio.sleep(0.005)
        try:
            await live_actors_drop_to_zero(runtime, within=1.0)
        finally:
            clock.advance(3600)
            assert await handle.result() == 1
            assert calls == [0, 1]
