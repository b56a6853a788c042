"""A run may call another run synchronously (``Client().run`` inside a sync function).

The calling run's thread blocks until the nested run settles, and the nested
run needs a pool thread too. With more such callers than pool threads, every
thread used to be held by a caller waiting for a run that could never start:
a silent deadlock, again after every restart (recovery wakes them all). A
blocked caller now lends its slot to the pool while it waits, so the nested
run gets a thread; calls that are not blocked stay bounded by the pool size.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from perdure import Client, entrypoint, function, task
from perdure.errors import RunFailedError
from perdure.runtime import _executors

SETTLE_WITHIN = 60.0  # seconds: a deadlock fails the test instead of hanging it


class Crowd:
    """Makes outer calls wait until `expected` are in, so they hold their threads together."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.expected = 0
        self.entered = 0
        self.active = 0  # calls running and not blocked in a nested call
        self.peak = 0

    def reset(self, expected: int) -> None:
        with self.lock:
            self.expected, self.entered, self.active, self.peak = expected, 0, 0, 0

    def enter(self) -> None:
        with self.lock:
            self.entered += 1
            self._more(1)
            self.lock.notify_all()
            assert self.lock.wait_for(lambda: self.entered >= self.expected, SETTLE_WITHIN)

    def _more(self, n: int) -> None:
        self.active += n
        self.peak = max(self.peak, self.active)

    def running(self, n: int) -> None:
        with self.lock:
            self._more(n)


crowd = Crowd()


@function(name="nested_fn_inner", retries=1)
def nested_inner(x: int) -> int:
    crowd.running(1)
    crowd.running(-1)
    return x * 2


@function(name="nested_outer", retries=1)
def nested_outer(x: int) -> int:
    crowd.enter()
    crowd.running(-1)  # blocked from here on
    inner = Client().run("nested_fn_inner", {"x": x})
    return int(inner) + 1


@entrypoint(name="nested_inner_flow")
def nested_inner_flow(x: int) -> int:
    return x + 100


@task
def nested_outer_step(x: int) -> Any:
    crowd.enter()
    crowd.running(-1)
    return Client().run("nested_inner_flow", x)


@entrypoint(name="nested_outer_flow")
async def nested_outer_flow(x: int) -> Any:
    return await nested_outer_step(x)  # a workflow is run from a task, not from a body


@entrypoint(name="nested_refused_flow")
def nested_refused_flow(x: int) -> Any:
    return Client().run("nested_inner_flow", x)


async def test_client_run_of_a_workflow_from_a_workflow_body_is_refused() -> None:
    # the outer run fails with the refusal (it started nothing unrecorded)
    with pytest.raises(RunFailedError, match=r"NestedWorkflowError.*nested_inner_flow"):
        await asyncio.wait_for(Client().arun("nested_refused_flow", 1), SETTLE_WITHIN)


@pytest.fixture
def small_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Pools of 4 threads, fresh for this test (the next test gets fresh default ones)."""
    monkeypatch.setitem(_executors._SIZES, "task", 4)
    monkeypatch.setitem(_executors._SIZES, "body", 4)
    monkeypatch.setattr(_executors, "_pools", {})
    monkeypatch.setattr(_executors, "_gates", {}, raising=False)
    yield 4


async def _outer_runs(target: str, count: int) -> list[Any]:
    client = Client()
    calls = [client.arun(target, {"x": i} if "flow" not in target else i) for i in range(count)]
    return await asyncio.wait_for(asyncio.gather(*calls), SETTLE_WITHIN)


async def test_more_nested_callers_than_pool_threads_all_finish(small_pools: int) -> None:
    count = small_pools * 3
    crowd.reset(expected=small_pools)  # every thread is held by an outer call at once
    results = await _outer_runs("nested_outer", count)
    assert results == [i * 2 + 1 for i in range(count)]
    # Lending a slot does not unbound the pool: at most its size ran unblocked at once.
    assert crowd.peak <= small_pools


async def test_eighty_outer_runs_on_the_default_pool_all_finish() -> None:
    """The report's case: 80 concurrent outer runs, 64 task threads (10 used to finish)."""
    size = _executors._SIZES["task"]
    crowd.reset(expected=size)
    results = await _outer_runs("nested_outer", 80)
    assert results == [i * 2 + 1 for i in range(80)]
    assert crowd.peak <= size


async def test_sync_tasks_calling_workflows_all_finish(small_pools: int) -> None:
    count = small_pools * 2
    crowd.reset(expected=small_pools)
    results = await _outer_runs("nested_outer_flow", count)
    assert results == [i + 100 for i in range(count)]


# -- the gate itself ----------------------------------------------------------------------------


async def test_a_cancelled_waiter_leaves_no_slot_taken() -> None:
    gate = _executors._Gate(1)
    await gate.acquire()
    waiting = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.release()
    assert gate.busy == 0
    await asyncio.wait_for(gate.acquire(), 5)  # admitted at once
    assert gate.busy == 1


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    gate = _executors._Gate(1)
    await gate.acquire()
    first = asyncio.ensure_future(gate.acquire())
    second = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # hands the slot to `first` (set on the next loop turn) ...
    first.cancel()  # ... which is cancelled before it can take it
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)
    assert gate.busy == 1


async def test_lending_admits_one_more_while_the_lender_waits() -> None:
    gate = _executors._Gate(1)
    await gate.acquire()
    waiting = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    with gate.lend():
        await asyncio.wait_for(waiting, 5)
        assert (gate.busy, gate.lent) == (2, 1)
    gate.release()
    gate.release()
    assert gate.busy == 0
