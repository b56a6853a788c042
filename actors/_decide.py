"""What a run does next, decided from its state, a retry policy and the clock's time.

Pure functions: they read a `Step` or a `RunState`, never write one, emit
nothing and run nothing. `Execution` and `RunActor` carry the decisions out (emit
the events, start the attempt). Tested directly in tests/actors/test_decide.py.

- `next_attempt`: a task was called (or its retry timer fired): start an attempt,
  wait for a backoff, or fail the step for good.
- `after_failure`: an attempt raised: is it retryable, when is the next one, and
  what follows (another attempt now, a retry timer, the step's final failure).
- `after_body_failure`: the workflow body raised: retry it after a backoff or fail
  the run.
- `start_refusal`, `resume_answers`, `continue_refusal`: the checks of a new
  invocation, of `Command(resume=...)` and of `continue_run`.
"""

from __future__ import annotations

from typing import Any

import attrs

from perdure.actors._errors import (
    InvalidResumeError,
    RunBusyError,
    RunExistsError,
    TaskFailedError,
)
from perdure.actors._failure import NEVER_RETRY
from perdure.actors._policy import RetryPolicy
from perdure.actors._state import RunState, TaskStep
from perdure.actors._targets import TargetSpec


@attrs.frozen
class StartAttempt:
    """Start attempt number `attempt` now."""

    attempt: int


@attrs.frozen
class SetRetryTimer:
    """Wait for a backoff: the next attempt starts when the timer fires at `due`."""

    due: float
    #: failures so far (names the timer: one timer per retry)
    failures: int


@attrs.frozen
class FailStep:
    """The step has no attempt left: record its final failure."""


@attrs.frozen
class Nothing:
    """Nothing to do: the step settled, or a retry timer is already pending."""


Decision = StartAttempt | SetRetryTimer | FailStep | Nothing

NOTHING = Nothing()
FAIL_STEP = FailStep()


def next_attempt(step: TaskStep | None, policy: RetryPolicy, now: float) -> Decision:
    """What a called task at this step needs next (`step` None: never attempted).

    Attempts lost with their process do not use up `policy.max_attempts`, but more
    than `policy.max_lost_attempts` of them fail the step (a task that brings its
    process down must not crash-loop for ever).
    """
    if step is None:
        return StartAttempt(0)
    if step.done or step.failed is not None or step.retry_timer is not None:
        return NOTHING
    failures = step.failures
    if failures:
        last = step.last_error
        exhausted = failures - step.lost >= policy.max_attempts
        if exhausted or step.lost > policy.max_lost_attempts or (last and not last.retryable):
            return FAIL_STEP
        if last is not None and last.next_retry_at is not None:
            due = last.next_retry_at
        else:
            due = step.last_failure_ts + policy.delay(failures)
        if due > now:
            return SetRetryTimer(due, failures)
    return StartAttempt(failures)


@attrs.frozen
class AttemptFailure:
    """How an attempt's failure is recorded (`retryable`, `next_retry_at`) and what follows."""

    retryable: bool
    next_retry_at: float | None
    then: StartAttempt | SetRetryTimer | FailStep


def after_failure(
    step: TaskStep, policy: RetryPolicy, error: BaseException, now: float
) -> AttemptFailure:
    """An attempt at `step` (its state before this failure is recorded) raised `error`."""
    failures = step.failures + 1
    retryable = policy.is_retryable(error) and not isinstance(error, NEVER_RETRY)
    again = retryable and failures - step.lost < policy.max_attempts
    due = now + policy.delay(failures) if again else None
    then: StartAttempt | SetRetryTimer | FailStep
    if due is None:
        then = FAIL_STEP
    elif due > now:
        then = SetRetryTimer(due, failures)
    else:
        then = StartAttempt(failures)
    return AttemptFailure(retryable, due, then)


def final_failure_message(step: TaskStep, policy: RetryPolicy) -> str:
    """The message of a step's `TaskFailed`: its last error's, or the crash-loop guard's."""
    cap = policy.max_lost_attempts
    if step.lost > cap:
        return (
            f"{step.lost} attempts were lost with their process (crash or kill), more "
            f"than the retry policy's max_lost_attempts={cap}: the task may be what "
            f"brings the process down"
        )
    last = step.last_error
    return last.message if last else ""


