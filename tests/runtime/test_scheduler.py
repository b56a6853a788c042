"""The scheduler fires durable timers from the log's index on the injected clock, after restarts."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from perdure import FunctionContext, LmdbEventLog, Runtime, function
from perdure.eventlog import (
    RunStarted,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TimerEntry,
    TimerFired,
    TimerSet,
)
from perdure.runtime import Scheduler
from perdure.testing import MemoryEventLog, MockClock

T0 = 1_000.0


async def add_timers(log: MemoryEventLog, run_id: str, timers: dict[str, float]) -> None:
    events = [
        RunStarted(
            run_id=run_id, seq=0, ts=T0, target="sched", kind="function", input={}, input_digest="d"
        )
    ]
    for timer_id, due in timers.items():
        events.append(
            TimerSet(
                run_id=run_id,
                seq=len(events),
                ts=T0,
                timer_id=timer_id,
                due_at=due,
                purpose="retry",
                position="0",
            )
        )
    await log.append(run_id, 0, events)


async def settle(seconds: float = 0.02) -> None:
    await asyncio.sleep(seconds)


async def test_timers_are_delivered_when_due_in_order(memlog: MemoryEventLog) -> None:
    clock = MockClock(start=T0, autojump=False)
    delivered: list[tuple[str, str, float]] = []
    await add_timers(memlog, "r1", {"t-late": T0 + 8, "t-early": T0 + 1})
    await add_timers(memlog, "r2", {"t-mid": T0 + 4})

    scheduler = Scheduler(
        memlog, clock, lambda e: delivered.append((e.run_id, e.timer_id, clock.now()))
    )
    scheduler.start()
    try:
        await settle()
        assert delivered == []
        clock.advance(0.999)
        await settle()
        assert delivered == []  # not a moment early
        clock.advance(0.001)
        await settle()
        assert delivered == [("r1", "t-early", T0 + 1)]
        clock.advance(10)
        await settle()
        assert [d[:2] for d in delivered] == [("r1", "t-early"), ("r2", "t-mid"), ("r1", "t-late")]
        assert scheduler.delivered == 3
    finally:
        await scheduler.stop()


async def test_a_due_timer_is_delivered_once_until_its_run_settles_it(
    memlog: MemoryEventLog,
) -> None:
    clock = MockClock(start=T0, autojump=False)
    delivered: list[TimerEntry] = []
    await add_timers(memlog, "r1", {"t1": T0})
    scheduler = Scheduler(memlog, clock, delivered.append)
    scheduler.start()
    try:
        await settle()
        scheduler.changed()
        await settle()
        assert [e.timer_id for e in delivered] == ["t1"]  # still in the index, not re-sent
        scheduler.forget_run("r1")  # the run's actor restarted: the delivery may be lost
        await settle()
        assert [e.timer_id for e in delivered] == ["t1", "t1"]
    finally:
        await scheduler.stop()


async def test_changed_wakes_the_scheduler_for_a_new_earlier_timer(memlog: MemoryEventLog) -> None:
    clock = MockClock(start=T0, autojump=False)
    delivered: list[str] = []
    await add_timers(memlog, "r1", {"far": T0 + 3600})
    scheduler = Scheduler(memlog, clock, lambda e: delivered.append(e.timer_id))
    scheduler.start()
    try:
        await settle()
        await add_timers(memlog, "r2", {"near": T0 + 1})
        scheduler.changed()
        await settle()
        clock.advance(1)
        await settle()
        assert delivered == ["near"]
    finally:
        await scheduler.stop()


async def test_with_autojump_a_timer_an_hour_away_fires_in_milliseconds(
    memlog: MemoryEventLog,
) -> None:
    clock = MockClock(start=T0)
    fired = asyncio.Event()
    await add_timers(memlog, "r1", {"hour": T0 + 3600})
    scheduler = Scheduler(memlog, clock, lambda e: fired.set())
    scheduler.start()
    try:
        await asyncio.wait_for(fired.wait(), 2)
        assert clock.now() == T0 + 3600
    finally:
        await scheduler.stop()


attempts_seen: list[int] = []


@function(name="sched_flaky", retries=6, backoff="exponential")
async def sched_flaky(ctx: FunctionContext) -> int:
    attempts_seen.append(ctx.attempt)
    if ctx.attempt < 4:
        raise ConnectionError(f"attempt {ctx.attempt} refused")
    return ctx.attempt


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_a_retry_due_in_8_s_fires_after_a_runtime_restart(tmp_path: Path) -> None:
    """Attempts 0-3 fail (backoffs 1, 2, 4 s); the 8 s backoff is pending when the runtime stops."""
    attempts_seen.clear()
    store = tmp_path / "sched-store"
    clock = MockClock(autojump=False)

    async with Runtime(path=store, clock=clock) as first:
        handle = await first.start(sched_flaky)
        run_id = handle.run_id
        log = first.log
        for backoff in (1, 2, 4):

            async def timer_set(expected: float = backoff) -> bool:
                timer = await log.next_timer()
                return timer is not None and timer.due_at == clock.now() + expected

            await wait_until(timer_set)
            clock.advance(backoff)

        async def eight_second_timer() -> bool:
            timer = await log.next_timer()
            return timer is not None and timer.due_at == clock.now() + 8

        await wait_until(eight_second_timer)
        stopped_at = clock.now()
    assert attempts_seen == [0, 1, 2, 3]

    # A new process (new runtime, new clock object) on the same store: virtual time goes on.
    clock2 = MockClock(start=stopped_at, autojump=False)
    async with Runtime(path=store, clock=clock2) as second:
        clock2.advance(7.9)
        await asyncio.sleep(0.05)
        assert attempts_seen == [0, 1, 2, 3], "the retry fired early"
        assert await second.status(run_id) == "running"
        clock2.advance(0.1)
        outcome = await asyncio.wait_for(second.wait(run_id), 5)
        assert outcome.unwrap() == 4
        events = await second.log.read(run_id)

    assert attempts_seen == [0, 1, 2, 3, 4]
    failures = [e for e in events if isinstance(e, TaskAttemptFailed)]
    assert [round(e.next_retry_at - e.ts, 6) for e in failures] == [1, 2, 4, 8]
    last_start = [e for e in events if isinstance(e, TaskAttemptStarted)][-1]
    assert (last_start.attempt, last_start.ts) == (4, stopped_at + 8)
    assert [e.timer_id for e in events if isinstance(e, TimerFired)][-1] == "retry:0:0:4"


async def test_timers_of_a_closed_store_survive_in_its_index(tmp_path: Path) -> None:
    store = tmp_path / "sched-index"
    log = LmdbEventLog(store)
    try:
        await add_timers(log, "r1", {"t": T0 + 8})  # type: ignore[arg-type]
    finally:
        await log.close()
    reopened = LmdbEventLog(store, read_only=True)
    try:
        assert await reopened.next_timer() == TimerEntry(due_at=T0 + 8, run_id="r1", timer_id="t")
        assert await reopened.due_timers(T0 + 7.9) == []
    finally:
        await reopened.close()


@pytest.mark.parametrize("start_offset", [0.0, 100.0])
async def test_timers_already_overdue_at_start_fire_at_once(
    memlog: MemoryEventLog, start_offset: float
) -> None:
    clock = MockClock(start=T0 + 8 + start_offset, autojump=False)
    delivered: list[str] = []
    await add_timers(memlog, "r1", {"overdue": T0 + 8})
    scheduler = Scheduler(memlog, clock, lambda e: delivered.append(e.timer_id))
    scheduler.start()
    try:
        await settle()
        assert delivered == ["overdue"]
    finally:
        await scheduler.stop()


async def test_timers_of_runs_not_accepted_wait_without_making_the_scheduler_spin(
    memlog: MemoryEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A skipped timer stays due in the log; with a batch of 1 it once hid the next one."""
    monkeypatch.setattr("perdure.runtime._scheduler._BATCH", 1)
    clock = MockClock(start=T0 + 10, autojump=False)
    await add_timers(memlog, "other", {"t": T0 + 1})  # the earliest, and not ours
    await add_timers(memlog, "ours", {"t": T0 + 2})
    wanted = {"ours"}
    delivered: list[str] = []
    queries = 0
    original = memlog.due_timers

    async def counted(now: float, limit: int = 100) -> list[TimerEntry]:
        nonlocal queries
        queries += 1
        return await original(now, limit=limit)

    monkeypatch.setattr(memlog, "due_timers", counted)
    scheduler = Scheduler(memlog, clock, lambda e: delivered.append(e.run_id), wanted.__contains__)
    scheduler.start()
    try:
        await settle()
        assert delivered == ["ours"]
        before = queries
        await settle()
        assert queries == before, "the scheduler keeps querying while nothing changes"
        wanted.add("other")
        scheduler.forget_run("other")  # taken on: its due timer is delivered now
        await settle()
        assert delivered == ["ours", "other"]
    finally:
        await scheduler.stop()


