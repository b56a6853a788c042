"""Sync tasks that sync workflow code waits on at once run in that code's own thread.

`Execution.run_inline`: the first attempt of a sync task called from sync code
and waited on right away (``t(x).result()``) runs in the caller's thread, and
the actor records it like any attempt. Everything around it must stay as it
was: retries (in the task pool), errors, cancellation, nested calls, replay,
and the parallelism of calls not waited on at once (they go the usual way
when the code moves on, or when the watchdog sees it took too long).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from perdure import Command, RetryPolicy, Runtime, entrypoint, interrupt, task
from perdure.actors import _execution
from perdure.actors._messages import ExecuteTask
from perdure.errors import TaskFailedError
from perdure.eventlog import TaskAttemptFailed, TaskAttemptStarted, TaskCompleted
from perdure.testing import MockClock
from tests.support import Calls, cfg, events_of, of_type

CALLS = Calls()
#: thread idents seen by bodies and tasks, by key
THREADS: dict[str, int] = {}
EVENTS: dict[str, threading.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()
    THREADS.clear()
    EVENTS.clear()


@task
def inl_double(x: int) -> int:
    CALLS.hit("double")
    THREADS[f"task-{x}"] = threading.get_ident()
    return 2 * x


@entrypoint()
def inl_steps(n: int) -> int:
    THREADS["body"] = threading.get_ident()
    return sum(inl_double(i).result() for i in range(n))


async def test_a_sync_task_waited_on_at_once_runs_in_the_body_thread(runtime: Runtime) -> None:
    assert await inl_steps.ainvoke(3, cfg("inl-steps")) == 6
    assert THREADS["task-0"] == THREADS["task-1"] == THREADS["task-2"] == THREADS["body"]
    events = await events_of(runtime.log, "inl-steps")
    started = of_type(events, TaskAttemptStarted)
    assert [(e.position, e.attempt) for e in started] == [("0", 0), ("1", 0), ("2", 0)]
    assert [e.result for e in of_type(events, TaskCompleted)] == [0, 2, 4]
    # Each start precedes its result, with the call's input recorded.
    assert [e.input for e in started] == [[[0], {}], [[1], {}], [[2], {}]]


@task(retry_policy=RetryPolicy(max_attempts=3, initial_interval_ms=1000))
def inl_flaky(key: str) -> str:
    CALLS.hit(key)
    THREADS[f"{key}-{CALLS.counts[key]}"] = threading.get_ident()
    if CALLS.counts[key] < 3:
        raise ConnectionError(f"try {CALLS.counts[key]}")
    return f"ok after {CALLS.counts[key]}"


@entrypoint()
def inl_retrying(key: str) -> str:
    THREADS["body"] = threading.get_ident()
    return inl_flaky(key).result()


async def test_an_inline_attempt_that_fails_is_retried_in_the_task_pool(
    runtime: Runtime, clock: MockClock
) -> None:
    start = clock.now()
    assert await inl_retrying.ainvoke("flaky", cfg("inl-retry")) == "ok after 3"
    assert clock.now() - start >= 1 + 2  # the backoff of the policy, on virtual time
    assert THREADS["flaky-1"] == THREADS["body"]  # attempt 0: inline
    assert THREADS["flaky-2"] != THREADS["body"]  # the retries: the task pool
    events = await events_of(runtime.log, "inl-retry")
    assert [e.attempt for e in of_type(events, TaskAttemptStarted)] == [0, 1, 2]
    failed = of_type(events, TaskAttemptFailed)
    assert [(e.attempt, e.error_type, e.message) for e in failed] == [
        (0, "ConnectionError", "try 1"),
        (1, "ConnectionError", "try 2"),
    ]


@task
def inl_broken(x: int) -> int:
    raise ValueError(f"bad {x}")


@entrypoint()
def inl_catching(x: int) -> str:
    try:
        inl_broken(x).result()
    except TaskFailedError as exc:
        return f"{exc.error_type}: {exc.error_message}"
    return "no error"


async def test_an_inline_task_error_reaches_the_body_as_the_task_failure(
    runtime: Runtime,
) -> None:
    assert await inl_catching.ainvoke(7, cfg("inl-error")) == "ValueError: bad 7"
    events = await events_of(runtime.log, "inl-error")
    assert [e.error_type for e in of_type(events, TaskAttemptFailed)] == ["ValueError"]


@task
def inl_signal(name: str) -> str:
    EVENTS[name].set()
    return name


@entrypoint()
def inl_call_then_work(name: str) -> list[Any]:
    future = inl_signal(name)  # not waited on: it must start while the body works
    started = EVENTS[name].wait(timeout=30)
    return [started, future.result()]


async def test_a_call_not_waited_on_starts_while_the_body_goes_on(runtime: Runtime) -> None:
    EVENTS["work"] = threading.Event()
    assert await inl_call_then_work.ainvoke("work", cfg("inl-work")) == [True, "work"]


@task
def inl_leaf(x: int) -> int:
    THREADS[f"leaf-{x}"] = threading.get_ident()
    return x + 1


@task
def inl_mid(x: int) -> int:
    THREADS["mid"] = threading.get_ident()
    return inl_leaf(x).result() + inl_leaf(x * 10).result()


@entrypoint()
def inl_nested(x: int) -> int:
    THREADS["body"] = threading.get_ident()
    return inl_mid(x).result()


async def test_nested_sync_tasks_run_inline_at_their_own_positions(runtime: Runtime) -> None:
    assert await inl_nested.ainvoke(2, cfg("inl-nested")) == 3 + 21
    assert THREADS["body"] == THREADS["mid"] == THREADS["leaf-2"] == THREADS["leaf-20"]
    events = await events_of(runtime.log, "inl-nested")
    assert [(e.position, e.name) for e in of_type(events, TaskCompleted)] == [
        ("0.0", "inl_leaf"),
        ("0.1", "inl_leaf"),
        ("0", "inl_mid"),
    ]


@task
def inl_blocking(name: str) -> str:
    CALLS.hit(name)
    EVENTS[f"{name}-inside"].set()
    EVENTS[f"{name}-release"].wait(timeout=30)
    return name


@entrypoint()
def inl_blocked(name: str) -> str:
    return inl_blocking(name).result()


async def test_a_run_cancelled_while_its_inline_task_blocks_records_no_result(
    runtime: Runtime,
) -> None:
    EVENTS["c-inside"], EVENTS["c-release"] = threading.Event(), threading.Event()
    await runtime.start(inl_blocked, "c", run_id="inl-cancel")
    assert await asyncio.to_thread(EVENTS["c-inside"].wait, 30)
    await runtime.cancel("inl-cancel", "stop it")
    EVENTS["c-release"].set()  # the task returns after the cancel: nothing is recorded
    outcome = await runtime.wait("inl-cancel")
    assert outcome.status == "cancelled"
    events = await events_of(runtime.log, "inl-cancel")
    assert of_type(events, TaskCompleted) == []
    assert CALLS.counts["c"] == 1


@entrypoint()
def inl_paused(x: int) -> list[Any]:
    first = inl_double(x).result()
    answer = interrupt("go on?")
    return [first, answer, inl_double(x + 1).result()]


async def test_replay_answers_recorded_inline_steps_without_running_them(
    runtime: Runtime,
) -> None:
    waiting = await inl_paused.ainvoke(5, cfg("inl-replay"))
    assert "__interrupt__" in waiting
    assert await inl_paused.ainvoke(Command(resume="yes"), cfg("inl-replay")) == [10, "yes", 12]
    assert CALLS.counts["double"] == 2  # the first step was not run again


@task(timeout=30)
def inl_timed(x: int) -> int:
    THREADS["timed"] = threading.get_ident()
    return x


@entrypoint()
def inl_not_inline(x: int) -> int:
    THREADS["body"] = threading.get_ident()
    a = inl_timed(x).result()  # a timeout: nothing could interrupt the body's thread
    b = inl_double(x).result(timeout=30)  # a bounded wait: the usual way too
    return a + b


async def test_tasks_with_a_timeout_or_waited_on_with_one_run_in_the_task_pool(
    runtime: Runtime,
) -> None:
    assert await inl_not_inline.ainvoke(4, cfg("inl-timed")) == 12
    assert THREADS["timed"] != THREADS["body"]
    assert THREADS["task-4"] != THREADS["body"]


class _LateStarts:
    """A watchdog that sends every inline attempt's start just after its outcome (as the
    real one may, when it fires while the attempt ends): the actor gets them reversed."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.held: dict[int, Any] = {}

    def arm(self, key: object, delay: float, action: Any) -> None:
        if isinstance(key, ExecuteTask):
            self.held[id(key)] = action
        else:
            self.real.arm(key, delay, action)

    def claim(self, key: object) -> bool:
        action = self.held.pop(id(key), None)
        if action is None:
            return bool(self.real.claim(key))
        loop = action.func.__self__  # functools.partial(loop.call_soon_threadsafe, ...)
        # Runs one loop turn after the outcome's post (queued by the caller right after this).
        loop.call_soon_threadsafe(loop.call_soon, action)
        return False


