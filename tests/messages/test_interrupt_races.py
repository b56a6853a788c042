"""`ainterrupt()`: an interrupt awaited in async code, one side of a race with a recorded winner.

The loser of a race (or an ``asyncio.wait_for`` that gave up) is withdrawn
(`interrupt_cancelled`): a later resume is refused, and a replay leaves it waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import perdure
from perdure import Command, Runtime, entrypoint
from perdure.errors import InterruptTimeoutError, InvalidResumeError
from perdure.eventlog import (
    InterruptCancelled,
    MemoryEventLog,
    Resumed,
    TimerCancelled,
)
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.support.waiting import until_state


async def _replays_cleanly(registry: Registry, events: list[Any]) -> None:
    report = await perdure.Replayer(registry=registry).areplay(events, raise_on_failure=True)
    assert report.divergence is None, report


def _approval_race(registry: Registry) -> None:
    @entrypoint(name="approval_race", registry=registry)
    async def approval_race(_: Any) -> Any:
        asked = asyncio.ensure_future(perdure.ainterrupt({"approve": "refund"}))
        timer = asyncio.ensure_future(perdure.asleep(60))
        done, pending = await asyncio.wait({asked, timer}, return_when=asyncio.FIRST_COMPLETED)
        for side in pending:
            side.cancel()
        winner = ["answer", asked.result()] if asked in done else ["timeout", None]
        perdure.set_event("winner", winner)
        after = await perdure.areceive()
        return [winner, after]


async def test_the_answer_wins_a_race_against_a_durable_sleep(store: dict[str, Any]) -> None:
    registry = Registry()
    _approval_race(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("approval_race", None, run_id="a")
        # Paused on the question for its callers, although its body still runs the race.
        outcome = await rt.wait("a", timeout=30)
        assert outcome.status == "waiting", outcome
        assert [i.value for i in outcome.interrupts] == [{"approve": "refund"}]
        await until_state(rt, "a", lambda s: s.timers)
        await rt.resume("a", "yes")
        await until_state(rt, "a", lambda s: "winner" in s.events and s.receiving)
        assert (await rt.state("a")).events["winner"] == ["answer", "yes"]
    # After a restart the race replays with the same winner; the body goes on.
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(120)  # the losing sleep's timer changes nothing
        await rt.send("a", "next")
        outcome = await rt.wait("a", timeout=30)
        assert outcome.result == [["answer", "yes"], "next"], outcome
        events = await rt.log.read("a")
        assert not [e for e in events if type(e) is InterruptCancelled]
        assert sum(type(e) is Resumed for e in events) == 1
        await _replays_cleanly(registry, events)


async def test_a_durable_sleep_wins_and_the_interrupt_is_withdrawn(store: dict[str, Any]) -> None:
    registry = Registry()
    _approval_race(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("approval_race", None, run_id="s")
        await until_state(rt, "s", lambda s: s.pending_interrupts() and s.timers)
    # The race survives a restart: the sleep fires in the next process and wins.
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(60)
        await until_state(rt, "s", lambda s: "winner" in s.events and not s.pending_interrupts())
        events = await rt.log.read("s")
        withdrawn = [e for e in events if type(e) is InterruptCancelled]
        assert [e.position for e in withdrawn] == ["0"]
        # Nobody can answer it any more, and the error says why.
        with pytest.raises(InvalidResumeError, match="withdrawn"):
            await rt.resume("s", "too late")
        with pytest.raises(InvalidResumeError, match="withdrawn"):
            await rt.resume("s", {withdrawn[0].interrupt_id: "too late"})
        await rt.send("s", "for the receive")
        outcome = await rt.wait("s", timeout=30)
        assert outcome.result == [["timeout", None], "for the receive"], outcome
        events = await rt.log.read("s")
        assert not [e for e in events if type(e) is Resumed]
        await _replays_cleanly(registry, events)


async def test_the_body_awaiting_ainterrupt_pauses_invoke_and_is_not_re_executed(
    store: dict[str, Any],
) -> None:
    """Awaited by the body itself, an `ainterrupt()` parks the body: `invoke` returns the
    question, and the answer reaches the waiting body without re-executing it."""
    registry = Registry()
    executions = []

    @entrypoint(name="ask", registry=registry)
    async def ask(_: Any) -> Any:
        executions.append(1)
        first = await perdure.ainterrupt("first?")
        second = await perdure.ainterrupt("second?")
        return [first, second]

    async with Runtime(**store, registry=registry) as rt:
        config = {"configurable": {"thread_id": "t"}}
        paused = await ask.ainvoke(None, config)
        assert [i.value for i in paused["__interrupt__"]] == ["first?"]
        paused = await ask.ainvoke(Command(resume=1), config)
        assert [i.value for i in paused["__interrupt__"]] == ["second?"]
        assert await ask.ainvoke(Command(resume=2), config) == [1, 2]
        assert len(executions) == 1
        await _replays_cleanly(registry, await rt.log.read("t"))


async def test_a_body_parked_in_ainterrupt_is_evicted_and_answered_later() -> None:
    registry = Registry()
    executions = []

    @entrypoint(name="patient", registry=registry)
    async def patient(_: Any) -> Any:
        executions.append(1)
        return await perdure.ainterrupt("ok?")

    async with Runtime(log=MemoryEventLog(), registry=registry, idle_timeout=0.05) as rt:
        await rt.start("patient", None, run_id="p")
        await until_state(rt, "p", lambda s: s.pending_interrupts())
        for _ in range(500):
            if rt.statistics().live_actors == 0:
                break
            await asyncio.sleep(0.01)
        assert rt.statistics().evicted >= 1
        await rt.resume("p", "fine")
        assert (await rt.wait("p", timeout=30)).result == "fine"
        assert len(executions) == 2  # once more after the eviction


async def test_an_ainterrupt_timeout_wins_over_a_receive(store: dict[str, Any]) -> None:
    registry = Registry()

    @entrypoint(name="expiring", registry=registry)
    async def expiring(_: Any) -> Any:
        asked = asyncio.ensure_future(perdure.ainterrupt("approve?", timeout=30))
        got = asyncio.ensure_future(perdure.areceive())
        done, pending = await asyncio.wait({asked, got}, return_when=asyncio.FIRST_COMPLETED)
        for side in pending:
            side.cancel()
        try:
            return ["answer", await asked] if asked in done else ["message", got.result()]
        except InterruptTimeoutError as exc:
            return ["timed out", exc.timeout]

    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("expiring", None, run_id="e")
        await until_state(rt, "e", lambda s: s.timers and s.receiving)
        assert (await rt.wait("e", timeout=30)).status == "waiting"  # paused on the question
        clock.advance(30)
        await until_state(rt, "e", lambda s: s.terminal)
        outcome = await rt.wait("e", timeout=30)
        assert outcome.result == ["timed out", 30.0], outcome
        with pytest.raises(perdure.errors.RunSettledError):
            await rt.send("e", "too late")
        events = await rt.log.read("e")
        await _replays_cleanly(registry, events)


async def test_a_message_wins_and_the_interrupt_timer_is_cancelled() -> None:
    registry = Registry()

    @entrypoint(name="either", registry=registry)
    async def either(_: Any) -> Any:
        asked = asyncio.ensure_future(perdure.ainterrupt("approve?", timeout=30))
        got = asyncio.ensure_future(perdure.areceive())
        done, pending = await asyncio.wait({asked, got}, return_when=asyncio.FIRST_COMPLETED)
        for side in pending:
            side.cancel()
        first = ["message", got.result()] if got in done else ["answer", asked.result()]
        return [first, await perdure.areceive()]

    clock = MockClock(autojump=False)
    async with Runtime(log=MemoryEventLog(), registry=registry, clock=clock) as rt:
        await rt.start("either", None, run_id="m")
        await until_state(rt, "m", lambda s: s.timers and s.receiving)
        await rt.send("m", "hi")
        await until_state(rt, "m", lambda s: not s.pending_interrupts())
        assert not (await rt.state("m")).timers
        clock.advance(60)
        with pytest.raises(InvalidResumeError, match="withdrawn"):
            await rt.resume("m", "late")
        await rt.send("m", "bye")
        outcome = await rt.wait("m", timeout=30)
        assert outcome.result == [["message", "hi"], "bye"], outcome
        events = await rt.log.read("m")
        assert sum(type(e) is TimerCancelled for e in events) == 1
        assert [e.position for e in events if type(e) is InterruptCancelled] == ["0"]
        await _replays_cleanly(registry, events)


async def test_wait_for_over_ainterrupt_gives_up_and_a_late_answer_is_refused() -> None:
    registry = Registry()

    @entrypoint(name="impatient", registry=registry)
    async def impatient(_: Any) -> Any:
        try:
            got = await asyncio.wait_for(perdure.ainterrupt("quick?"), timeout=0.02)
        except TimeoutError:
            got = "gave up"
        return [got, await perdure.ainterrupt("slow?")]

    async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
        await rt.start("impatient", None, run_id="w")
        await until_state(
            rt, "w", lambda s: [i.question for i in s.pending_interrupts()] == ["slow?"]
        )
        state = await rt.state("w")
        withdrawn = state.steps["0"]
        assert withdrawn.kind == "interrupt" and withdrawn.cancelled
        with pytest.raises(InvalidResumeError, match="withdrawn"):
            await rt.resume("w", {withdrawn.interrupt_id: "late"})
        await rt.resume("w", "ok")
        outcome = await rt.wait("w", timeout=30)
        assert outcome.result == ["gave up", "ok"], outcome
        events = await rt.log.read("w")
        assert [e.position for e in events if type(e) is InterruptCancelled] == ["0"]
        await _replays_cleanly(registry, events)


async def test_the_replayer_shows_a_run_waiting_in_an_ainterrupt_race() -> None:
    """A run waiting on both sides of a race replays without divergence, as waiting."""
    registry = Registry()

    @entrypoint(name="waits", registry=registry)
    async def waits(_: Any) -> Any:
        asked = asyncio.ensure_future(perdure.ainterrupt("left?"))
        timer = asyncio.ensure_future(perdure.asleep(60))
        await asyncio.wait({asked, timer}, return_when=asyncio.FIRST_COMPLETED)
        return "done"

    clock = MockClock(autojump=False)
    async with Runtime(log=MemoryEventLog(), registry=registry, clock=clock) as rt:
        await rt.start("waits", None, run_id="r")
        await until_state(rt, "r", lambda s: s.pending_interrupts() and s.timers)
        report = await perdure.Replayer(registry=registry).areplay(await rt.log.read("r"))
        assert report.divergence is None, report
        assert report.recorded_end == "waiting"


def test_perdure_replay_replays_the_golden_interrupt_race() -> None:
    """The CLI replays a log with a withdrawn `ainterrupt()` (`interrupt_cancelled`)."""
    from pathlib import Path

    from tests.support.cli import cli

    golden = Path(__file__).resolve().parents[1] / "golden"
    ran = cli(
        "replay",
        "--file",
        str(golden / "workflow_interrupt_race.jsonl"),
        "--app",
        f"{golden / 'golden_app.py'}:GOLDEN",
    )
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0] == (
        "run golden-approval-race (workflow golden_approval_race, invocation 0): OK"
    )
    assert "recorded run: completed" in ran.out
