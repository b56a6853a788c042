"""@task: parallel fan-out, bounded concurrency, nesting, sync/async mixes, retries, bad calls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import perdure
from perdure import (
    Command,
    InvalidArgumentsError,
    MemoryEventLog,
    NotInWorkflowError,
    RetryPolicy,
    RunFailedError,
    Runtime,
    entrypoint,
    interrupt,
    task,
)
from perdure.eventlog import TaskAttemptFailed, TaskAttemptStarted, TimerSet
from perdure.testing import MockClock
from tests.support import Calls, cfg, events_of, of_type

CALLS = Calls()


class Gauge:
    """How many task bodies run at the same moment, and the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.active = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


GAUGE = Gauge()
BARRIER: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()
    GAUGE.reset()


# -- parallel fan-out ---------------------------------------------------------------------


@task
async def tasks_slow_square(i: int) -> int:
    GAUGE.enter()
    try:
        await asyncio.sleep(0.02)
    finally:
        GAUGE.leave()
    return i * i


@entrypoint()
async def tasks_fanout(n: int) -> list[int]:
    futures = [tasks_slow_square(i) for i in range(n)]  # all called before any is awaited
    return [await future for future in futures]


@task
def tasks_meet(i: int) -> int:
    """Sync task: waits at a barrier that only opens when all of them run at once."""
    CALLS.hit(f"meet-{i}")
    BARRIER["barrier"].wait(timeout=10)
    return i + 100


@entrypoint()
def tasks_sync_fanout(n: int) -> list[int]:
    futures = [tasks_meet(i) for i in range(n)]
    return [future.result() for future in futures]


async def test_tasks_called_before_waiting_run_in_parallel(runtime: Runtime) -> None:
    assert await tasks_fanout.ainvoke(8, cfg("fan-async")) == [i * i for i in range(8)]
    assert GAUGE.peak == 8


async def test_sync_tasks_from_a_sync_entrypoint_run_in_parallel(runtime: Runtime) -> None:
    BARRIER["barrier"] = threading.Barrier(6)  # breaks (and the tasks fail) unless all 6 overlap
    assert await tasks_sync_fanout.ainvoke(6, cfg("fan-sync")) == [100 + i for i in range(6)]
    assert CALLS.total() == 6


async def test_parallelism_is_bounded_by_task_concurrency() -> None:
    async with Runtime(log=MemoryEventLog(), task_concurrency=3):
        assert await tasks_fanout.ainvoke(10, cfg("fan-bounded")) == [i * i for i in range(10)]
    assert GAUGE.peak == 3


# -- tasks calling tasks ----------------------------------------------------------------------


@task
def tasks_leaf(x: int) -> int:
    CALLS.hit("leaf")
    return x + 1


@task
def tasks_mid(x: int) -> int:
    CALLS.hit("mid")
    first, second = tasks_leaf(x), tasks_leaf(x * 10)
    return first.result() + second.result()


@task
async def tasks_mid_async(x: int) -> int:
    CALLS.hit("mid_async")
    return 2 * await tasks_leaf(x)


@entrypoint()
def tasks_nested(x: int) -> dict[str, Any]:
    a = tasks_mid(x).result()
    b = tasks_mid_async(x).result()
    answer = interrupt("continue?")
    return {"a": a, "b": b, "answer": answer}


async def test_tasks_calling_tasks_are_recorded_and_not_rerun_on_resume(runtime: Runtime) -> None:
    config = cfg("nested")
    paused = await tasks_nested.ainvoke(1, config)
    assert paused["__interrupt__"][0].value == "continue?"
    before = dict(CALLS.counts)
    assert before == {"mid": 1, "mid_async": 1, "leaf": 3}

    result = await tasks_nested.ainvoke(Command(resume="yes"), config)
    assert result == {"a": 2 + 11, "b": 4, "answer": "yes"}
    assert dict(CALLS.counts) == before  # nothing ran again: the body replayed recorded results

    state = await tasks_nested.aget_state(config)
    recorded = {t.position: (t.name, t.result) for t in state.tasks}
    assert recorded == {
        "0.0": ("tasks_leaf", 2),
        "0.1": ("tasks_leaf", 11),
        "0": ("tasks_mid", 13),
        "1.0": ("tasks_leaf", 2),
        "1": ("tasks_mid_async", 4),
    }


# -- sync and async combinations ----------------------------------------------------------------


@task
def tasks_sync_inc(x: int) -> int:
    return x + 1