async def test_an_inline_outcome_that_overtakes_its_start_is_recorded_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_execution, "watchdog", _LateStarts(_execution.watchdog))
    assert await inl_steps.ainvoke(3, cfg("inl-late")) == 6
    events = await events_of(runtime.log, "inl-late")
    assert [(e.position, e.attempt) for e in of_type(events, TaskAttemptStarted)] == [
        ("0", 0),
        ("1", 0),
        ("2", 0),
    ]
    assert [e.result for e in of_type(events, TaskCompleted)] == [0, 2, 4]
    assert CALLS.counts["double"] == 3


@entrypoint()
def inl_forgets(x: int) -> int:
    inl_double(x)  # never waited on: sent the usual way when the body ends
    return x


async def test_a_call_never_waited_on_does_not_hold_up_the_run(runtime: Runtime) -> None:
    assert await inl_forgets.ainvoke(3, cfg("inl-forget")) == 3
    assert (await runtime.wait("inl-forget")).status == "completed"


@entrypoint()
def inl_polls(x: int) -> int:
    future = inl_double(x)
    while not future.done():  # asking is a move: the call goes the usual way
        EVENTS["poll"].wait(0.001)
    return future.result() + 1


async def test_a_body_polling_done_gets_its_call_run(runtime: Runtime) -> None:
    EVENTS["poll"] = threading.Event()
    assert await inl_polls.ainvoke(4, cfg("inl-poll")) == 9
    events = await events_of(runtime.log, "inl-poll")
    assert [e.result for e in of_type(events, TaskCompleted)] == [8]
