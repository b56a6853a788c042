"""Racing durable things: a task against a durable sleep or an interrupt (issue 12, item 3).

``asyncio.wait({task, asyncio.create_task(asleep(n))}, return_when=FIRST_COMPLETED)``
must wait for whichever comes first, and a later re-execution of the body (after
a pause, or in the Replayer) must see the same winner even though by then both
outcomes are in the log. perdure's own `Suspend` signal must never reach
asyncio's "Task exception was never retrieved" log. Time is a `MockClock`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from perdure import (
    Command,
    MemoryEventLog,
    NonDeterminismError,
    Replayer,
    Runtime,
    asleep,
    entrypoint,
    interrupt,
    task,
)
from perdure.eventlog import Interrupted, TaskCompleted, TimerCancelled, TimerFired, TimerSet
from perdure.testing import MockClock
from tests.support import Calls, cfg, events_of, of_type

CALLS = Calls()
GATES: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    GATES.clear()


@pytest.fixture
def asyncio_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        yield caplog


async def asyncio_errors(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio logged at ERROR once the runtime closed and garbage was collected
    (an exception never retrieved is logged when its task is collected)."""
    await runtime.close()
    await asyncio.sleep(0)
    gc.collect()
    return [r.getMessage() for r in caplog.records if r.name == "asyncio"]


@task
async def race_fetch(key: str) -> str:
    """Returns at once, or once the test opens the gate named `key`."""
    CALLS.hit(key)
    gate = GATES.get(key)
    if gate is not None:
        await gate.wait()
    return f"fetched {key}"


@entrypoint()
async def race_then_ask(spec: dict[str, Any]) -> dict[str, Any]:
    fetch = asyncio.ensure_future(race_fetch(spec["key"]))
    timeout = asyncio.create_task(asleep(2))
    done, _ = await asyncio.wait({fetch, timeout}, return_when=asyncio.FIRST_COMPLETED)
    # Which side is looked at first must not matter: only one of them is done.
    if spec["check_sleep_first"]:
        winner = "sleep" if timeout in done else "task"
    else:
        winner = "task" if fetch in done else "sleep"
    answer = interrupt({"winner": winner}) if spec["ask"] else None
    return {"winner": winner, "answer": answer}


def _spec(key: str, *, ask: bool = False, check_sleep_first: bool = False) -> dict[str, Any]:
    return {"key": key, "ask": ask, "check_sleep_first": check_sleep_first}


async def test_a_task_that_finishes_first_wins_the_race(
    runtime: Runtime, asyncio_log: pytest.LogCaptureFixture
) -> None:
    result = await race_then_ask.ainvoke(_spec("fast"), cfg("race-task-wins"))
    assert result == {"winner": "task", "answer": None}
    events = await events_of(runtime.log, "race-task-wins")
    assert len(of_type(events, TimerCancelled)) == 1  # the losing sleep's timer
    assert (await Replayer(workflows=[race_then_ask]).areplay(events)).ok
    assert await asyncio_errors(runtime, asyncio_log) == []


async def test_a_sleep_that_ends_first_wins_the_race(
    runtime: Runtime, asyncio_log: pytest.LogCaptureFixture
) -> None:
    GATES["slow"] = asyncio.Event()  # never opened while the run lives
    result = await asyncio.wait_for(
        race_then_ask.ainvoke(_spec("slow"), cfg("race-sleep-wins")), 10
    )
    assert result == {"winner": "sleep", "answer": None}
    events = await events_of(runtime.log, "race-sleep-wins")
    assert of_type(events, TimerFired) and not of_type(events, TaskCompleted)
    assert (await Replayer(workflows=[race_then_ask]).areplay(events)).ok
    assert await asyncio_errors(runtime, asyncio_log) == []


