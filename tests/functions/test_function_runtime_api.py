"""The Runtime API for functions: run, start, handles, get_run, list_runs, cancel, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from perdure import (
    FunctionContext,
    RetryPolicy,
    RunCancelledError,
    RunFailedError,
    RunHandle,
    RunNotFoundError,
    Runtime,
    RuntimeClosedError,
    RunTimeoutError,
    function,
)
from perdure.eventlog import RunCancelled, TimerCancelled, TimerSet
from perdure.testing import MemoryEventLog, MockClock
from tests.support import Calls, of_type, wait_for

HOUR_BACKOFF = RetryPolicy(max_attempts=3, initial_interval_ms=3_600_000, max_interval_ms=3_600_000)


@function(name="api_double")
async def api_double(x: int) -> int:
    return 2 * x


@function(name="api_fails", retries=1)
async def api_fails(reason: str) -> None:
    raise LookupError(reason)


async def test_run_returns_the_result(runtime: Runtime) -> None:
    assert await runtime.run("api_double", {"x": 21}) == 42
    assert await runtime.run(api_double, {"x": 1}) == 2


async def test_start_returns_a_handle(runtime: Runtime) -> None:
    gate = asyncio.Event()

    @function(name="api_gated")
    async def gated() -> str:
        await gate.wait()
        return "opened"

    handle = await runtime.start(gated)
    assert isinstance(handle, RunHandle)
    assert handle.run_id.startswith("run-")
    assert handle.target == "api_gated"
    assert await handle.status() == "running"
    gate.set()
    assert await handle.result() == "opened"
    assert await handle.status() == "completed"
    assert await handle.result() == "opened"  # asking again reads the log


async def test_start_with_an_explicit_run_id(runtime: Runtime) -> None:
    handle = await runtime.start(api_double, {"x": 4}, run_id="api-explicit-1")
    assert handle.run_id == "api-explicit-1"
    assert await handle.result() == 8


async def test_get_run_and_list_runs(runtime: Runtime) -> None:
    ok = await runtime.start(api_double, {"x": 1})
    bad = await runtime.start(api_fails, {"reason": "gone"})
    await ok.result()
    with pytest.raises(RunFailedError):
        await bad.result()

    info = await runtime.get_run(ok.run_id)
    assert info is not None
    assert (info.run_id, info.target, info.kind, info.status) == (
        ok.run_id,
        "api_double",
        "function",
        "completed",
    )
    assert info.idempotency_key is None
    assert info.created_at <= info.updated_at
    assert await runtime.get_run("no-such-run") is None

    assert [r.run_id for r in await runtime.list_runs()] == [ok.run_id, bad.run_id]
    assert [r.run_id for r in await runtime.list_runs(status="completed")] == [ok.run_id]
    assert [r.run_id for r in await runtime.list_runs(status="failed")] == [bad.run_id]
    assert await runtime.list_runs(status="running") == []
    assert [r.run_id for r in await runtime.list_runs(target="api_fails")] == [bad.run_id]
    assert len(await runtime.list_runs(limit=1)) == 1


async def test_list_runs_shows_running_runs(runtime: Runtime) -> None:
    gate = asyncio.Event()

    @function(name="api_running")
    async def blocked() -> None:
        await gate.wait()

    handle = await runtime.start(blocked)
    assert [r.run_id for r in await runtime.list_runs(status="running")] == [handle.run_id]
    gate.set()
    await handle.result()
    assert await runtime.list_runs(status="running") == []


async def test_failed_run_raises_run_failed_error_from_result(runtime: Runtime) -> None:
    handle = await runtime.start(api_fails, {"reason": "no such key"})
    with pytest.raises(RunFailedError) as info:
        await handle.result()
    error = info.value
    assert (error.run_id, error.target) == (handle.run_id, "api_fails")
    assert (error.error_type, error.error_message, error.attempts) == (
        "LookupError",
        "no such key",
        1,
    )
    assert handle.run_id in str(error) and "LookupError: no such key" in str(error)


async def test_cancel_a_run_waiting_on_a_long_backoff(memlog: MemoryEventLog) -> None:
    calls = Calls()
    clock = MockClock(autojump=False)

    @function(name="api_cancel_backoff", retries=HOUR_BACKOFF)
    async def flaky() -> None:
        calls.hit()
        raise ConnectionError("down")

    async with Runtime(log=memlog, clock=clock) as runtime:
        handle = await runtime.start(flaky)

        async def backing_off() -> bool:
            return await memlog.next_timer() is not None

        await wait_for(backing_off)
        timer = await memlog.next_timer()
        assert timer is not None and timer.run_id == handle.run_id
        assert timer.due_at == clock.now() + 3600

        await runtime.cancel(handle.run_id, reason="user gave up")
        with pytest.raises(RunCancelledError) as info:
            await handle.result()
        assert info.value.run_id == handle.run_id
        assert "user gave up" in str(info.value)
        assert await handle.status() == "cancelled"
        assert await memlog.next_timer() is None  # the retry timer is gone from the index
        events = await memlog.read(handle.run_id)
        assert [t.timer_id for t in of_type(events, TimerCancelled)] == [
            t.timer_id for t in of_type(events, TimerSet)
        ]
        assert of_type(events, RunCancelled)[0].reason == "user gave up"

        clock.advance(10 * 3600)  # the backoff would long be over: nothing runs
        await asyncio.sleep(0.02)
        assert calls["body"] == 1
        assert await handle.status() == "cancelled"


async def test_cancel_a_run_in_the_middle_of_an_attempt(runtime: Runtime) -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    @function(name="api_cancel_running")
    async def blocked() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    handle = await runtime.start(blocked)
    await entered.wait()
    await runtime.cancel(handle.run_id)
    with pytest.raises(RunCancelledError):
        await handle.result()
    await asyncio.wait_for(cancelled.wait(), 5)  # the attempt's task was cancelled too
    assert await handle.status() == "cancelled"


async def test_cancel_a_settled_run_leaves_it_as_it_is(runtime: Runtime) -> None:
    handle = await runtime.start(api_double, {"x": 3})
    assert await handle.result() == 6
    await runtime.cancel(handle.run_id)
    assert await handle.status() == "completed"
    assert await handle.result() == 6


async def test_run_timeout_raises_run_timeout_error_naming_the_run(runtime: Runtime) -> None:
    gate = asyncio.Event()

    @function(name="api_slow")
    async def slow() -> str:
        await gate.wait()
        return "finally"

    with pytest.raises(RunTimeoutError) as info:
        await runtime.run(slow, timeout=0.05)
    error = info.value
    assert error.timeout == 0.05
    assert error.run_id in str(error)
    assert isinstance(error, TimeoutError)
    # The run keeps going; its id lets the caller wait again.
    assert await runtime.status(error.run_id) == "running"
    gate.set()
    assert (await runtime.wait(error.run_id)).unwrap() == "finally"


async def test_handle_result_timeout(runtime: Runtime) -> None:
    @function(name="api_never")
    async def never(ctx: FunctionContext) -> None:
        await asyncio.Event().wait()

    handle = await runtime.start(never)
    with pytest.raises(RunTimeoutError) as info:
        await handle.result(timeout=0.02)
    assert info.value.run_id == handle.run_id
    await runtime.cancel(handle.run_id)


async def test_unknown_run_ids(runtime: Runtime) -> None:
    with pytest.raises(RunNotFoundError) as info:
        await runtime.cancel("api-missing")
    assert info.value.run_id == "api-missing"
    with pytest.raises(RunNotFoundError):
        await runtime.wait("api-missing")
    with pytest.raises(RunNotFoundError):
        await runtime.status("api-missing")


async def test_a_closed_runtime_refuses_work(memlog: MemoryEventLog) -> None:
    runtime = Runtime(log=memlog, clock=MockClock())
    with pytest.raises(RuntimeClosedError):
        await runtime.run(api_double, {"x": 1})
    async with runtime:
        assert await runtime.run(api_double, {"x": 1}) == 2
    with pytest.raises(RuntimeClosedError):
        await runtime.start(api_double, {"x": 1})


async def test_closing_the_runtime_fails_waiting_callers(memlog: MemoryEventLog) -> None:
    @function(name="api_close_waiting")
    async def blocked() -> None:
        await asyncio.Event().wait()

    async with Runtime(log=memlog, clock=MockClock()) as runtime:
        handle = await runtime.start(blocked)
        waiter = asyncio.ensure_future(handle.result())
        await asyncio.sleep(0.01)
    with pytest.raises(RuntimeClosedError):
        await waiter
    # Closing is not failing: the run is still unfinished in the log, ready to resume.
    info = await memlog.get_run(handle.run_id)
    assert info is not None and info.status == "running"
