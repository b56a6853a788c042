"""Waiting in tests for something another task or process brings about, without timing it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from perdure import Runtime


async def until(
    predicate: Callable[[], bool | Awaitable[bool]],
    what: str = "the condition",
    limit: float = 5.0,
    *,
    step: float = 0.01,
) -> None:
    """Poll `predicate` (sync or async) every `step` s until it is true; fail after `limit` s.

    ``step=0`` only yields to the loop between polls: a test on a `MockClock` with
    autojump uses it so that its idle moments do not move virtual time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        found = predicate()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(step)


async def until_state(rt: Runtime, run_id: str, check: Callable[[Any], bool]) -> None:
    """Wait until ``check(await rt.state(run_id))`` holds; the failure shows the last state."""
    try:
        await until(lambda: _holds(rt, run_id, check), f"run {run_id!r}")
    except AssertionError:
        raise AssertionError(f"run {run_id!r} never got there: {await rt.state(run_id)}") from None


async def _holds(rt: Runtime, run_id: str, check: Callable[[Any], bool]) -> bool:
    return bool(check(await rt.state(run_id)))
