"""Timeouts and races over waits: `interrupt(timeout=)`, races over `areceive`, run deadlines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import perdure
from perdure import Command, Runtime, entrypoint
from perdure.errors import InterruptTimeoutError, RunError
from perdure.eventlog import (
    MemoryEventLog,
    MessageDelivered,
    ReceiveCancelled,
    TimerCancelled,
    TimerFired,
    TimerSet,
)
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.support.waiting import until_state


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
        await until_state(rt, "a", lambda s: s.timers)
        assert await rt.status("a") == "waiting"
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(59.9)
        await asyncio.sleep(0.05)
        assert await rt.status("a") == "waiting"
        clock.advance(0.2)
        await until_state(rt, "a", lambda s: s.terminal)
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
        await until_state(rt, "b", lambda s: s.timers)
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
        await until_state(rt, "d", lambda s: len(s.timers) == 2)
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
        await until_state(rt, "p", lambda s: s.receiving)
        clock.advance(10)
        with pytest.raises(perdure.errors.RunCancelledError, match="deadline exceeded"):
            await result
        with pytest.raises(perdure.errors.RunSettledError):
            await rt.send("p", "too late")
        # A run done in time leaves no timer behind.
        await rt.start("patient", None, run_id="q", deadline=clock.now() + 10)
        await until_state(rt, "q", lambda s: s.receiving)
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
        await until_state(
            rt, handle.run_id, lambda s: s.steps.get("0") and s.steps["0"].retry_timer
        )
        for _ in range(10):
            clock.advance(1)
            await asyncio.sleep(0.01)
        outcome = await rt.wait(handle.run_id, timeout=30)
        assert outcome.status == "cancelled"
        assert "deadline exceeded" in outcome.reason
        assert 1 < len(calls) < 10


def _race(registry: Registry) -> Any:
    @entrypoint(name="race_msg", registry=registry)
    async def race_msg(_: Any) -> Any:
        got = asyncio.ensure_future(perdure.areceive())
        timer = asyncio.ensure_future(perdure.asleep(60))
        done, pending = await asyncio.wait({got, timer}, return_when=asyncio.FIRST_COMPLETED)
        for side in pending:
            side.cancel()
        winner = ["message", got.result()] if got in done else ["timeout", None]
        perdure.set_event("winner", winner)
        after = await perdure.areceive()
        return [winner, after]

    return race_msg


async def _replays_cleanly(registry: Registry, events: list[Any]) -> None:
    report = await perdure.Replayer(registry=registry).areplay(events)
    assert report.divergence is None, report


async def test_areceive_wins_a_race_against_a_durable_sleep(store: dict[str, Any]) -> None:
    registry = Registry()
    _race(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("race_msg", None, run_id="m")
        await until_state(rt, "m", lambda s: s.receiving and s.timers)
        await rt.send("m", "hi")
        await until_state(rt, "m", lambda s: "winner" in s.events and s.receiving)
        assert (await rt.state("m")).events["winner"] == ["message", "hi"]
    # After a restart the race replays with the same winner; the next message goes on.
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(120)  # the losing sleep's timer (if any) changes nothing
        await rt.send("m", "second")
        outcome = await rt.wait("m", timeout=30)
        assert outcome.result == [["message", "hi"], "second"], outcome
        events = await rt.log.read("m")
        assert sum(type(e) is MessageDelivered for e in events) == 2
        await _replays_cleanly(registry, events)


async def test_a_durable_sleep_wins_and_the_cancelled_receive_takes_nothing(
    store: dict[str, Any],
) -> None:
    registry = Registry()
    _race(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("race_msg", None, run_id="s")
        await until_state(rt, "s", lambda s: s.receiving and s.timers)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await until_state(rt, "s", lambda s: s.receiving and s.timers)
        clock.advance(60)
        await until_state(
            rt, "s", lambda s: "winner" in s.events and s.receiving == {"3": "default"}
        )
        await rt.send("s", "for the second receive")
        outcome = await rt.wait("s", timeout=30)
        assert outcome.result == [["timeout", None], "for the second receive"], outcome
        events = await rt.log.read("s")
        cancelled = [e for e in events if type(e) is ReceiveCancelled]
        assert [(e.position, e.topic) for e in cancelled] == [("0", "default")]
        delivered = [e for e in events if type(e) is MessageDelivered]
        assert [e.position for e in delivered] == ["3"]
        await _replays_cleanly(registry, events)


async def test_a_task_races_areceive() -> None:
    registry = Registry()

    @perdure.task
    async def quick(x: int) -> int:
        return x + 1

    @entrypoint(name="task_race", registry=registry)
    async def task_race(_: Any) -> Any:
        got = asyncio.ensure_future(perdure.areceive("cmd", timeout=600))
        work = asyncio.ensure_future(quick(1))
        done, _ = await asyncio.wait({got, work}, return_when=asyncio.FIRST_COMPLETED)
        first = "task" if work in done else "message"
        command = await got  # the receive still waits: it gets the next message
        return [first, await work, command]

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        await rt.start("task_race", None, run_id="t")
        await until_state(rt, "t", lambda s: s.receiving and s.steps.get("0") and s.steps["0"].done)
        await rt.send("t", "go", topic="cmd")
        outcome = await rt.wait("t", timeout=30)
        assert outcome.result == ["task", 2, "go"], outcome
        await _replays_cleanly(registry, await rt.log.read("t"))


async def test_a_long_receive_loop_runs_its_body_once_and_is_still_evicted_while_waiting() -> None:
    """The body's own `areceive()` waits on a future: the body is not re-executed (and
    every earlier receive replayed) for each message, which made long loops quadratic."""
    registry = Registry()
    executions = []

    @entrypoint(name="loop", registry=registry)
    async def loop(n: int) -> int:
        executions.append(1)
        total = 0
        for _ in range(n):
            total += await perdure.areceive()
        return total

    async with Runtime(log=MemoryEventLog(), registry=registry, idle_timeout=0.05) as rt:
        await rt.start("loop", 60, run_id="l")
        for i in range(30):
            await rt.send("l", i)
        await until_state(rt, "l", lambda s: s.delivered.get("default") == 30)
        assert len(executions) == 1
        # Waiting for the next message, the run is idle: it is evicted from memory.
        for _ in range(500):
            if rt.statistics().live_actors == 0:
                break
            await asyncio.sleep(0.01)
        assert rt.statistics().evicted >= 1
        assert rt.statistics().live_actors == 0
        for i in range(30, 60):
            await rt.send("l", i)
        outcome = await rt.wait("l", timeout=30)
        assert outcome.result == sum(range(60))
        assert len(executions) == 2  # once more after the eviction, not once per message


async def test_wait_for_over_areceive_gives_up_and_the_message_goes_to_the_next_receive() -> None:
    registry = Registry()

    @entrypoint(name="impatient", registry=registry)
    async def impatient(_: Any) -> Any:
        try:
            got = await asyncio.wait_for(perdure.areceive(), timeout=0.02)
        except TimeoutError:
            got = "gave up"
        return [got, await perdure.areceive()]

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        await rt.start("impatient", None, run_id="w")
        await until_state(rt, "w", lambda s: s.receiving == {"1": "default"})
        await rt.send("w", "x")
        outcome = await rt.wait("w", timeout=30)
        assert outcome.result == ["gave up", "x"], outcome
        events = await rt.log.read("w")
        assert [e.position for e in events if type(e) is ReceiveCancelled] == ["0"]
        await _replays_cleanly(registry, events)


async def test_an_answer_to_an_interrupt_reaches_a_body_waiting_in_areceive() -> None:
    """The body's own `areceive()` waits without suspending: an event that must re-execute
    the body (here the answer to an interrupt asked by a child task) still does, at once."""
    registry = Registry()

    async def approve() -> Any:
        answer = perdure.interrupt("approve?")
        perdure.set_event("approved", answer)
        return answer

    @entrypoint(name="asks_then_listens", registry=registry)
    async def asks_then_listens(_: Any) -> Any:
        approval = asyncio.ensure_future(approve())
        message = await perdure.areceive()
        return [message, await approval]

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        await rt.start("asks_then_listens", None, run_id="a")
        await until_state(rt, "a", lambda s: s.receiving and s.pending_interrupts())
        await rt.resume("a", "yes")
        await until_state(rt, "a", lambda s: "approved" in s.events)  # before any message
        await rt.send("a", "hello")
        outcome = await rt.wait("a", timeout=30)
        assert outcome.result == ["hello", "yes"], outcome


async def test_a_sync_receive_loop_runs_its_body_once() -> None:
    """A sync body's `receive()` waits in its thread for the next message instead of stopping
    the body and re-executing it (replaying every earlier receive) for each message: a
    receive loop of N messages ran its body N + 1 times."""
    registry = Registry()
    executions = []

    @entrypoint(name="sync_loop", registry=registry)
    def sync_loop(n: int) -> int:
        executions.append(1)
        total = 0
        for _ in range(n):
            total += perdure.receive()
        return total

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        await rt.start("sync_loop", 40, run_id="l")
        await until_state(rt, "l", lambda s: s.receiving)
        for i in range(40):
            await rt.send("l", i)
        outcome = await rt.wait("l", timeout=30)
        assert outcome.result == sum(range(40))
        assert len(executions) == 1
        await _replays_cleanly(registry, await rt.log.read("l"))


async def test_a_sync_receive_gives_its_thread_back_and_is_re_executed_for_a_later_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past a short wait, a sync `receive()` stops the body (its pool thread is not held while
    nothing comes); the next message re-executes it, once, and nothing is lost or doubled."""
    from perdure.actors import _scope

    monkeypatch.setattr(_scope, "THREAD_PARK", 0.0)  # give the thread back at once
    registry = Registry()
    executions = []

    @entrypoint(name="sparse", registry=registry)
    def sparse(_: Any) -> Any:
        executions.append(1)
        return [perdure.receive(), perdure.receive(timeout=600)]

    clock = MockClock(autojump=False)
    async with Runtime(log=MemoryEventLog(), registry=registry, clock=clock) as rt:
        await rt.start("sparse", None, run_id="s")
        await until_state(rt, "s", lambda s: s.receiving)
        await rt.send("s", "one")
        await until_state(rt, "s", lambda s: s.receiving == {"1": "default"})
        await rt.send("s", "two")
        outcome = await rt.wait("s", timeout=30)
        assert outcome.result == ["one", "two"], outcome
        assert 1 <= len(executions) <= 3
        events = await rt.log.read("s")
        assert sum(type(e) is MessageDelivered for e in events) == 2
        assert not (await rt.state("s")).timers
        await _replays_cleanly(registry, events)


async def test_a_sync_body_waiting_in_receive_is_evicted_and_re_executed_for_the_message() -> None:
    registry = Registry()
    executions = []

    @entrypoint(name="idle_sync", registry=registry)
    def idle_sync(_: Any) -> Any:
        executions.append(1)
        return [perdure.receive(), perdure.receive()]

    async with Runtime(log=MemoryEventLog(), registry=registry, idle_timeout=0.05) as rt:
        await rt.start("idle_sync", None, run_id="i")
        await until_state(rt, "i", lambda s: s.receiving)
        for _ in range(500):
            if rt.statistics().live_actors == 0:
                break
            await asyncio.sleep(0.01)
        assert rt.statistics().evicted >= 1
        await rt.send("i", "a")
        await rt.send("i", "b")
        outcome = await rt.wait("i", timeout=30)
        assert outcome.result == ["a", "b"], outcome
        assert 2 <= len(executions) <= 3
