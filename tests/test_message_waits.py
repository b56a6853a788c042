"""Timeouts and races over waits: `interrupt(timeout=)`, races over `areceive`, run deadlines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import perdure
from perdure import Command, Runtime, entrypoint
from perdure.errors import InterruptTimeoutError, RunError
from perdure.eventlog import MemoryEventLog, TimerCancelled, TimerFired, TimerSet
from perdure.runtime import Registry
from perdure.testing import MockClock


@pytest.fixture(params=["memory", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Runtime keyword arguments for a store that outlives one runtime."""
    if request.param == "memory":
        return {"log": MemoryEventLog()}
    return {"path": str(tmp_path / "store")}


async def _until(rt: Runtime, run_id: str, check: Any) -> None:
    for _ in range(500):
        if check(await rt.state(run_id)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id!r} never got there: {await rt.state(run_id)}")


def _approval(registry: Registry) -> Any:
    @entrypoint(name="approval", registry=registry)
    def approval(_: Any) -> Any:
        try:
            answer = perdure.interrupt({"approve": "refund"}, timeout=60)
        except InterruptTimeoutError as exc:
            return {"timed_out": exc.timeout, "position": exc.position}
        return {"answer": answer}

    return approval


async def test_interrupt_timeout_fires_across_a_restart(store: dict[str, Any]) -> None:
    registry = Registry()
    _approval(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("approval", None, run_id="a")
        await _until(rt, "a", lambda s: s.timers)
        assert await rt.status("a") == "waiting"
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(59.9)
        await asyncio.sleep(0.05)
        assert await rt.status("a") == "waiting"
        clock.advance(0.2)
        await _until(rt, "a", lambda s: s.terminal)
        outcome = await rt.wait("a", timeout=30)
        assert outcome.status == "completed", outcome
        assert outcome.result == {"timed_out": 60.0, "position": "0"}
        events = await rt.log.read("a")
        assert [e.purpose for e in events if type(e) is TimerSet] == ["interrupt"]
        assert sum(type(e) is TimerFired for e in events) == 1
        # Nobody can answer it any more.
        with pytest.raises(perdure.errors.InvalidResumeError):
            await rt.resume("a", "too late")
        # A replay raises the same error at the same place.
        report = await perdure.Replayer(registry=registry).areplay(events)
        assert report.divergence is None, report


async def test_interrupt_answered_in_time_cancels_its_timer(store: dict[str, Any]) -> None:
    registry = Registry()
    _approval(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("approval", None, run_id="b")
        await _until(rt, "b", lambda s: s.timers)
        await rt.resume("b", "yes")
        outcome = await rt.wait("b", timeout=30)
        assert outcome.result == {"answer": "yes"}
        events = await rt.log.read("b")
        assert sum(type(e) is TimerCancelled for e in events) == 1
        clock.advance(120)
        await asyncio.sleep(0.02)
        assert (await rt.wait("b", timeout=30)).result == {"answer": "yes"}


async def test_interrupt_timeout_with_invoke_command() -> None:
    registry = Registry()
    log = MemoryEventLog()

    @entrypoint(name="ask", registry=registry, checkpointer=log)
    def ask(_: Any) -> Any:
        return perdure.interrupt("ok?", timeout=5)

    clock = MockClock(autojump=False)
    config = {"configurable": {"thread_id": "t"}}
    async with Runtime(log=log, registry=registry, clock=clock):
        paused = await ask.ainvoke(1, config)
        assert "__interrupt__" in paused
        assert await ask.ainvoke(Command(resume="fine"), config) == "fine"


async def test_interrupt_timeout_is_checked() -> None:
    registry = Registry()

    @entrypoint(name="bad", registry=registry)
    def bad(_: Any) -> Any:
        return perdure.interrupt("x", timeout="soon")  # type: ignore[arg-type]

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        with pytest.raises(perdure.errors.RunFailedError, match="timeout must be a number"):
            await rt.run("bad", None)
    assert issubclass(InterruptTimeoutError, RunError)
    assert issubclass(InterruptTimeoutError, TimeoutError)


def _slow(registry: Registry) -> tuple[Any, Any]:
    @entrypoint(name="slow", registry=registry, timeout=30)
    async def slow(_: Any) -> str:
        await perdure.asleep(3600)
        return "done"

    @entrypoint(name="patient", registry=registry)
    async def patient(_: Any) -> Any:
        return await perdure.areceive()

    return slow, patient


async def test_entrypoint_timeout_cancels_the_run_after_a_restart(store: dict[str, Any]) -> None:
    registry = Registry()
    _slow(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("slow", None, run_id="d")
        await _until(rt, "d", lambda s: len(s.timers) == 2)
        assert await rt.status("d") == "waiting"
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(29)
        await asyncio.sleep(0.05)
        assert await rt.status("d") == "waiting"
        waiter = asyncio.ensure_future(rt.wait("d", timeout=30))
        clock.advance(2)
        outcome = await waiter
        assert outcome.status == "cancelled", outcome
        assert outcome.reason.startswith("deadline exceeded"), outcome.reason
        with pytest.raises(perdure.errors.RunCancelledError, match="deadline exceeded"):
            outcome.unwrap()
        events = await rt.log.read("d")
        fired = [e for e in events if type(e) is TimerFired]
        assert [e.timer_id for e in fired] == ["deadline:0"]
        assert not (await rt.state("d")).timers  # the sleep's timer went with the run


async def test_start_deadline_and_waiting_callers(store: dict[str, Any]) -> None:
    registry = Registry()
    _slow(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        handle = await rt.start("patient", None, run_id="p", deadline=clock.now() + 10)
        result = asyncio.ensure_future(handle.result())
        await _until(rt, "p", lambda s: s.receiving)
        clock.advance(10)
        with pytest.raises(perdure.errors.RunCancelledError, match="deadline exceeded"):
            await result
        with pytest.raises(perdure.errors.RunSettledError):
            await rt.send("p", "too late")
        # A run done in time leaves no timer behind.
        await rt.start("patient", None, run_id="q", deadline=clock.now() + 10)
        await _until(rt, "q", lambda s: s.receiving)
        await rt.send("q", "hi")
        assert (await rt.wait("q", timeout=30)).result == "hi"
        assert not (await rt.state("q")).timers
        clock.advance(20)
        await asyncio.sleep(0.02)
        assert await rt.status("q") == "completed"


async def test_deadline_is_checked() -> None:
    registry = Registry()
    _slow(registry)
    from datetime import datetime

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        with pytest.raises(ValueError, match="no timezone"):
            await rt.start("patient", None, deadline=datetime(2030, 1, 1))
        with pytest.raises(TypeError, match="deadline must be"):
            await rt.start("patient", None, deadline="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(perdure.errors.PolicyError, match="timeout"):
        entrypoint(name="neg", registry=registry, timeout=-1)


async def test_function_timeout_total_spans_retries() -> None:
    registry = Registry()
    calls = []

    @perdure.function(name="flaky", registry=registry, retries=100, timeout_total=5)
    def flaky() -> None:
        calls.append(1)
        raise RuntimeError("down")

    clock = MockClock(autojump=False)
    async with Runtime(log=MemoryEventLog(), registry=registry, clock=clock) as rt:
        handle = await rt.start(flaky, {})
        await _until(rt, handle.run_id, lambda s: s.steps.get("0") and s.steps["0"].retry_timer)
        for _ in range(10):
            clock.advance(1)
            await asyncio.sleep(0.01)
        outcome = await rt.wait(handle.run_id, timeout=30)
        assert outcome.status == "cancelled"
        assert "deadline exceeded" in outcome.reason
        assert 1 < len(calls) < 10
