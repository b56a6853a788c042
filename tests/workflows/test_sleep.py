"""Durable sleep (`perdure.sleep`, `await perdure.asleep`): eviction, and waking on time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import perdure
from perdure import MemoryEventLog, Runtime, entrypoint, task
from perdure.eventlog import TimerFired, TimerSet
from perdure.testing import MockClock
from tests.support import Calls, events_of, of_type
from tests.support.waiting import until

CALLS = Calls()
HOUR = 3600.0


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()


@task
def sleep_step(name: str) -> str:
    CALLS.hit(name)
    return name


@entrypoint()
def sleep_sync(seconds: float) -> list[str]:
    first = sleep_step("before").result()
    perdure.sleep(seconds)
    return [first, sleep_step("after").result()]


@entrypoint()
async def sleep_async(seconds: float) -> list[str]:
    first = await sleep_step("before")
    await perdure.asleep(seconds)
    await perdure.asleep(seconds)  # a second sleep gets its own timer and position
    return [first, await sleep_step("after")]


async def test_sync_sleep_waits_on_the_clock_and_does_not_rerun_tasks(
    runtime: Runtime, clock: MockClock
) -> None:
    start = clock.now()
    assert await sleep_sync.ainvoke(HOUR, {"configurable": {"thread_id": "nap-sync"}}) == [
        "before",
        "after",
    ]
    assert clock.now() - start >= HOUR
    assert dict(CALLS.counts) == {"before": 1, "after": 1}
    events = await events_of(runtime.log, "nap-sync")
    [timer] = of_type(events, TimerSet)
    assert (timer.purpose, timer.position, timer.due_at) == ("sleep", "1", start + HOUR)
    assert len(of_type(events, TimerFired)) == 1


async def test_async_sleeps(runtime: Runtime, clock: MockClock) -> None:
    start = clock.now()
    result = await sleep_async.ainvoke(60, {"configurable": {"thread_id": "nap-async"}})
    assert result == ["before", "after"]
    assert clock.now() - start >= 120
    events = await events_of(runtime.log, "nap-async")
    assert [t.position for t in of_type(events, TimerSet)] == ["1", "2"]


async def test_a_sleeping_run_is_evicted_and_woken_by_its_timer() -> None:
    clock = MockClock(autojump=False)
    async with Runtime(log=MemoryEventLog(), clock=clock, idle_timeout=0.05) as runtime:
        handle = await runtime.start(sleep_sync, HOUR, run_id="nap-evict")
        await until(lambda: _status_is(runtime, "nap-evict", "waiting"), "the run to sleep")
        await until(lambda: _no_live_actors(runtime), "the sleeping actor to be evicted")
        assert runtime.statistics().evicted >= 1

        clock.advance(HOUR - 1)
        await asyncio.sleep(0.1)
        assert await runtime.status("nap-evict") == "waiting"  # not due yet
        clock.advance(1)
        assert await handle.result(timeout=5) == ["before", "after"]
    assert dict(CALLS.counts) == {"before": 1, "after": 1}


async def test_a_sleep_resumes_on_time_after_a_runtime_restart(tmp_path: Path) -> None:
    path = tmp_path / "store"
    clock = MockClock(autojump=False)
    async with Runtime(path, clock=clock) as runtime:
        await runtime.start(sleep_sync, HOUR, run_id="nap-restart")
        await until(lambda: _status_is(runtime, "nap-restart", "waiting"), "the run to sleep")
    asleep_at = clock.now()

    # A new process, 10 minutes later: the timer is not due yet.
    later = MockClock(start=asleep_at + 600, autojump=False)
    async with Runtime(path, clock=later) as runtime:
        await asyncio.sleep(0.1)
        assert await runtime.status("nap-restart") == "waiting"
        later.advance(HOUR - 600)
        outcome = await runtime.wait("nap-restart", timeout=5)
        assert outcome.unwrap() == ["before", "after"]
        events = await events_of(runtime.log, "nap-restart")
        [fired] = of_type(events, TimerFired)
        assert fired.ts >= asleep_at + HOUR
    assert dict(CALLS.counts) == {"before": 1, "after": 1}


async def _status_is(runtime: Runtime, run_id: str, status: str) -> bool:
    info = await runtime.get_run(run_id)
    return info is not None and info.status == status


async def _no_live_actors(runtime: Runtime) -> bool:
    return runtime.statistics().live_actors == 0


def test_sleep_needs_a_number_of_seconds() -> None:
    with pytest.raises(TypeError, match="seconds"):
        perdure.sleep("soon")  # type: ignore[arg-type]