async def test_a_runtime_without_recovery_fires_only_the_timers_of_runs_it_drives(
    tmp_path: Path,
) -> None:
    """What the CLI's cancel/resume rely on: other runs' retries do not run in the tool."""
    store = tmp_path / "no-recover"
    clock = MockClock(autojump=False)
    async with Runtime(path=store, clock=clock) as service:
        runs = [(await service.start(sched_flaky)).run_id for _ in range(2)]

        async def both_backing_off() -> bool:
            return len(await service.log.due_timers(math.inf)) == 2

        await wait_until(both_backing_off)
        stopped_at = clock.now()
    driven, other = runs
    tool_clock = MockClock(start=stopped_at, autojump=False)
    async with Runtime(path=store, clock=tool_clock, recover=False) as tool:
        before = await tool.log.read(other)
        await tool.cancel(driven)
        tool_clock.advance(60)  # both retries are long due
        await asyncio.sleep(0.05)
        assert await tool.status(driven) == "cancelled"
        assert await tool.log.read(other) == before, "the tool fired another run's retry"
    async with Runtime(path=store, clock=MockClock(start=stopped_at + 60)) as recovering:
        outcome = await asyncio.wait_for(recovering.wait(other), 5)
        assert outcome.unwrap() == 4  # the next process that recovers drives it on


