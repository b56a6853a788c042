"""`perdure.testing.MockClock`: manual advance, sleepers, autojump to the next timer when idle."""

from __future__ import annotations

import asyncio
import time

import pytest

from perdure.actors import Clock
from perdure.testing import MockClock


def test_it_is_a_clock_starting_where_told() -> None:
    assert isinstance(MockClock(), Clock)
    assert MockClock().now() == 1_700_000_000.0
    assert MockClock(start=5).now() == 5.0


def test_advance_moves_time_forward_only() -> None:
    clock = MockClock(start=100)
    clock.advance(2.5)
    assert clock.now() == 102.5
    clock.advance(0)
    assert clock.now() == 102.5
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.now() == 102.5


async def test_sleep_until_a_past_or_present_deadline_returns_at_once() -> None:
    clock = MockClock(start=100, autojump=False)
    await asyncio.wait_for(clock.sleep_until(100), 1)
    await asyncio.wait_for(clock.sleep_until(50), 1)
    assert clock.now() == 100


async def test_advance_wakes_exactly_the_sleepers_now_due_in_order() -> None:
    clock = MockClock(start=0, autojump=False)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.now()))

    tasks = [
        asyncio.ensure_future(sleeper(name, at)) for name, at in [("c", 30), ("a", 10), ("b", 20)]
    ]
    await asyncio.sleep(0.01)
    assert woke == []
    clock.advance(15)
    await asyncio.sleep(0.01)
    assert woke == [("a", 15)]
    clock.advance(100)
    await asyncio.gather(*tasks)
    assert woke == [("a", 15), ("b", 115), ("c", 115)]


async def test_without_autojump_time_stands_still() -> None:
    clock = MockClock(start=0, autojump=False)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(clock.sleep_until(1), 0.05)
    assert clock.now() == 0
    assert clock.jumps == 0


async def test_autojump_leaps_to_the_next_deadline_when_idle() -> None:
    clock = MockClock(start=0)
    real = time.monotonic()
    await clock.sleep_until(8 * 3600)
    assert clock.now() == 8 * 3600
    assert clock.jumps == 1
    assert time.monotonic() - real < 1


async def test_autojump_visits_deadlines_in_order() -> None:
    clock = MockClock(start=0)
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        seen.append((name, clock.now()))

    await asyncio.gather(sleeper("late", 10), sleeper("early", 5), sleeper("same", 5))
    assert seen == [("early", 5), ("same", 5), ("late", 10)]
    assert clock.jumps == 2


async def test_a_cancelled_sleeper_does_not_pull_time_forward() -> None:
    clock = MockClock(start=0)
    abandoned = asyncio.ensure_future(clock.sleep_until(5))
    await asyncio.sleep(0)
    abandoned.cancel()
    await clock.sleep_until(10)
    assert clock.now() == 10
    assert clock.jumps == 1


async def test_autojump_waits_while_time_is_being_read() -> None:
    """Work that keeps reading the clock is not idle: no jump happens under its feet."""
    clock = MockClock(start=0, autojump_threshold=0.05)
    sleeper = asyncio.ensure_future(clock.sleep_until(60))
    for _ in range(20):  # ~100 ms of activity, each gap far below the 100 ms idle window
        clock.now()
        await asyncio.sleep(0.005)
    assert not sleeper.done()
    assert clock.now() == 0
    await sleeper
    assert clock.now() == 60


async def test_manual_advance_also_works_with_autojump_on() -> None:
    clock = MockClock(start=0)
    sleeper = asyncio.ensure_future(clock.sleep_until(3))
    await asyncio.sleep(0)
    clock.advance(3)
    await asyncio.wait_for(sleeper, 1)
    assert clock.now() == 3
