"""The replay contract (DESIGN.md): recorded steps are matched by position, kind, name and input.

A workflow pauses on an interrupt; its code is then changed (the entrypoint is
re-defined under the same name, so the registry replaces it) and the run is
resumed. Every incompatible change is a `NonDeterminismError` that names the
run, the position, what was recorded and what was asked for; the run fails,
and once the original code is back, ``invoke(None, config)`` finishes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perdure import (
    Command,
    EventLog,
    NonDeterminismError,
    Runtime,
    Workflow,
    entrypoint,
    interrupt,
    task,
)
from perdure.eventlog import TaskCompleted
from tests.support import Calls, cfg, events_of, of_type

CALLS = Calls()
ERRORS: list[NonDeterminismError] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()
    ERRORS.clear()


@task
def replay_draft(topic: str) -> str:
    CALLS.hit("draft")
    return f"draft on {topic}"


@task
def replay_outline(topic: str) -> str:
    CALLS.hit("outline")
    return f"outline of {topic}"


@task
def replay_polish(text: str) -> str:
    CALLS.hit("polish")
    return text.upper()


def define(variant: str) -> Workflow:
    """(Re-)define the `replay_review` workflow; each variant is a code change."""

    @entrypoint(name="replay_review")
    def replay_review(topic: str) -> dict[str, Any]:
        try:
            if variant == "original":
                draft = replay_draft(topic).result()  # position 0
                verdict = interrupt({"draft": draft})  # position 1
            elif variant == "renamed_task":  # (a) another task at position 0
                draft = replay_outline(topic).result()
                verdict = interrupt({"draft": draft})
            elif variant == "changed_input":  # (b) same task, different input
                draft = replay_draft(topic + "!").result()
                verdict = interrupt({"draft": draft})
            elif variant == "moved_interrupt":  # (c) the interrupt now comes first
                verdict = interrupt({"draft": None})
                draft = replay_draft(topic).result()
            elif variant == "changed_question":  # (e) the interrupt asks something else
                draft = replay_draft(topic).result()
                verdict = interrupt({"draft": draft, "deadline": "today"})
            elif variant == "task_for_interrupt":  # (d) a task where the interrupt was
                draft = replay_draft(topic).result()
                draft = replay_polish(draft).result()
                verdict = interrupt({"draft": draft})
            elif variant == "extended":  # compatible: new steps only after the recorded ones
                draft = replay_draft(topic).result()
                verdict = interrupt({"draft": draft})
                replay_outline(topic).result()
            else:
                raise AssertionError(variant)
        except NonDeterminismError as exc:
            ERRORS.append(exc)
            raise
        return {"final": replay_polish(draft).result(), "verdict": verdict}

    return replay_review


CHANGES = {
    # variant: (position, recorded contains, requested contains, message contains)
    "renamed_task": ("0", "task 'replay_draft'", "task 'replay_outline'", "a different step"),
    "changed_input": ("0", "task 'replay_draft'", "task 'replay_draft'", "different input"),
    "moved_interrupt": ("0", "task 'replay_draft'", "interrupt()", "a different step"),
    "changed_question": (
        "1",
        "interrupt() with value {'draft': 'draft on cats'}",
        "interrupt() with value {'draft': 'draft on cats', 'deadline': 'today'}",
        "asking a different question",
    ),
    "task_for_interrupt": (
        "1",
        "interrupt() with value",
        "task 'replay_polish'",
        "a different step",
    ),
}


@pytest.mark.parametrize("variant", list(CHANGES))
async def test_an_incompatible_code_change_is_a_non_determinism_error(
    runtime: Runtime, variant: str
) -> None:
    thread = f"replay-{variant}"
    config = cfg(thread)
    paused = await define("original").ainvoke("cats", config)
    assert paused["__interrupt__"][0].value == {"draft": "draft on cats"}
    assert CALLS["draft"] == 1

    changed = define(variant)
    with pytest.raises(NonDeterminismError) as info:
        await changed.ainvoke(Command(resume="approved"), config)
    position, recorded, requested, what = CHANGES[variant]

    # The caller gets the NonDeterminismError itself, with its context ...
    caller = info.value
    assert (caller.run_id, caller.position) == (thread, position)
    assert recorded in caller.recorded and requested in caller.requested
    for needle in (repr(thread), f"position {position}", recorded, requested, what):
        assert needle in str(caller)
    assert "invoke(None, config)" in str(caller)  # ... and how to fix it.
    # The error raised in the workflow carries the context as attributes.
    [error] = ERRORS
    assert (error.run_id, error.position) == (thread, position)
    assert recorded in error.recorded
    assert requested in error.requested
    assert error.recorded != error.requested  # for a changed input: the digests differ
    assert error.recorded in str(error) and error.requested in str(error)
    assert str(error) in str(caller)

    state = await changed.aget_state(config)
    assert state.status == "failed"
    # nothing was answered to the wrong question, and no recorded result was handed out
    assert CALLS["draft"] == 1 and CALLS["outline"] == 0 and CALLS["polish"] == 0

    restored = define("original")
    assert await restored.ainvoke(None, config) == {"final": "DRAFT ON CATS", "verdict": "approved"}
    assert dict(CALLS.counts) == {"draft": 1, "polish": 1}
    assert (await restored.aget_state(config)).status == "completed"


async def test_a_compatible_change_after_the_recorded_steps_replays_fine(runtime: Runtime) -> None:
    config = cfg("replay-extended")
    await define("original").ainvoke("dogs", config)
    result = await define("extended").ainvoke(Command(resume="ok"), config)
    assert result == {"final": "DRAFT ON DOGS", "verdict": "ok"}
    assert dict(CALLS.counts) == {"draft": 1, "outline": 1, "polish": 1}
    assert ERRORS == []


# -- parallel tasks: positions follow call order, not finish order ----------------------------

LOG: dict[str, EventLog] = {}


async def _recorded(thread: str, position: str) -> bool:
    events = await events_of(LOG["log"], thread)
    return any(e.position == position for e in of_type(events, TaskCompleted))


@task
async def replay_ordered(thread: str, i: int, n: int) -> dict[str, int]:
    """Task i finishes only after task i+1 is recorded: the first called finishes last."""
    CALLS.hit(f"ordered-{i}")
    if i + 1 < n:
        while not await _recorded(thread, str(i + 1)):  # noqa: ASYNC110 - the log has no events to wait on
            await asyncio.sleep(0.002)
    return {"i": i, "square": i * i}


@entrypoint()
async def replay_fan_in(spec: dict[str, Any]) -> dict[str, Any]:
    thread, n = spec["thread"], spec["n"]
    futures = [replay_ordered(thread, i, n) for i in range(n)]
    results = [await future for future in futures]
    answer = interrupt({"results": results})
    return {"results": results, "answer": answer}


async def test_parallel_tasks_replay_by_call_order_whatever_order_they_finished(
    runtime: Runtime,
) -> None:
    LOG["log"] = runtime.log
    thread, n = "replay-fan-in", 5
    config = cfg(thread)
    expected = [{"i": i, "square": i * i} for i in range(n)]
    paused = await replay_fan_in.ainvoke({"thread": thread, "n": n}, config)
    assert paused["__interrupt__"][0].value == {"results": expected}

    events = await events_of(runtime.log, thread)
    completed = of_type(events, TaskCompleted)
    assert [e.position for e in completed] == ["4", "3", "2", "1", "0"]  # finished in reverse
    assert [e.result["i"] for e in completed] == [4, 3, 2, 1, 0]

    result = await replay_fan_in.ainvoke(Command(resume="thanks"), config)
    # replay handed each recorded result to the call at its position, without running anything
    assert result == {"results": expected, "answer": "thanks"}
    assert dict(CALLS.counts) == {f"ordered-{i}": 1 for i in range(n)}