def after_body_failure(
    state: RunState, policy: RetryPolicy | None, error: BaseException, now: float
) -> SetRetryTimer | None:
    """The workflow body raised: when to run it again, or None to fail the run.

    `policy` is the target's (None: the target is not registered here). A task's
    final failure (`TaskFailedError`) is never retried by the body.
    """
    failures = state.body_failures + 1
    if (
        policy is None
        or isinstance(error, (*NEVER_RETRY, TaskFailedError))
        or not policy.is_retryable(error)
        or failures >= policy.max_attempts
    ):
        return None
    return SetRetryTimer(now + policy.delay(failures), failures)


def start_refusal(
    state: RunState, spec: TargetSpec, new_invocation: bool
) -> RunExistsError | RunBusyError | None:
    """Why a start of `spec` on this run is refused, or None if it may start."""
    if not state.started:
        return None
    run_id = state.run_id
    same_workflow = spec.kind == "workflow" and state.target == spec.name
    if not same_workflow or not new_invocation:
        return RunExistsError(
            f"run id {run_id!r} is already used by {state.kind} "
            f"{state.target!r} (status {state.status}); pick another run id, "
            "or omit it to get a fresh one",
            run_id=run_id,
        )
    if state.terminal not in ("completed", "failed", "cancelled"):
        return RunBusyError(
            f"thread {run_id!r} is {state.status}: finish it first "
            "(resume it with Command(resume=...), continue it with "
            "invoke(None, config), "
            "or cancel it) before starting a new invocation",
            run_id=run_id,
            status=state.status,
        )
    return None


def resume_answers(state: RunState, value: Any) -> dict[str, Any] | InvalidResumeError:
    """The answers `Command(resume=value)` gives, by interrupt id, or why it cannot.

    `value` answers the one pending interrupt, or is a dict of answers by
    interrupt id (every key a known interrupt of this invocation).
    """
    run_id = state.run_id
    pending = state.pending_interrupts()
    ids = tuple(step.interrupt_id for step in pending)
    keyed = isinstance(value, dict) and value and all(key in state.interrupts for key in value)
    withdrawn = [
        step.interrupt_id
        for step in state.interrupts.values()
        if step.cancelled and (not keyed or step.interrupt_id in value)
    ]
    if state.terminal is not None or not pending:
        return InvalidResumeError(
            f"run {run_id!r} has no pending interrupt to resume "
            f"(status: {state.status}); Command(resume=...) only answers a paused run"
            + (_withdrawn_note(withdrawn) if state.terminal is None else ""),
            run_id=run_id,
        )
    if keyed:
        assert isinstance(value, dict)
        stale = [key for key in value if key not in ids]
        if stale:
            return InvalidResumeError(
                f"run {run_id!r}: interrupt(s) {stale} were already answered, timed out or "
                f"withdrawn; pending: {list(ids)}" + _withdrawn_note(withdrawn),
                run_id=run_id,
                pending=ids,
            )
        return value
    if len(pending) == 1:
        return {ids[0]: value}
    return InvalidResumeError(
        f"run {run_id!r} has {len(pending)} pending interrupts {list(ids)}; "
        "answer them with Command(resume={interrupt_id: value, ...})",
        run_id=run_id,
        pending=ids,
    )


def _withdrawn_note(withdrawn: list[str]) -> str:
    if not withdrawn:
        return ""
    return (
        f"; interrupt(s) {withdrawn} were withdrawn: the workflow stopped waiting for them "
        "(their ainterrupt() lost a race or its wait was cancelled), so no answer reaches them"
    )


def can_continue(state: RunState) -> bool:
    """Whether `continue_run` reopens this run (failed, parked or cancelled)."""
    return state.terminal in ("failed", "parked", "cancelled")


def continue_refusal(state: RunState) -> InvalidResumeError:
    """The error of a strict `continue_run` on a run there is nothing to continue in."""
    return InvalidResumeError(
        f"run {state.run_id!r} is {state.status}: there is nothing to continue; "
        "continue_run reopens a failed, parked or cancelled run"
        + (" (answer a waiting run with Command(resume=...))" if state.status == "waiting" else ""),
        run_id=state.run_id,
    )
