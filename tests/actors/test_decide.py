"""The pure decisions of `perdure.actors._decide`: state, policy and time in, a decision out."""

from __future__ import annotations

from typing import Any

import pytest

from perdure.actors import (
    InvalidResumeError,
    NonRetryableError,
    RetryPolicy,
    RunBusyError,
    RunExistsError,
    RunState,
    TargetSpec,
    TaskFailedError,
    apply,
)
from perdure.actors._decide import (
    FAIL_STEP,
    NOTHING,
    SetRetryTimer,
    StartAttempt,
    after_body_failure,
    after_failure,
    final_failure_message,
    next_attempt,
    resume_answers,
    start_refusal,
)
from perdure.actors._state import ATTEMPT_LOST
from perdure.eventlog import (
    Event,
    Interrupted,
    Resumed,
    RunCompleted,
    RunKind,
    RunStarted,
    SerializationError,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TimerSet,
)

#: 1 s, then 2 s, 4 s ... between attempts; no jitter, so every decision is exact.
POLICY = RetryPolicy(max_attempts=3, initial_interval_ms=1000, max_lost_attempts=2)


def state_of(*events: Any, kind: RunKind = "workflow", target: str = "flow") -> RunState:
    state = RunState(run_id="r")
    every: list[Event] = [
        RunStarted(
            run_id="r",
            seq=0,
            ts=0.0,
            target=target,
            kind=kind,
            input=None,
            input_digest="",
            invocation=0,
        )
    ]
    for seq, make in enumerate(events, start=1):
        every.append(make(seq))
    for event in every:
        apply(state, event)
    return state


def started(attempt: int) -> Any:
    return lambda seq: TaskAttemptStarted(
        run_id="r",
        seq=seq,
        ts=float(seq),
        position="0",
        name="t",
        input_digest="d",
        attempt=attempt,
    )


def failed(attempt: int, *, ts: float = 10.0, lost: bool = False, **fields: Any) -> Any:
    return lambda seq: TaskAttemptFailed(
        run_id="r",
        seq=seq,
        ts=ts,
        position="0",
        name="t",
        attempt=attempt,
        error_type=ATTEMPT_LOST if lost else "ValueError",
        message="boom",
        **fields,
    )


def test_a_task_never_attempted_starts_attempt_zero() -> None:
    assert next_attempt(None, POLICY, now=0.0) == StartAttempt(0)


def test_a_settled_step_or_one_waiting_on_its_retry_timer_needs_nothing() -> None:
    done = state_of(
        started(0),
        lambda seq: TaskCompleted(
            run_id="r", seq=seq, ts=2.0, position="0", name="t", input_digest="d", result=1
        ),
    )
    assert next_attempt(done.steps["0"], POLICY, now=0.0) is NOTHING
    waiting = state_of(
        started(0),
        failed(0, next_retry_at=11.0),
        lambda seq: TimerSet(
            run_id="r", seq=seq, ts=10.0, timer_id="x", due_at=11.0, purpose="retry", position="0"
        ),
    )
    assert next_attempt(waiting.steps["0"], POLICY, now=0.0) is NOTHING


def test_after_a_failure_the_next_attempt_waits_for_its_recorded_retry_time() -> None:
    step = state_of(started(0), failed(0, next_retry_at=11.0)).steps["0"]
    assert next_attempt(step, POLICY, now=10.5) == SetRetryTimer(11.0, 1)
    assert next_attempt(step, POLICY, now=11.0) == StartAttempt(1)


def test_a_lost_attempt_waits_a_backoff_from_its_loss_but_does_not_use_up_the_budget() -> None:
    step = state_of(started(0), failed(0, lost=True, ts=10.0)).steps["0"]
    assert next_attempt(step, POLICY, now=10.0) == SetRetryTimer(11.0, 1)
    step = state_of(
        started(0), failed(0), started(1), failed(1), started(2), failed(2, lost=True)
    ).steps["0"]
    # 3 failures, 1 of them lost: 2 count against max_attempts=3.
    assert next_attempt(step, POLICY, now=100.0) == StartAttempt(3)


def test_the_step_fails_when_attempts_run_out_or_the_error_is_not_retryable() -> None:
    step = state_of(started(0), failed(0), started(1), failed(1), started(2), failed(2)).steps["0"]
    assert next_attempt(step, POLICY, now=100.0) is FAIL_STEP
    step = state_of(started(0), failed(0, retryable=False)).steps["0"]
    assert next_attempt(step, POLICY, now=100.0) is FAIL_STEP
    assert final_failure_message(step, POLICY) == "boom"


