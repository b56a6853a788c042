"""The replay matcher: the n-th step the code asks for must be the n-th step the log recorded.

A step is matched by position, kind, and for a task its name and input digest,
for an interrupt the digest of its value (the question). Anything
else is a `NonDeterminismError` naming the run, the position, both sides and
the fix, never a recorded result handed to a different question.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from perdure.actors._errors import NonDeterminismError
from perdure.actors._state import (
    InterruptStep,
    ReceiveStep,
    RunState,
    SetEventStep,
    SleepStep,
    Step,
    TaskStep,
)

_FIX = (
    "The workflow code changed in a way that does not fit this run's history. "
    "Restore the old code path for runs started before the change (branch on the run's "
    "input or start a new thread for the new code), or cancel this run; then continue it "
    "with invoke(None, config)."
)


def _requested(kind: str, name: str, digest: str, value: Any) -> str:
    if kind == "task":
        return f"task {name!r} with input digest {digest}"
    if kind == "interrupt":
        return f"interrupt() with value {value!r}"
    return "a durable sleep"


@overload
def match_step(
    state: RunState, position: str, kind: Literal["task"], name: str = ..., digest: str = ...
) -> TaskStep | None: ...
@overload
def match_step(
    state: RunState, position: str, kind: Literal["interrupt"], *, digest: str, value: Any
) -> InterruptStep | None: ...
@overload
def match_step(state: RunState, position: str, kind: Literal["sleep"]) -> SleepStep | None: ...
@overload
def match_step(state: RunState, position: str, kind: Literal["receive"]) -> ReceiveStep | None: ...
@overload
def match_step(
    state: RunState, position: str, kind: Literal["set_event"]
) -> SetEventStep | None: ...
def match_step(
    state: RunState,
    position: str,
    kind: str,
    name: str = "",
    digest: str = "",
    *,
    value: Any = None,
) -> Step | None:
    """The recorded step at `position` if it matches the request; None if none is recorded.

    `digest` is a task's input digest or an interrupt's value digest; `value`
    (an interrupt's question) only serves the error message.
    """
    step = state.steps.get(position)
    if step is None:
        return None
    if step.kind == kind:
        if step.kind == "task":
            if step.name == name and step.input_digest == digest:
                return step
        elif step.kind != "interrupt" or step.question_digest == digest:
            return step
    recorded = step.describe()
    requested = _requested(kind, name, digest, value)
    if kind == step.kind == "task" and step.name == name:
        what = "the same task with a different input"
    elif kind == step.kind == "interrupt":
        what = "the same interrupt asking a different question"
    else:
        what = "a different step"
    raise NonDeterminismError(
        f"run {state.run_id!r}, position {position}: the code asked for {requested}, "
        f"but the log recorded {recorded} there ({what}). {_FIX}",
        run_id=state.run_id,
        position=position,
        recorded=recorded,
        requested=requested,
    )
