"""Runtime.handle, the RunHandle calls (status, result, resume, cancel, continue_), and the
typed update stream (`Runtime.subscribe`), all through the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from perdure import (
    FunctionContext,
    InvalidResumeError,
    RunCancelledError,
    RunFailedError,
    RunHandle,
    RunNotFoundError,
    Runtime,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.eventlog import RunCompleted, TaskCompleted
from perdure.runtime import (
    Closed,
    Committed,
    Custom,
    InvalidIdError,
    RuntimeClosedError,
    Settled,
    Subscription,
    Update,
)
from perdure.testing import MemoryEventLog, MockClock

BROKEN = {"handle_mend": True}


@function(name="handle_double")
async def handle_double(x: int) -> int:
    return 2 * x


@function(name="handle_mend", retries=1)
async def handle_mend(ctx: FunctionContext) -> int:
    if BROKEN["handle_mend"]:
        raise ConnectionError("the service is down")
    return ctx.attempt


@task
async def handle_square(x: int) -> int:
    return x * x


@entrypoint(name="handle_asking")
async def handle_asking(n: int) -> dict[str, Any]:
    square = await handle_square(n)
    answer = interrupt({"square": square})
    return {"square": square, "answer": answer}


@entrypoint(name="handle_writing")
async def handle_writing(n: int, *, writer: Callable[[Any], None]) -> int:
    writer({"step": "start"})
    total = 0
    for i in range(n):
        total += await handle_square(i)
    writer({"step": "done", "total": total})
    return total


# -- Runtime.handle ------------------------------------------------------------------------


async def test_handle_finds_a_run_started_earlier(runtime: Runtime) -> None:
    started = await runtime.start(handle_double, {"x": 21}, run_id="handle-1")
    await started.result()
    handle = await runtime.handle("handle-1")
    assert isinstance(handle, RunHandle)
    assert (handle.run_id, handle.target) == ("handle-1", "handle_double")
    assert await handle.status() == "completed"
    assert await handle.result() == 42


async def test_handle_refuses_an_unknown_run_and_a_bad_id(runtime: Runtime) -> None:
    with pytest.raises(RunNotFoundError, match="no-such-run") as found:
        await runtime.handle("no-such-run")
    assert found.value.run_id == "no-such-run"
    with pytest.raises(InvalidIdError, match="run_id"):
        await runtime.handle("")
    with pytest.raises(InvalidIdError, match="run_id"):
        await runtime.handle(42)  # type: ignore[arg-type]
    assert await runtime.list_runs() == []


async def test_handle_works_across_runtimes_on_one_store(memlog: MemoryEventLog) -> None:
    async with Runtime(log=memlog, clock=MockClock()) as first:
        await first.run(handle_double, {"x": 2}, run_id="handle-later")
    async with Runtime(log=memlog, clock=MockClock()) as second:
        handle = await second.handle("handle-later")
        assert handle.runtime is second
        assert await handle.result() == 4


# -- RunHandle calls -------------------------------------------------------------------------


async def test_status_answers_while_the_run_is_busy(runtime: Runtime) -> None:
    gate = asyncio.Event()

    @function(name="handle_gated")
    async def gated() -> str:
        await gate.wait()
        return "opened"

    handle = await runtime.start(gated)
    for _ in range(3):  # the body holds the run; reading its status never waits for it
        assert await asyncio.wait_for(handle.status(), 5) == "running"
    gate.set()
    assert await handle.result() == "opened"


async def test_resume_answers_the_interrupt(runtime: Runtime) -> None:
    handle = await runtime.start(handle_asking, 3, run_id="handle-ask")
    paused = await handle.result()
    assert [i.value for i in paused["__interrupt__"]] == [{"square": 9}]
    assert await handle.status() == "waiting"
    await handle.resume("yes")
    assert await handle.result() == {"square": 9, "answer": "yes"}
    assert await handle.status() == "completed"


async def test_resume_refuses_a_run_that_does_not_wait(runtime: Runtime) -> None:
    handle = await runtime.start(handle_double, {"x": 1})
    await handle.result()
    with pytest.raises(InvalidResumeError):
        await handle.resume("too late")


async def test_cancel_stops_the_run_with_the_reason(runtime: Runtime) -> None:
    gate = asyncio.Event()

    @function(name="handle_cancelled")
    async def blocked() -> None:
        await gate.wait()

    handle = await runtime.start(blocked)
    await handle.cancel("no longer needed")
    assert await handle.status() == "cancelled"
    with pytest.raises(RunCancelledError, match="no longer needed"):
        await handle.result()
    await handle.cancel()  # a settled run is left as it is
    assert await handle.status() == "cancelled"


async def test_continue_reopens_a_failed_run(runtime: Runtime) -> None:
    handle = await runtime.start(handle_mend, run_id="handle-mend")
    with pytest.raises(RunFailedError, match="the service is down"):
        await handle.result()
    BROKEN["handle_mend"] = False
    try:
        await handle.continue_()
        assert await handle.result() == 0  # the failed step starts over with fresh attempts
        with pytest.raises(InvalidResumeError, match="completed"):
            await handle.continue_()  # nothing to continue: said, not ignored
    finally:
        BROKEN["handle_mend"] = True


# -- the update stream -----------------------------------------------------------------------


async def _all(sub: Subscription) -> list[Update]:
    return [update async for update in sub]


async def test_a_subscription_sees_commits_custom_items_and_the_outcome(runtime: Runtime) -> None:
    with runtime.subscribe("handle-writes") as sub:
        handle = await runtime.start(handle_writing, 3, run_id="handle-writes")
        updates = await asyncio.wait_for(_all(sub), 5)
    assert await handle.result() == 5
    assert all(u.run_id == "handle-writes" for u in updates)
    customs = [u.item for u in updates if type(u) is Custom]
    assert customs == [{"step": "start"}, {"step": "done", "total": 5}]
    events = [e for u in updates if type(u) is Committed for e in u.events]
    assert [e.seq for e in events] == sorted({e.seq for e in events})  # in order, no repeats
    assert [e.result for e in events if type(e) is TaskCompleted] == [0, 1, 4]
    assert [type(e) for e in events][-1] is RunCompleted
    last = updates[-1]
    assert type(last) is Settled and not last.interrupted
    assert last.outcome.status == "completed"


async def test_a_subscription_reports_an_interrupt_then_the_resumed_outcome(
    runtime: Runtime,
) -> None:
    with runtime.subscribe("handle-sub-ask") as sub:
        handle = await runtime.start(handle_asking, 2, run_id="handle-sub-ask")
        first = await asyncio.wait_for(_all(sub), 5)
        paused = first[-1]
        assert type(paused) is Settled and paused.interrupted
        assert [i.value for i in paused.outcome.interrupts] == [{"square": 4}]
        await handle.resume("ok")
        # A stop can be reported more than once (the pause, again as the body ends): what
        # was received before the resume returned is about the pause, not the new outcome.
        mark, taken = sub.received, len(first)
        while True:
            update = await sub.get(timeout=5)
            taken += 1
            if type(update) is Settled and taken > mark:
                done = update
                break
    assert not done.interrupted
    assert done.outcome.result == {"square": 4, "answer": "ok"}


async def test_a_closed_subscription_receives_nothing_more(runtime: Runtime) -> None:
    sub = runtime.subscribe("handle-closed-sub")
    sub.close()
    sub.close()  # twice is fine
    assert sub.closed
    await runtime.run(handle_double, {"x": 1}, run_id="handle-closed-sub")
    assert sub.received == 0
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.01)


async def test_closing_the_runtime_ends_every_subscription(memlog: MemoryEventLog) -> None:
    gate = asyncio.Event()

    @function(name="handle_held")
    async def held() -> None:
        await gate.wait()

    async with Runtime(log=memlog, clock=MockClock()) as rt:
        sub = rt.subscribe("handle-held")
        await rt.start(held, run_id="handle-held")
    updates = await asyncio.wait_for(_all(sub), 5)
    last = updates[-1]
    assert type(last) is Closed
    assert isinstance(last.error, RuntimeClosedError)
    gate.set()


async def test_subscribe_checks_the_id_and_the_runtime(memlog: MemoryEventLog) -> None:
    rt = Runtime(log=memlog, clock=MockClock())
    with pytest.raises(RuntimeClosedError):
        rt.subscribe("handle-not-open")
    async with rt:
        with pytest.raises(InvalidIdError, match="run_id"):
            rt.subscribe("bad\x00id")


async def test_start_with_commit_start_false_and_config(runtime: Runtime) -> None:
    @entrypoint(name="handle_configured")
    async def configured(x: int, *, config: dict[str, Any]) -> Any:
        return config["configurable"].get("user")

    handle = await runtime.start(
        configured,
        1,
        run_id="handle-config",
        config={"configurable": {"user": "ada"}},
        commit_start=False,
    )
    assert await handle.result() == "ada"
    assert (await runtime.state("handle-config")).config == {"configurable": {"user": "ada"}}


async def test_continue_run_not_strict_leaves_a_completed_run_alone(runtime: Runtime) -> None:
    await runtime.run(handle_double, {"x": 3}, run_id="handle-lenient")
    await runtime.continue_run("handle-lenient", strict=False)
    assert await (await runtime.handle("handle-lenient")).result() == 6
    with pytest.raises(InvalidResumeError):
        await runtime.continue_run("handle-lenient")
