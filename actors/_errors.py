"""Errors about runs and their replay, and the private control-flow signal that pauses a run."""

from __future__ import annotations

from typing import Any

import attrs

from perdure.eventlog import RunError, UsageError


@attrs.frozen(kw_only=True)
class Failure:
    """A failure as the log recorded it: what a caller can inspect without parsing messages.

    `error_type` is the original exception's type name (the log keeps names, not
    classes); `target` is set for a run's failure, `task` and `position` for a
    task's; `details` holds structured context (a replay divergence's position,
    recorded and requested steps).
    """

    error_type: str
    message: str
    traceback: str = ""
    run_id: str = ""
    attempts: int = 0
    target: str = ""
    task: str = ""
    position: str = ""
    details: dict[str, str] = attrs.field(factory=dict)


class NonDeterminismError(RunError):
    """Replayed code asked for a different step than the log recorded at that position.

    Raised when the n-th step of a run (task call, `interrupt()`, durable sleep)
    does not match the n-th recorded step by kind, name and input digest.
    Returning a recorded result to a different question would be silently
    wrong, so the run stops instead. Fix: restore the old code path for runs
    started before the change (or finish/cancel those runs), then continue the
    run with ``invoke(None, config)``.
    """

    def __init__(
        self, message: str, *, run_id: str, position: str, recorded: str, requested: str
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.position = position
        self.recorded = recorded
        self.requested = requested


class TaskFailedError(RunError):
    """Raised inside a workflow where it waits on a task that failed for good.

    Carries the task's original error type name and message. The same error
    is raised when the run is replayed, so workflow code that catches it
    behaves the same live and on replay.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        task: str,
        position: str,
        error_type: str,
        error_message: str,
        attempts: int,
        traceback: str = "",
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.task = task
        self.position = position
        self.error_type = error_type
        self.error_message = error_message
        self.attempts = attempts
        self.traceback = traceback

    @property
    def failure(self) -> Failure:
        """The task's final failure as a structured record."""
        return Failure(
            error_type=self.error_type,
            message=self.error_message,
            traceback=self.traceback,
            run_id=self.run_id,
            attempts=self.attempts,
            task=self.task,
            position=self.position,
        )


class RunFailedError(RunError):
    """The run ended in failure; carries the original error's type, message and attempts."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        target: str,
        error_type: str,
        error_message: str,
        attempts: int,
        traceback: str = "",
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.target = target
        self.error_type = error_type
        self.error_message = error_message
        self.attempts = attempts
        self.traceback = traceback

    @property
    def failure(self) -> Failure:
        """The run's failure as a structured record."""
        return Failure(
            error_type=self.error_type,
            message=self.error_message,
            traceback=self.traceback,
            run_id=self.run_id,
            attempts=self.attempts,
            target=self.target,
        )

    @classmethod
    def of(cls, failure: Failure) -> RunFailedError:
        """The error a caller gets for a run that ended in `failure`."""
        return cls(
            f"run {failure.run_id!r} ({failure.target}) failed after {failure.attempts} "
            f"attempt(s): {failure.error_type}: {failure.message}",
            run_id=failure.run_id,
            target=failure.target,
            error_type=failure.error_type,
            error_message=failure.message,
            attempts=failure.attempts,
            traceback=failure.traceback,
        )


class RunCancelledError(RunError):
    """The run was cancelled before it finished."""

    def __init__(self, message: str, *, run_id: str, reason: str = "") -> None:
        super().__init__(message, run_id=run_id)
        self.reason = reason


class RunParkedError(RunError):
    """The supervisor parked the run after its actor crashed too often; `reason` says why."""

    def __init__(self, message: str, *, run_id: str, reason: str) -> None:
        super().__init__(message, run_id=run_id)
        self.reason = reason


class ActorCrashedError(RunError, RuntimeError):
    """A run's actor crashed while it handled a request, so the request has no answer.

    What the run committed before the crash stays; the run is rebuilt from its
    log. Check its status and ask again if need be. `__cause__` is the crash.
    """


class InvalidResumeError(UsageError, ValueError):
    """A `Command(resume=...)` does not fit the run: nothing pending, unknown id, ambiguity.

    Also raised by `continue_run` for a run with nothing to continue (running,
    waiting or completed).
    """

    def __init__(self, message: str, *, run_id: str, pending: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.pending = pending


class RunSettledError(UsageError, ValueError):
    """A message was sent to a run that has settled (completed, failed, cancelled, parked):
    nobody will ever receive it."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class RunBusyError(UsageError):
    """A new invocation was asked of a thread whose current invocation has not settled."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class RunExistsError(UsageError, ValueError):
    """A run id given to `start` is already used by a run that cannot take a new invocation."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class NotInWorkflowError(UsageError, RuntimeError):
    """A task, `interrupt()` or durable sleep was used outside a running workflow or function."""


class NestedWorkflowError(UsageError, RuntimeError):
    """A workflow was streamed (or run through `Client`) from inside another workflow's body.

    The inner run would not be recorded in the outer run's log, so it would
    run again, side effects and all, each time the outer run resumes. Use
    ``invoke`` / ``ainvoke`` (a recorded child run), or call it from a ``@task``:
    the task's result is recorded once and returned on replay.
    """

    def __init__(self, message: str, *, run_id: str, workflow: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.workflow = workflow


class TaskTimeoutError(RunError, TimeoutError):
    """An attempt ran longer than its task's `timeout` (seconds); recorded as the attempt's error.

    The attempt is retried per the task's policy like any other failure; `task` names
    the task and `timeout` is its limit.
    """

    def __init__(self, message: str, *, run_id: str, task: str, timeout: float) -> None:
        super().__init__(message, run_id=run_id)
        self.task = task
        self.timeout = timeout


class InterruptTimeoutError(RunError, TimeoutError):
    """Nobody answered an `interrupt(value, timeout=...)` in time (a durable timer fired).

    Raised in the workflow body where it called `interrupt`; the body may catch it
    and go on (e.g. escalate or take a default). `position` is the interrupt's place
    in the body, `interrupt_id` its id and `timeout` its limit in seconds.
    """

    def __init__(
        self, message: str, *, run_id: str, position: str, interrupt_id: str, timeout: float
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.position = position
        self.interrupt_id = interrupt_id
        self.timeout = timeout


class Suspend(BaseException):
    """Private signal: the current body or task attempt must stop here and wait.

    Derives from BaseException so ``except Exception`` in user code does not
    swallow it; the run resumes later by re-executing from the start.
    """

    def __init__(self, reason: str, detail: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
