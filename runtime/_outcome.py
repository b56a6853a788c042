"""What a caller gets back from a settled run: its result, its error, or its pending interrupts."""

from __future__ import annotations

from typing import Any

import attrs

from perdure.actors import (
    Failure,
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
    #: why the run failed (status "failed")
    failure: Failure | None = None
    attempts: int = 0
    reason: str = ""

    # The failure's fields, as outcomes carried them before `failure` (empty when none).
    @property
    def error_type(self) -> str:
        return self.failure.error_type if self.failure else ""

    @property
    def error_message(self) -> str:
        return self.failure.message if self.failure else ""

    @property
    def traceback(self) -> str:
        return self.failure.traceback if self.failure else ""

    @property
    def details(self) -> dict[str, str]:
        return dict(self.failure.details) if self.failure else {}

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
            failure = self.failure or Failure(
                error_type="", message="", run_id=self.run_id, target=self.target
            )
            details = failure.details
            if failure.error_type == "NonDeterminismError" and details:
                raise NonDeterminismError(
                    failure.message,
                    run_id=self.run_id,
                    position=details.get("position", ""),
                    recorded=details.get("recorded", ""),
                    requested=details.get("requested", ""),
                )
            raise RunFailedError.of(failure)
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
        step = state.task_at("0")
        attempts = (step.failures + (1 if step.done else 0)) if step is not None else 0
    else:
        attempts = state.body_failures + 1
    return Outcome(
        run_id=state.run_id,
        target=state.target,
        status=status,
        result=state.result,
        interrupts=interrupts if status == "waiting" else (),
        failure=None
        if error is None
        else Failure(
            error_type=error.error_type,
            message=error.message,
            traceback=error.traceback,
            run_id=state.run_id,
            attempts=attempts,
            target=state.target,
            details=dict(error.details),
        ),
        attempts=attempts,
        reason=state.reason,
    )


def live_outcome(actor: RunActor, events: list[Event]) -> Outcome | None:
    """A live run's outcome, or None while its body runs or restarts after `events`.

    A run with interrupts still pending after a partial resume is not settled
    until its body has run again (it may ask new questions, or finish tasks).
    Nor is a run whose latest events are still being committed: the live state
    runs ahead of the log, and the commit reports the outcome once it is durable.
    A body whose code waits in `ainterrupt()` is paused for its callers, as one that
    stopped at an `interrupt()` is.
    """
    if actor.durable_seq < actor.state.next_seq:
        return None
    if actor.state.terminal is None and (
        (actor.execution.body is not None and not actor.execution.answering())
        or any(type(event) is Resumed or type(event) is RunContinued for event in events)
    ):
        return None
    return settled_outcome(actor.state)
