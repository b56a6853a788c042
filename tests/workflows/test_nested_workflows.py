"""A workflow called from another workflow's body (issue 12, item 4; issue 16).

`invoke` / `ainvoke` in a body start a child run recorded in the parent's log
(see tests/test_child_workflows.py), so a resume of the outer run does not run it
again. Streaming another workflow from a body is still refused with
`NestedWorkflowError`; calling it from a task runs it once too.
"""

from __future__ import annotations

from typing import Any

import pytest

from perdure import Command, Runtime, entrypoint, interrupt, task
from perdure.errors import NestedWorkflowError, RunFailedError
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
    ("outer", "child"),
    [(nested_outer_async, "nested-inner-a"), (nested_outer_sync, "nested-inner-s")],
)
async def test_invoke_in_a_body_starts_a_child_run_once_across_resumes(
    runtime: Runtime, outer: Any, child: str
) -> None:
    CALLS.counts.clear()
    config = cfg(f"nested-{outer.name}")
    paused = await outer.ainvoke(5, config)
    assert paused["__interrupt__"][0].value == "ship it?"
    assert await outer.ainvoke(Command(resume=True), config) == {
        "receipt": "charged 5",
        "ok": True,
    }
    assert CALLS["charge"] == 1  # not again when the outer run resumed
    assert (await runtime.wait(child)).result == "charged 5"


async def test_streaming_a_workflow_from_a_body_is_refused_before_it_runs(
    runtime: Runtime,
) -> None:
    CALLS.counts.clear()
    thread = "nested-stream"
    with pytest.raises(RunFailedError) as info:
        await nested_outer_stream.ainvoke(5, cfg(thread))
    assert info.value.error_type == "NestedWorkflowError"
    message = info.value.error_message
    assert "nested_inner.astream()" in message and repr(thread) in message
    assert "@task" in message
    assert CALLS["charge"] == 0  # the inner workflow never started
    assert await runtime.get_run("nested-inner-st") is None


async def test_the_error_carries_its_context() -> None:
    seen: list[NestedWorkflowError] = []

    @entrypoint(name="nested_catcher")
    async def catcher(_: Any) -> str:
        try:
            async for _chunk in nested_inner.astream(1, cfg("never")):
                pass
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