@task
async def tasks_async_inc(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@entrypoint()
async def tasks_async_body(x: int) -> list[int]:
    return [await tasks_sync_inc(x), await tasks_async_inc(x)]


@entrypoint()
def tasks_sync_body(x: int) -> list[int]:
    return [tasks_sync_inc(x).result(), tasks_async_inc(x).result()]


@entrypoint()
async def tasks_blocking_result_in_async(x: int) -> int:
    return tasks_async_inc(x).result()  # wrong: blocks the loop; must be `await`


async def test_sync_and_async_entrypoints_call_sync_and_async_tasks(runtime: Runtime) -> None:
    assert await tasks_async_body.ainvoke(1, cfg("mix-async")) == [2, 2]
    assert await tasks_sync_body.ainvoke(5, cfg("mix-sync")) == [6, 6]


async def test_result_in_async_code_is_a_clear_error(runtime: Runtime) -> None:
    with pytest.raises(RunFailedError, match="await") as info:
        await tasks_blocking_result_in_async.ainvoke(1, cfg("mix-wrong"))
    assert info.value.error_type == "RuntimeError"


def test_workflow_primitives_outside_a_workflow_raise_not_in_workflow() -> None:
    with pytest.raises(NotInWorkflowError, match="tasks_leaf"):
        tasks_leaf(1)
    with pytest.raises(NotInWorkflowError, match="interrupt"):
        interrupt("hello?")
    with pytest.raises(NotInWorkflowError, match="sleep"):
        perdure.sleep(1)
    assert CALLS.total() == 0


# -- retries --------------------------------------------------------------------------------------


@task(retry_policy=RetryPolicy(max_attempts=3, initial_interval_ms=8000))
def tasks_flaky(key: str) -> str:
    CALLS.hit(key)
    if CALLS[key] < 3:
        raise ConnectionError(f"attempt {CALLS[key]} failed")
    return f"ok after {CALLS[key]}"


@task(retry_policy=RetryPolicy(max_attempts=2, initial_interval_ms=1000))
def tasks_always_fails(key: str) -> str:
    CALLS.hit(key)
    raise ConnectionError("down")


@entrypoint()
def tasks_retrying(key: str) -> str:
    return tasks_flaky(key).result()


@entrypoint(retry_policy=RetryPolicy(max_attempts=3, initial_interval_ms=1000))
def tasks_body_retries(key: str) -> str:
    CALLS.hit("body")
    return tasks_always_fails(key).result()


@entrypoint(retry_policy=RetryPolicy(max_attempts=3, initial_interval_ms=1000))
def tasks_body_flaky(key: str) -> str:
    CALLS.hit("body")
    value = tasks_leaf(1).result()
    if CALLS["body"] < 3:
        raise ValueError("the body itself failed")
    return f"{key}:{value}"


async def test_task_retry_policy_backs_off_on_virtual_time(
    runtime: Runtime, clock: MockClock
) -> None:
    start = clock.now()
    assert await tasks_retrying.ainvoke("flaky", cfg("retry-ok")) == "ok after 3"
    assert CALLS["flaky"] == 3
    assert clock.now() - start >= 8 + 16  # exponential backoff: 8 s, then 16 s (virtual)
    events = await events_of(runtime.log, "retry-ok")
    assert [e.attempt for e in of_type(events, TaskAttemptFailed)] == [0, 1]
    assert [round(e.due_at - start) for e in of_type(events, TimerSet)] == [8, 24]


async def test_an_entrypoint_retry_policy_never_multiplies_task_attempts(runtime: Runtime) -> None:
    with pytest.raises(RunFailedError) as info:
        await tasks_body_retries.ainvoke("down", cfg("retry-nested"))
    assert CALLS["down"] == 2  # the task's own policy: 2 attempts — not 2 x 3
    assert CALLS["body"] == 1
    assert info.value.error_type == "TaskFailedError"
    assert "ConnectionError" in info.value.error_message


async def test_body_retries_reuse_completed_tasks(runtime: Runtime) -> None:
    assert await tasks_body_flaky.ainvoke("k", cfg("retry-body")) == "k:2"
    assert CALLS["body"] == 3
    assert CALLS["leaf"] == 1


# -- wrong arguments -------------------------------------------------------------------------------


@entrypoint()
def tasks_wrong_args(catch: bool) -> str:
    if not catch:
        tasks_leaf(y=1)  # type: ignore[call-arg]
    try:
        tasks_leaf(1, 2)  # type: ignore[call-arg]
    except InvalidArgumentsError as exc:
        return str(exc)
    return "nothing raised"


async def test_wrong_task_arguments_raise_invalid_arguments(runtime: Runtime) -> None:
    message = await tasks_wrong_args.ainvoke(True, cfg("wrong-args-caught"))
    assert "tasks_leaf" in message and "too many positional arguments" in message

    with pytest.raises(RunFailedError) as info:
        await tasks_wrong_args.ainvoke(False, cfg("wrong-args"))
    assert info.value.error_type == "InvalidArgumentsError"
    assert "tasks_leaf" in info.value.error_message
    assert CALLS["leaf"] == 0
    events = await events_of(runtime.log, "wrong-args")
    assert of_type(events, TaskAttemptStarted) == []  # nothing was recorded for a bad call


def test_an_entrypoint_needs_exactly_one_positional_input() -> None:
    with pytest.raises(InvalidArgumentsError, match="one positional input"):

        @entrypoint()
        def tasks_two_inputs(a: int, b: int) -> int:
            return a + b