@pytest.mark.parametrize("check_sleep_first", [False, True])
async def test_a_re_executed_body_sees_the_winner_it_saw_live_when_the_sleep_won(
    runtime: Runtime, asyncio_log: pytest.LogCaptureFixture, check_sleep_first: bool
) -> None:
    """The sleep won; the task finished after the body had asked a person: on resume both
    are in the log, and the body must still see the sleep as the winner. (The run is
    "running", not "waiting", while the losing task still runs.)"""
    thread = f"race-ask-sleep-{check_sleep_first}"
    GATES["late"] = asyncio.Event()
    spec = _spec("late", ask=True, check_sleep_first=check_sleep_first)
    invoking = asyncio.ensure_future(race_then_ask.ainvoke(spec, cfg(thread)))
    while not of_type(await events_of(runtime.log, thread), Interrupted):  # noqa: ASYNC110 - waits on another task's log
        await asyncio.sleep(0.001)
    assert not invoking.done()
    GATES["late"].set()
    paused = await asyncio.wait_for(invoking, 10)
    assert paused["__interrupt__"][0].value == {"winner": "sleep"}
    assert of_type(await events_of(runtime.log, thread), TaskCompleted)
    result = await race_then_ask.ainvoke(Command(resume="ok"), cfg(thread))
    assert result == {"winner": "sleep", "answer": "ok"}
    events = await events_of(runtime.log, thread)
    assert (await Replayer(workflows=[race_then_ask]).areplay(events)).ok
    assert CALLS["late"] == 1
    assert await asyncio_errors(runtime, asyncio_log) == []


@pytest.mark.parametrize("check_sleep_first", [False, True])
async def test_a_re_executed_body_sees_the_winner_it_saw_live_when_the_task_won(
    runtime: Runtime, asyncio_log: pytest.LogCaptureFixture, check_sleep_first: bool
) -> None:
    """The task won; the sleep's timer fired while the run waited on a person (which
    re-executes the body): both are in the log, and the task must still win."""
    thread = f"race-ask-task-{check_sleep_first}"
    spec = _spec("quick", ask=True, check_sleep_first=check_sleep_first)
    paused = await race_then_ask.ainvoke(spec, cfg(thread))
    assert paused["__interrupt__"][0].value == {"winner": "task"}
    while not of_type(await events_of(runtime.log, thread), TimerFired):  # noqa: ASYNC110 - waits on the clock's autojump
        await asyncio.sleep(0.001)
    assert (await race_then_ask.aget_state(cfg(thread))).status == "waiting"
    result = await race_then_ask.ainvoke(Command(resume="ok"), cfg(thread))
    assert result == {"winner": "task", "answer": "ok"}
    events = await events_of(runtime.log, thread)
    assert (await Replayer(workflows=[race_then_ask]).areplay(events)).ok
    assert await asyncio_errors(runtime, asyncio_log) == []


@entrypoint()
async def race_task_against_question(key: str) -> dict[str, Any]:
    async def ask() -> Any:
        return interrupt("go on?")

    fetch = asyncio.ensure_future(race_fetch(key))
    question = asyncio.create_task(ask())
    done, _ = await asyncio.wait({fetch, question}, return_when=asyncio.FIRST_COMPLETED)
    if question in done:
        return {"answer": question.result(), "fetched": await fetch}
    return {"answer": None, "fetched": fetch.result()}


async def test_a_task_raced_against_an_interrupt_pauses_then_finishes(
    runtime: Runtime, asyncio_log: pytest.LogCaptureFixture
) -> None:
    """An interrupt pauses the whole run (it is never a silent winner); once answered, the
    run finishes with the task's recorded result, and the task ran once."""
    paused = await race_task_against_question.ainvoke("q", cfg("race-question"))
    assert paused["__interrupt__"][0].value == "go on?"
    result = await race_task_against_question.ainvoke(Command(resume="yes"), cfg("race-question"))
    assert result == {"answer": "yes", "fetched": "fetched q"}
    assert CALLS["q"] == 1
    assert await asyncio_errors(runtime, asyncio_log) == []


@entrypoint()
async def race_wait_for(key: str) -> list[Any]:
    fetched = await asyncio.wait_for(race_fetch(key), timeout=30)
    await asyncio.wait_for(asleep(5), timeout=30)
    return [fetched, "slept"]


