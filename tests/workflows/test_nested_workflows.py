"""A workflow called from another workflow's body (issue 12, item 4).

The inner run would not be recorded in the outer run's log, so each resume of
the outer run would run it, and its tasks, again. Until child workflows are
recorded in the parent's log, the call is refused with `NestedWorkflowError`,
and the documented alternative (call it from a task) runs it once.
"""

from __future__ import annotations

from typing import Any

import pytest

from perdure import (
    Command,
    NestedWorkflowError,
    RunFailedError,
    Runtime,
    entrypoint,
    interrupt,
    task,
)
from tests.support import Calls, cfg

CALLS = Calls()


@task
def nested_charge(cents: int) -> str:
    CALLS.hit("charge")
    return f"charged {cents}"


@entrypoint()
async def nested_inner(cents: int) -> str:
    receipt: str = await nested_charge(cents)
    return receipt


@entrypoint()
async def nested_outer_async(cents: int) -> dict[str, Any]:
    receipt = await nested_inner.ainvoke(cents, cfg("nested-inner-a"))
    return {"receipt": receipt, "ok": interrupt("ship it?")}


@entrypoint()
def nested_outer_sync(cents: int) -> dict[str, Any]:
    receipt = nested_inner.invoke(cents, cfg("nested-inner-s"))
    return {"receipt": receipt, "ok": interrupt("ship it?")}


@entrypoint()
async def nested_outer_stream(cents: int) -> list[Any]:
    return [chunk async for chunk in nested_inner.astream(cents, cfg("nested-inner-st"))]


@task
async def nested_inner_step(cents: int, thread_id: str) -> str:
    receipt: str = await nested_inner.ainvoke(cents, cfg(thread_id))
    return receipt


@entrypoint()
async def nested_outer_via_task(cents: int, *, config: dict[str, Any]) -> dict[str, Any]:
    thread = config["configurable"]["thread_id"] + "/charge"
    receipt = await nested_inner_step(cents, thread)
    return {"receipt": receipt, "ok": interrupt("ship it?")}


@pytest.mark.parametrize(
    ("outer", "what"),
    [
        (nested_outer_async, "nested_inner.ainvoke()"),
        (nested_outer_sync, "nested_inner.invoke()"),
        (nested_outer_stream, "nested_inner.astream()"),
    ],
)
async def test_a_workflow_called_from_a_workflow_body_is_refused_before_it_runs(
    runtime: Runtime, outer: Any, what: str
) -> None:
    CALLS.counts.clear()
    thread = f"nested-{outer.name}"
    with pytest.raises(RunFailedError) as info:
        await outer.ainvoke(5, cfg(thread))
    assert info.value.error_type == "NestedWorkflowError"
    message = info.value.error_message
    assert what in message and repr(thread) in message and "@task" in message
    assert CALLS["charge"] == 0  # the inner workflow never started
    assert await runtime.get_run("nested-inner-a") is None


async def test_the_error_carries_its_context() -> None:
    seen: list[NestedWorkflowError] = []

    @entrypoint(name="nested_catcher")
    async def catcher(_: Any) -> str:
        try:
            await nested_inner.ainvoke(1, cfg("never"))
        except NestedWorkflowError as exc:
            seen.append(exc)
        return "caught"

    async with Runtime(idle_timeout=3600):
        assert await catcher.ainvoke(None, cfg("nested-catcher")) == "caught"
    [error] = seen
    assert (error.run_id, error.workflow) == ("nested-catcher", "nested_inner")


async def test_called_from_a_task_the_inner_workflow_runs_once_across_resumes(
    runtime: Runtime,
) -> None:
    CALLS.counts.clear()
    config = cfg("nested-via-task")
    paused = await nested_outer_via_task.ainvoke(7, config)
    assert paused["__interrupt__"][0].value == "ship it?"
    assert await nested_outer_via_task.ainvoke(Command(resume=True), config) == {
        "receipt": "charged 7",
        "ok": True,
    }
    assert CALLS["charge"] == 1  # not again when the outer run resumed
    assert (await runtime.get_run("nested-via-task/charge")) is not None