class _SwallowsOneCancel(MemoryEventLog):
    """A shared-store log whose first `next_timer_after` drops a cancellation, as
    ``asyncio.wait_for`` in psycopg's pool does on Python 3.11 when the connection it
    waits for arrives in the same turn as the cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = asyncio.Event()
        self.swallowed = 0

    async def claim_due_timers(
        self, now: float, limit: int = 256, **scope: object
    ) -> list[TimerEntry]:
        return []

    async def next_timer_after(self, now: float) -> float | None:
        if not self.swallowed:
            self.inside.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.swallowed += 1
        return None


async def test_stop_returns_even_if_a_cancellation_is_dropped_inside_the_store() -> None:
    # Regression: `perdure resume` on PostgreSQL hung in close (1 run in 3): the scheduler's
    # cancellation was dropped inside a query, its loop ran on, and stop awaited it for ever.
    log = _SwallowsOneCancel()
    scheduler = Scheduler(log, MockClock(start=T0, autojump=False), lambda e: None, poll=3600)
    scheduler.start()
    await asyncio.wait_for(log.inside.wait(), 5)
    stopping = asyncio.ensure_future(scheduler.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "stop() still waits for a loop whose cancellation was dropped"
    finally:
        stopping.cancel()
    assert log.swallowed == 1