async def test_asyncio_wait_for_over_a_task_and_a_durable_sleep(
    runtime: Runtime, asyncio_log: pytest.LogCaptureFixture
) -> None:
    assert await asyncio.wait_for(race_wait_for.ainvoke("w", cfg("race-wait-for")), 10) == [
        "fetched w",
        "slept",
    ]
    assert await asyncio_errors(runtime, asyncio_log) == []


def _define_pair(order: str) -> Any:
    @entrypoint(name="race_pair")
    async def race_pair(key: str) -> dict[str, Any]:
        if order == "ask-both-then-await":
            first, second = race_fetch(key + "-1"), race_fetch(key + "-2")
            results = [await first, await second]
        else:  # a refactor: await the first before asking for the second
            results = [await race_fetch(key + "-1")]
            results.append(await race_fetch(key + "-2"))
        return {"results": results, "answer": interrupt("done?")}

    return race_pair


async def test_code_that_now_awaits_a_task_earlier_still_gets_its_recorded_result(
    runtime: Runtime,
) -> None:
    """Parallel calls' outcomes are held until the code has asked for both calls again;
    code that awaits the first before asking for the second must not wait forever."""
    config = cfg("race-refactor")
    paused = await _define_pair("ask-both-then-await").ainvoke("p", config)
    assert paused["__interrupt__"][0].value == "done?"
    refactored = _define_pair("await-first")
    events = await events_of(runtime.log, "race-refactor")
    replayed = await asyncio.wait_for(Replayer(workflows=[refactored]).areplay(events), 10)
    assert replayed.ok
    result = await asyncio.wait_for(refactored.ainvoke(Command(resume="yes"), config), 10)
    assert result == {"results": ["fetched p-1", "fetched p-2"], "answer": "yes"}
    assert CALLS["p-1"] == CALLS["p-2"] == 1


async def test_a_run_waiting_in_a_race_replays_up_to_the_race() -> None:
    """The deploy check on a run still racing: the replay ends where the run waits, fast."""
    GATES["pending"] = asyncio.Event()
    log = MemoryEventLog()
    async with Runtime(log=log, clock=MockClock(autojump=False)) as rt:
        await rt.start(race_then_ask, _spec("pending"), run_id="race-in-flight")
        while not of_type(await events_of(log, "race-in-flight"), TimerSet):  # noqa: ASYNC110 - waits on another task's log
            await asyncio.sleep(0.001)
        events = await events_of(log, "race-in-flight")
        result = await asyncio.wait_for(Replayer(workflows=[race_then_ask]).areplay(events), 5)
        assert result.ok and result.recorded_end == "running"
        assert result.stopped_at == "0" and result.replayed == "reached the end of the log"
        GATES["pending"].set()


def _define_watch(version: int) -> Any:
    @entrypoint(name="race_watch")
    async def race_watch(key: str) -> dict[str, Any]:
        first = asyncio.ensure_future(race_fetch(key + "-1"))
        if version == 1:
            second = race_fetch(key + "-2")  # asked before the first one finished
        await asyncio.wait({first})
        answer = interrupt("more?")
        if version == 1:
            return {"first": first.result(), "second": await second, "answer": answer}
        return {"first": first.result(), "answer": answer}

    return race_watch


async def test_a_race_in_changed_code_does_not_wait_for_steps_it_no_longer_asks_for(
    runtime: Runtime,
) -> None:
    """v1 asked for a second task before the first finished, so on replay the first one's
    result waits until the second is asked for again; v2 no longer asks for it: the run
    must fail loudly where v2 departs from the log, not wait forever."""
    config = cfg("race-watch")
    paused = await _define_watch(1).ainvoke("w", config)
    assert paused["__interrupt__"][0].value == "more?"
    with pytest.raises(NonDeterminismError) as info:
        await asyncio.wait_for(_define_watch(2).ainvoke(Command(resume="no"), config), 10)
    assert info.value.position == "1"
