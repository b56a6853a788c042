"""The replay matcher: the n-th step the code asks for must be the n-th step the log recorded.

A step is matched by position, kind, task name and input digest. Anything
else is a `NonDeterminismError` naming the run, the position, both sides and
the fix, never a recorded result handed to a different question.
"""

from __future__ import annotations

from perdure.actors._errors import NonDeterminismError
from perdure.actors._state import RunState, Step

_FIX = (
    "The workflow code changed in a way that does not fit this run's history. "
    "Restore the old code path for runs started before the change (branch on the run's "
    "input or start a new thread for the new code), or cancel this run; then continue it "
    "with invoke(None, config)."
)


def _requested(kind: str, name: str, digest: str) -> str:
    if kind == "task":
        return f"task {name!r} with input digest {digest}"
    if kind == "interrupt":
        return "interrupt()"
    return "a durable sleep"


def match_step(
    state: RunState, position: str, kind: str, name: str = "", digest: str = ""
) -> Step | None:
    """The recorded step at `position` if it matches the request; None if none is recorded."""
    step = state.steps.get(position)
    if step is None:
        return None
    if step.kind == kind and (
        kind != "task" or (step.name == name and step.input_digest == digest)
    ):
        return step
    recorded = step.describe()
    requested = _requested(kind, name, digest)
    if step.kind == kind == "task" and step.name == name:
        what = "the same task with a different input"
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
