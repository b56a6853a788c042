"""`previous`, `get_previous_state()` and `entrypoint.final(value=, save=)` across invocations."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from perdure import Command, Runtime, entrypoint, get_previous_state, interrupt, task
from tests.support import cfg


@entrypoint()
def prev_accumulate(number: int, *, previous: Any = None) -> int:
    previous = previous or 0
    return number + previous


@entrypoint()
def prev_final(number: int, *, previous: Any = None) -> Any:
    previous = previous or 0
    # Return the previous value to the caller, save double the input for next time.
    return entrypoint.final(value=previous, save=2 * number)


@entrypoint()
async def prev_getter(item: str) -> list[str]:
    seen = get_previous_state() or []
    return [*seen, item]


@task
def prev_double(x: int) -> int:
    return 2 * x


@entrypoint()
def prev_with_interrupt(number: int, *, previous: Any = None) -> dict[str, Any]:
    doubled = prev_double(number).result()
    note = interrupt({"doubled": doubled})
    return {"total": (previous or {}).get("total", 0) + doubled, "note": note}


async def test_previous_accumulates_across_invocations_on_one_thread(runtime: Runtime) -> None:
    config = cfg("prev-acc")
    assert await prev_accumulate.ainvoke(1, config) == 1
    assert await prev_accumulate.ainvoke(2, config) == 3
    assert await prev_accumulate.ainvoke(10, config) == 13
    # another thread has its own history
    assert await prev_accumulate.ainvoke(5, cfg("prev-acc-other")) == 5
    state = await prev_accumulate.aget_state(config)
    assert state.invocation == 2
    assert state.values == 13


async def test_entrypoint_final_decouples_returned_and_saved_values(runtime: Runtime) -> None:
    config = cfg("prev-final")
    assert await prev_final.ainvoke(3, config) == 0
    assert await prev_final.ainvoke(1, config) == 6
    assert await prev_final.ainvoke(7, config) == 2
    # get_state shows the returned value of the last invocation; the next invocation sees `save`
    assert await prev_final.ainvoke(0, config) == 14


async def test_get_previous_state_inside_an_async_body(runtime: Runtime) -> None:
    config = cfg("prev-getter")
    assert await prev_getter.ainvoke("a", config) == ["a"]
    assert await prev_getter.ainvoke("b", config) == ["a", "b"]
    assert await prev_getter.ainvoke("c", config) == ["a", "b", "c"]


def test_get_previous_state_outside_a_workflow_is_a_clear_error() -> None:
    from perdure import NotInWorkflowError

    with pytest.raises(NotInWorkflowError, match="get_previous_state"):
        get_previous_state()


async def test_previous_survives_an_interrupted_invocation(runtime: Runtime) -> None:
    config = cfg("prev-interrupt")
    paused = await prev_with_interrupt.ainvoke(2, config)
    assert paused["__interrupt__"][0].value == {"doubled": 4}
    assert await prev_with_interrupt.ainvoke(Command(resume="ok"), config) == {
        "total": 4,
        "note": "ok",
    }
    paused = await prev_with_interrupt.ainvoke(5, config)
    assert paused["__interrupt__"][0].value == {"doubled": 10}
    assert await prev_with_interrupt.ainvoke(Command(resume="again"), config) == {
        "total": 14,
        "note": "again",
    }


async def test_entrypoint_final_works_as_a_return_annotation(runtime: Runtime) -> None:
    """The functional API's ``-> entrypoint.final[int, int]`` must evaluate, as in LangGraph."""

    @entrypoint()
    def prev_annotated(number: int, *, previous: Any = None) -> entrypoint.final[int, int]:
        return entrypoint.final(value=previous or 0, save=number)

    hints = typing.get_type_hints(prev_annotated.__wrapped__)
    assert hints["return"] is not None
    assert await prev_annotated.ainvoke(4, cfg("prev-annotated")) == 0
    assert await prev_annotated.ainvoke(9, cfg("prev-annotated")) == 4