def test_more_lost_attempts_than_max_lost_attempts_fail_the_step_naming_the_setting() -> None:
    events = [e for n in range(3) for e in (started(n), failed(n, lost=True))]
    step = state_of(*events).steps["0"]
    assert step.lost == 3
    assert next_attempt(step, POLICY, now=100.0) is FAIL_STEP
    message = final_failure_message(step, POLICY)
    assert "3 attempts were lost" in message and "max_lost_attempts=2" in message
    two = state_of(*events[:4]).steps["0"]
    assert next_attempt(two, POLICY, now=100.0) == StartAttempt(2)


def test_after_failure_sets_a_retry_timer_retries_at_once_or_fails() -> None:
    step = state_of(started(0)).steps["0"]
    decided = after_failure(step, POLICY, ValueError("x"), now=5.0)
    assert (decided.retryable, decided.next_retry_at, decided.then) == (
        True,
        6.0,
        SetRetryTimer(6.0, 1),
    )
    at_once = RetryPolicy(max_attempts=3, initial_interval_ms=0)
    assert after_failure(step, at_once, ValueError("x"), now=5.0).then == StartAttempt(1)
    for error in (
        NonRetryableError("no"),
        SerializationError("cannot store", path="result", type_name="set"),
    ):
        decided = after_failure(step, POLICY, error, now=5.0)
        assert (decided.retryable, decided.next_retry_at, decided.then) == (False, None, FAIL_STEP)
    last = state_of(started(0), failed(0), started(1), failed(1), started(2)).steps["0"]
    decided = after_failure(last, POLICY, ValueError("x"), now=5.0)
    assert (decided.retryable, decided.next_retry_at, decided.then) == (True, None, FAIL_STEP)


def test_the_body_is_retried_after_a_backoff_unless_a_task_failed_for_good() -> None:
    state = state_of()
    assert after_body_failure(state, POLICY, ValueError("x"), now=5.0) == SetRetryTimer(6.0, 1)
    assert after_body_failure(state, None, ValueError("x"), now=5.0) is None
    failed_task = TaskFailedError(
        "t failed",
        run_id="r",
        task="t",
        position="0",
        error_type="E",
        error_message="m",
        attempts=3,
    )
    assert after_body_failure(state, POLICY, failed_task, now=5.0) is None
    assert after_body_failure(state, RetryPolicy(max_attempts=1), ValueError(), now=5.0) is None


def _spec(kind: str, name: str = "flow") -> TargetSpec:
    return TargetSpec(name=name, kind=kind, validate_input=lambda _: None)  # type: ignore[arg-type]


def test_a_start_is_refused_on_a_used_run_id_unless_a_settled_thread_starts_anew() -> None:
    assert start_refusal(RunState(run_id="r"), _spec("workflow"), new_invocation=False) is None
    running = state_of()
    assert isinstance(start_refusal(running, _spec("function"), True), RunExistsError)
    assert isinstance(start_refusal(running, _spec("workflow"), False), RunExistsError)
    assert isinstance(start_refusal(running, _spec("workflow", "other"), True), RunExistsError)
    assert isinstance(start_refusal(running, _spec("workflow"), True), RunBusyError)
    done = state_of(lambda seq: RunCompleted(run_id="r", seq=seq, ts=1.0, result=1))
    assert start_refusal(done, _spec("workflow"), True) is None


def asked(position: str, interrupt_id: str) -> Any:
    return lambda seq: Interrupted(
        run_id="r", seq=seq, ts=1.0, position=position, interrupt_id=interrupt_id, value="q?"
    )


def test_resume_answers_the_one_pending_interrupt_or_each_by_id() -> None:
    assert isinstance(resume_answers(state_of(), "yes"), InvalidResumeError)
    one = state_of(asked("0", "i0"))
    assert resume_answers(one, "yes") == {"i0": "yes"}
    assert resume_answers(one, {"i0": "yes"}) == {"i0": "yes"}
    assert resume_answers(one, {"other": 1}) == {"i0": {"other": 1}}  # not ids: a plain value
    two = state_of(asked("0", "i0"), asked("1", "i1"))
    with pytest.raises(InvalidResumeError, match="2 pending interrupts"):
        raise _error(resume_answers(two, "yes"))
    assert resume_answers(two, {"i1": 2}) == {"i1": 2}
    answered = state_of(
        asked("0", "i0"),
        asked("1", "i1"),
        lambda seq: Resumed(run_id="r", seq=seq, ts=2.0, interrupt_id="i0", value=1),
    )
    with pytest.raises(InvalidResumeError, match="already answered"):
        raise _error(resume_answers(answered, {"i0": 1, "i1": 2}))


def _error(result: object) -> BaseException:
    assert isinstance(result, InvalidResumeError), result
    return result
