"""What a caller gets back from a settled run: its result, its error, or its pending interrupts."""

from __future__ import annotations

from typing import Any

import attrs

from perdure.actors import (
    Interrupt,
    NonDeterminismError,
    RunActor,
    RunCancelledError,
    RunFailedError,
    RunParkedError,
    RunState,
)
from perdure.eventlog import Event, Resumed, RunContinued, fresh, restore

INTERRUPT_KEY = "__interrupt__"


@attrs.frozen
class Outcome:
    """A snapshot of a run at a point where a caller stops waiting.

    `result` is the value as stored (tagged JSON for a datetime, a dataclass, ...);
    `unwrap()` gives it as plain JSON or as the declared type.
    """

    run_id: str
    target: str
    status: str
    result: Any = None
    interrupts: tuple[Interrupt, ...] = ()
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    attempts: int = 0
    reason: str = ""
    details: dict[str, str] = attrs.field(factory=dict)

    def unwrap(self, result_type: Any = None) -> Any:
        """The result, ``{"__interrupt__": [...]}`` when paused, or the run's error raised.

        The result is plain JSON, or rebuilt as `result_type` (a type from
        `perdure.eventlog._values.declared_type`, such as the target's `result_type`).
        """
        if self.status == "completed":
            return restore(self.result, result_type)
        if self.status == "waiting":
            return {INTERRUPT_KEY: list(self.interrupts)}
        if self.status == "failed":
            if self.error_type == "NonDeterminismError" and self.details:
                raise NonDeterminismError(
                    self.error_message,
                    run_id=self.run_id,
                    position=self.details.get("position", ""),
                    recorded=self.details.get("recorded", ""),
                    requested=self.details.get("requested", ""),
                )
            raise RunFailedError(
                f"run {self.run_id!r} ({self.target}) failed after {self.attempts} attempt(s): "
                f"{self.error_type}: {self.error_message}",
                run_id=self.run_id,
                target=self.target,
                error_type=self.error_type,
                error_message=self.error_message,
                attempts=self.attempts,
                traceback=self.traceback,
            )
        if self.status == "cancelled":
            raise RunCancelledError(
                f"run {self.run_id!r} ({self.target}) was cancelled"
                + (f": {self.reason}" if self.reason else ""),
                run_id=self.run_id,
                reason=self.reason,
            )
        raise RunParkedError(
            f"run {self.run_id!r} ({self.target}) is parked: {self.reason}",
            run_id=self.run_id,
            reason=self.reason,
        )


def settled_outcome(state: RunState) -> Outcome | None:
    """The outcome if the run has settled for a waiting caller, else None."""
    status = state.status
    if state.terminal is None and not (status == "waiting" and state.pending_interrupts()):
        return None
    interrupts = tuple(
        Interrupt(value=fresh(step.question), id=step.interrupt_id)
        for step in state.pending_interrupts()
    )
    error = state.error
    if state.kind == "function":
        step = state.steps.get("0")
        attempts = (step.failures + (1 if step.done else 0)) if step is not None else 0
    else:
        attempts = state.body_failures + 1
    return Outcome(
        run_id=state.run_id,
        target=state.target,
        status=status,
        result=state.result,
        interrupts=interrupts if status == "waiting" else (),
        error_type=error.error_type if error else "",
        error_message=error.message if error else "",
        traceback=error.traceback if error else "",
        attempts=attempts,
        reason=state.reason,
        details=dict(error.details) if error else {},
    )


def live_outcome(actor: RunActor, events: list[Event]) -> Outcome | None:
    """A live run's outcome, or None while its body runs or restarts after `events`.

    A run with interrupts still pending after a partial resume is not settled
    until its body has run again (it may ask new questions, or finish tasks).
    Nor is a run whose latest events are still being committed: the live state
    runs ahead of the log, and the commit reports the outcome once it is durable.
    """
    if actor.durable_seq < actor.state.next_seq:
        return None
    if actor.state.terminal is None and (
        actor.execution.body is not None
        or any(type(event) is Resumed or type(event) is RunContinued for event in events)
    ):
        return None
    return settled_outcome(actor.state)
