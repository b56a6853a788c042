"""After a failure, invoke(None, config) continues the run; new input starts a new invocation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perdure import Command, RetryPolicy, Runtime, asleep, entrypoint, interrupt, task
from perdure.errors import InvalidResumeError, RunBusyError, RunCancelledError, RunFailedError
from perdure.eventlog import TaskAttemptFailed, TaskAttemptStarted, TaskCompleted
from perdure.testing import MockClock
from tests.support import Calls, cfg, events_of, names, of_type
from tests.support.waiting import until

CALLS = Calls()
BROKEN: set[str] = set()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()
    BROKEN.clear()


@task(retry_policy=RetryPolicy(max_attempts=2, initial_interval_ms=10))
def cont_step(name: str) -> str:
    CALLS.hit(name)
    if name in BROKEN:
        raise RuntimeError(f"{name} is broken")
    return name.upper()


@entrypoint()
def cont_pipeline(names: list[str], *, previous: Any = None) -> dict[str, Any]:
    CALLS.hit("body")
    results = [cont_step(n).result() for n in names]
    if "body" in BROKEN:
        raise ValueError("the body is broken")
    return {"results": results, "invocations": (previous or {}).get("invocations", 0) + 1}


@entrypoint()
def cont_ask(x: int) -> Any:
    return interrupt(f"ok to use {x}?")


async def test_continue_after_a_task_exhausted_its_retries(runtime: Runtime) -> None:
    config = cfg("cont-task")
    BROKEN.add("c")
    with pytest.raises(RunFailedError, match="c is broken"):
        await cont_pipeline.ainvoke(["a", "b", "c", "d"], config)
    assert dict(CALLS.counts) == {"body": 1, "a": 1, "b": 1, "c": 2}
    assert (await cont_pipeline.aget_state(config)).status == "failed"

    BROKEN.clear()  # the underlying problem is fixed
    result = await cont_pipeline.ainvoke(None, config)
    assert result == {"results": ["A", "B", "C", "D"], "invocations": 1}
    # completed tasks returned their recorded results; only the failed one (and the rest) ran
    assert dict(CALLS.counts) == {"body": 2, "a": 1, "b": 1, "c": 3, "d": 1}
    events = await events_of(runtime.log, "cont-task")
    assert names(events).count("run_continued") == 1
    assert [e.position for e in of_type(events, TaskCompleted)] == ["0", "1", "2", "3"]


async def test_continue_after_the_body_raised(runtime: Runtime) -> None:
    config = cfg("cont-body")
    BROKEN.add("body")
    with pytest.raises(RunFailedError, match="the body is broken") as info:
        await cont_pipeline.ainvoke(["a", "b"], config)
    assert info.value.error_type == "ValueError"
    BROKEN.clear()
    assert await cont_pipeline.ainvoke(None, config) == {"results": ["A", "B"], "invocations": 1}
    assert dict(CALLS.counts) == {"body": 2, "a": 1, "b": 1}

    # continuing a completed thread changes nothing and returns its result again
    assert await cont_pipeline.ainvoke(None, config) == {"results": ["A", "B"], "invocations": 1}
    assert dict(CALLS.counts) == {"body": 2, "a": 1, "b": 1}


async def test_new_input_after_a_failure_starts_a_new_invocation_with_previous(
    runtime: Runtime,
) -> None:
    config = cfg("cont-new-input")
    assert (await cont_pipeline.ainvoke(["a"], config))["invocations"] == 1
    BROKEN.add("x")
    with pytest.raises(RunFailedError):
        await cont_pipeline.ainvoke(["x"], config)
    BROKEN.clear()
    # A new input does not continue the failed invocation: it starts invocation 2, whose
    # `previous` is the value saved by the last *completed* one.
    assert await cont_pipeline.ainvoke(["a", "y"], config) == {
        "results": ["A", "Y"],
        "invocations": 2,
    }
    assert CALLS["a"] == 2  # a new invocation runs its tasks afresh
    state = await cont_pipeline.aget_state(config)
    assert state.invocation == 2
    assert state.input == ["a", "y"]


async def test_new_input_while_waiting_on_an_interrupt_is_busy(runtime: Runtime) -> None:
    config = cfg("cont-busy")
    paused = await cont_ask.ainvoke(1, config)
    with pytest.raises(RunBusyError, match="resume") as info:
        await cont_ask.ainvoke(2, config)
    assert info.value.status == "waiting"
    # the thread is untouched: still waiting on the same question, and resumable
    state = await cont_ask.aget_state(config)
    assert state.interrupts == tuple(paused["__interrupt__"])
    assert state.input == 1
    assert await cont_ask.ainvoke(Command(resume="yes"), config) == "yes"
    (second,) = (await cont_ask.ainvoke(2, config))["__interrupt__"]  # now a new input is fine
    assert second.value == "ok to use 2?"
    assert second.id != paused["__interrupt__"][0].id


# -- continuing a cancelled run (issue 12, item 8) --------------------------------------------

GATE: dict[str, asyncio.Event] = {}


@task(name="cc_quick")
async def cc_quick(name: str) -> str:
    CALLS.hit(name)
    return name.upper()


@task(name="cc_slow")
async def cc_slow(name: str) -> str:
    CALLS.hit(name)
    await GATE[name].wait()
    return name.upper()


@entrypoint(name="cc_flow")
async def cc_flow(x: int) -> list[str]:
    first = await cc_quick("a")
    second = await cc_slow("b")
    await asleep(60)
    return [first, second, await cc_quick("c")]


async def test_continue_reopens_a_cancelled_run_from_its_last_completed_step(
    runtime: Runtime, memlog: Any
) -> None:
    GATE["b"] = asyncio.Event()
    handle = await runtime.start(cc_flow, 1, run_id="cc-1")
    await until(lambda: CALLS["b"] == 1, step=0)
    await runtime.cancel("cc-1")
    assert await runtime.status("cc-1") == "cancelled"
    with pytest.raises(RunCancelledError):
        await handle.result()

    GATE["b"].set()
    await runtime.continue_run("cc-1")
    assert await handle.result() == ["A", "B", "C"]
    assert dict(CALLS.counts) == {"a": 1, "b": 2, "c": 1}  # "a" was not run again
    events = await events_of(memlog, "cc-1")
    assert names(events).count("run_cancelled") == 1
    assert names(events).count("run_continued") == 1
    # The attempt the cancel cut short is in the log, and the next one has a higher number.
    b_starts = [e.attempt for e in of_type(events, TaskAttemptStarted) if e.name == "cc_slow"]
    assert b_starts == [0, 1]
    (ended,) = [e for e in of_type(events, TaskAttemptFailed) if e.name == "cc_slow"]
    assert ended.attempt == 0 and "cancel" in ended.message


async def test_continue_re_arms_a_sleep_that_the_cancel_stopped(
    runtime: Runtime, clock: MockClock
) -> None:
    GATE["b"] = asyncio.Event()
    GATE["b"].set()
    handle = await runtime.start(cc_flow, 1, run_id="cc-sleep")
    await until(lambda: CALLS["b"] == 1, step=0)
    for _ in range(100):
        if await runtime.status("cc-sleep") == "waiting":
            break
        await asyncio.sleep(0)
    assert await runtime.status("cc-sleep") == "waiting"  # in the durable sleep
    await runtime.cancel("cc-sleep")
    await runtime.continue_run("cc-sleep")
    assert await handle.result() == ["A", "B", "C"]
    assert dict(CALLS.counts) == {"a": 1, "b": 1, "c": 1}


async def test_continue_via_invoke_none_reopens_a_cancelled_thread(runtime: Runtime) -> None:
    GATE["b"] = asyncio.Event()
    config = cfg("cc-invoke")
    run = asyncio.ensure_future(cc_flow.ainvoke(1, config))
    await until(lambda: CALLS["b"] == 1, step=0)
    await runtime.cancel("cc-invoke")
    with pytest.raises(RunCancelledError):
        await run
    GATE["b"].set()
    assert await cc_flow.ainvoke(None, config) == ["A", "B", "C"]


async def test_continue_on_a_run_with_nothing_to_continue_says_so(runtime: Runtime) -> None:
    GATE["b"] = asyncio.Event()
    GATE["b"].set()
    done = await runtime.start(cont_ask, 1, run_id="cc-waiting")
    await runtime.wait("cc-waiting")
    with pytest.raises(InvalidResumeError, match="waiting"):
        await runtime.continue_run("cc-waiting")
    await runtime.send("cc-waiting", Command(resume=True))
    assert await done.result() is True
    with pytest.raises(InvalidResumeError, match="completed"):
        await runtime.continue_run("cc-waiting")
    assert await runtime.status("cc-waiting") == "completed"
    # invoke(None) on a settled thread still answers with its last result.
    assert await cont_ask.ainvoke(None, cfg("cc-waiting")) is True
