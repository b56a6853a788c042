"""The future sync code waits on for a step: its outcome reaches the waiting thread as set."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from perdure.actors._scope import _ThreadStepFuture


def _wait_in_thread(fut: _ThreadStepFuture, timeout: float = 10.0) -> Any:
    """A thread waiting on `fut` as a pool thread's `.result()` does; its box gets
    ("value", v) or ("error", exception type)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(("value", fut.wait(timeout)))
        except BaseException as exc:
            box.append(("error", type(exc)))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


async def test_the_waiting_thread_gets_the_value_and_can_ask_again() -> None:
    fut = _ThreadStepFuture(asyncio.get_running_loop())
    thread, box = _wait_in_thread(fut)
    fut.set_result(42)  # no loop iteration needed: the thread is woken by the set itself
    await asyncio.to_thread(thread.join)
    assert box == [("value", 42)]
    assert fut.wait(0) == 42  # settled for good
    assert fut.result() == 42


async def test_an_error_is_raised_in_the_thread_and_counts_as_retrieved() -> None:
    loop = asyncio.get_running_loop()
    fut = _ThreadStepFuture(loop)
    thread, box = _wait_in_thread(fut)
    fut.set_exception(ValueError("bad"))
    await asyncio.to_thread(thread.join)
    assert box == [("error", ValueError)]
    with pytest.raises(ValueError, match="bad"):
        fut.wait(0)


async def test_cancelled_and_timed_out_raise_the_thread_side_errors() -> None:
    fut = _ThreadStepFuture(asyncio.get_running_loop())
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.wait(0.01)
    assert fut.cancel() is True
    assert fut.cancel() is False  # released once only
    with pytest.raises(concurrent.futures.CancelledError):
        fut.wait(0)
    done = _ThreadStepFuture(asyncio.get_running_loop())
    done.set_result(1)
    assert done.cancel() is False
    with pytest.raises(asyncio.InvalidStateError):
        done.set_result(2)
    assert done.wait(0) == 1
