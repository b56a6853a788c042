"""The fold of a run's events into its state: pure, deterministic, one rule per event type."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from perdure.actors import BODY, RunState, apply, fold
from perdure.eventlog import (
    Event,
    Interrupted,
    Resumed,
    RunCancelled,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunParked,
    RunStarted,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TaskFailed,
    TaskSuspended,
    TimerCancelled,
    TimerFired,
    TimerSet,
)

RUN = "fold-run"
T0 = 1_700_000_000.0


class History:
    """Builds a run's events with consecutive sequence numbers and increasing timestamps."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, cls: type[Event], **fields: Any) -> History:
        n = len(self.events)
        self.events.append(cls(run_id=RUN, seq=n, ts=T0 + n, **fields))
        return self

    def started(self, kind: str = "function", **fields: Any) -> History:
        fields.setdefault("target", "fold_fn")
        fields.setdefault("input", {"x": 1})
        fields.setdefault("input_digest", "d0")
        return self.add(RunStarted, kind=kind, **fields)

    def attempt(self, n: int, position: str = "0", name: str = "fold_fn") -> History:
        return self.add(
            TaskAttemptStarted, position=position, name=name, input_digest="d0", attempt=n
        )

    def failed(self, n: int, position: str = "0", retry_at: float | None = None) -> History:
        return self.add(
            TaskAttemptFailed,
            position=position,
            name="fold_fn",
            attempt=n,
            error_type="ConnectionError",
            message=f"refused {n}",
            next_retry_at=retry_at,
        )

    def state(self) -> RunState:
        return fold(RUN, self.events)


def test_empty_history_is_a_run_not_started() -> None:
    state = fold(RUN, [])
    assert not state.started
    assert state.next_seq == 0
    assert state.status == "running"  # status of nothing; callers check `started` first


def test_the_same_events_always_give_the_same_state() -> None:
    h = History().started().attempt(0).failed(0, retry_at=T0 + 10)
    h.add(TimerSet, timer_id="t1", due_at=T0 + 10, purpose="retry", position="0")
    h.add(TimerFired, timer_id="t1").attempt(1)
    h.add(TaskCompleted, position="0", name="fold_fn", input_digest="d0", result={"ok": [1, 2]})
    h.add(RunCompleted, result={"ok": [1, 2]})
    snapshot = copy.deepcopy(h.events)
    first, second = h.state(), h.state()
    assert first == second
    assert first is not second and first.steps["0"] is not second.steps["0"]
    assert h.events == snapshot, "fold mutated its input"


def test_fold_equals_applying_events_one_by_one() -> None:
    h = History().started().attempt(0).failed(0, retry_at=T0 + 5).attempt(1)
    state = RunState(run_id=RUN)
    for event in h.events:
        apply(state, event)
    assert state == h.state()


def test_run_started_records_the_run() -> None:
    state = (
        History().started(idempotency_key="key-1", trace_context={"traceparent": "00-ab"}).state()
    )
    assert state.started
    assert (state.target, state.kind, state.input, state.input_digest) == (
        "fold_fn",
        "function",
        {"x": 1},
        "d0",
    )
    assert state.idempotency_key == "key-1"
    assert state.trace_context == {"traceparent": "00-ab"}
    assert (state.invocation, state.created_at, state.next_seq) == (0, T0, 1)
    assert state.status == "running"


def test_attempts_open_fail_and_complete() -> None:
    h = History().started().attempt(0)
    state = h.state()
    assert state.steps["0"].open_attempt == 0
    assert state.open_attempts == 1

    state = h.failed(0, retry_at=T0 + 3).state()
    step = state.steps["0"]
    assert (step.open_attempt, step.failures, state.open_attempts) == (None, 1, 0)
    assert step.last_error is not None and step.last_error.message == "refused 0"
    assert step.last_failure_ts == h.events[-1].ts

    h.attempt(1).add(TaskCompleted, position="0", name="fold_fn", input_digest="d0", result=7)
    state = h.state()
    step = state.steps["0"]
    assert (step.done, step.result, step.failures, step.open_attempt) == (True, 7, 1, None)
    assert step.settled_seq == h.events[-1].seq
    assert state.attempts == 2


def test_a_suspended_attempt_is_closed_but_not_a_failure() -> None:
    state = (
        History()
        .started()
        .attempt(0)
        .add(TaskSuspended, position="0", name="fold_fn", attempt=0)
        .state()
    )
    assert (state.steps["0"].open_attempt, state.steps["0"].failures, state.open_attempts) == (
        None,
        0,
        0,
    )


def test_task_failed_settles_the_step() -> None:
    h = History().started().attempt(0).failed(0)
    h.add(
        TaskFailed,
        position="0",
        name="fold_fn",
        input_digest="d0",
        error_type="ConnectionError",
        message="refused 0",
        attempts=1,
    )
    step = h.state().steps["0"]
    assert step.failed is not None and step.failed.attempts == 1
    assert not step.done


def test_retry_timers_are_tracked_per_step_and_cleared_when_fired_or_cancelled() -> None:
    h = History().started().attempt(0).failed(0, retry_at=T0 + 9)
    h.add(TimerSet, timer_id="retry:0:0:1", due_at=T0 + 9, purpose="retry", position="0")
    state = h.state()
    assert state.timers == {"retry:0:0:1": (T0 + 9, "retry", "0")}
    assert state.steps["0"].retry_timer == "retry:0:0:1"
    assert state.status == "running"  # backing off is not waiting for a person

    fired = h.state()
    apply(fired, TimerFired(run_id=RUN, seq=fired.next_seq, ts=T0 + 9, timer_id="retry:0:0:1"))
    assert fired.timers == {} and fired.steps["0"].retry_timer is None

    cancelled = h.state()
    apply(
        cancelled, TimerCancelled(run_id=RUN, seq=cancelled.next_seq, ts=T0, timer_id="retry:0:0:1")
    )
    assert cancelled.timers == {} and cancelled.steps["0"].retry_timer is None


def test_body_failures_of_workflows_are_counted_apart_from_steps() -> None:
    h = History().started(kind="workflow").failed(0, position=BODY, retry_at=T0 + 1)
    h.add(TimerSet, timer_id="retry:0:body:1", due_at=T0 + 1, purpose="retry", position=BODY)
    state = h.state()
    assert state.body_failures == 1
    assert state.body_retry_timer == "retry:0:body:1"
    assert BODY not in state.steps


@pytest.mark.parametrize(
    ("last", "status"),
    [
        ((RunCompleted, {"result": 1}), "completed"),
        ((RunFailed, {"error_type": "E", "message": "m"}), "failed"),
        ((RunCancelled, {"reason": "r"}), "cancelled"),
        ((RunParked, {"reason": "crashed"}), "parked"),
    ],
)
def test_terminal_statuses(last: tuple[type[Event], dict[str, Any]], status: str) -> None:
    cls, fields = last
    state = History().started().attempt(0).add(cls, **fields).state()
    assert state.terminal == status
    assert state.status == status


def test_completed_run_keeps_result_and_saved_value() -> None:
    state = History().started(kind="workflow").add(RunCompleted, result=[1], saved={"s": 2}).state()
    assert (state.result, state.previous, state.has_previous) == ([1], {"s": 2}, True)


def test_failed_run_keeps_its_error_and_parked_its_reason() -> None:
    failed = History().started().add(RunFailed, error_type="KeyError", message="'k'").state()
    assert failed.error is not None and failed.error.error_type == "KeyError"
    parked = History().started().add(RunParked, reason="actor crashed 6 times").state()
    assert parked.reason == "actor crashed 6 times"


def test_interrupt_makes_the_run_waiting_and_resume_answers_it() -> None:
    h = History().started(kind="workflow")
    h.add(Interrupted, position="0", interrupt_id="i-1", value={"question": "ok?"})
    state = h.state()
    assert state.status == "waiting"
    assert [s.interrupt_id for s in state.pending_interrupts()] == ["i-1"]
    h.add(Resumed, interrupt_id="i-1", value="yes")
    state = h.state()
    assert state.status == "running"
    assert state.pending_interrupts() == []
    assert (state.interrupts["i-1"].answered, state.interrupts["i-1"].answer) == (True, "yes")


def test_durable_sleep_is_waiting_until_its_timer_fires() -> None:
    h = History().started(kind="workflow")
    h.add(TimerSet, timer_id="sleep:0:0", due_at=T0 + 60, purpose="sleep", position="0")
    assert h.state().status == "waiting"
    h.add(TimerFired, timer_id="sleep:0:0")
    state = h.state()
    assert state.status == "running"
    assert state.steps["0"].fired


def test_run_continued_clears_failed_steps_and_keeps_completed_ones() -> None:
    h = History().started(kind="workflow")
    h.attempt(0, position="0", name="a")
    h.add(TaskCompleted, position="0", name="a", input_digest="d0", result="A")
    h.attempt(0, position="1", name="b").failed(0, position="1")
    h.add(TaskFailed, position="1", name="b", input_digest="d0", error_type="E", message="m")
    h.add(RunFailed, error_type="TaskFailedError", message="b failed")
    assert h.state().terminal == "failed"

    h.add(RunContinued, reason="fixed the bug")
    state = h.state()
    assert state.terminal is None
    assert state.status == "running"
    assert state.error is None
    assert state.body_failures == 0
    assert "1" not in state.steps, "a failed step must get fresh attempts"
    assert state.steps["0"].done and state.steps["0"].result == "A"


def test_a_new_invocation_resets_the_steps() -> None:
    h = History().started(kind="workflow").attempt(0, name="a")
    h.add(TaskCompleted, position="0", name="a", input_digest="d0", result=1)
    h.add(RunCompleted, result=1, saved=1)
    h.started(kind="workflow", invocation=1, input={"x": 2}, idempotency_key="ignored")
    state = h.state()
    assert (state.invocation, state.terminal, state.steps, state.input) == (1, None, {}, {"x": 2})
    assert state.previous == 1  # the saved value survives into the next invocation
    assert state.created_at == T0  # the thread's creation time does not move
    assert state.idempotency_key is None  # only the first invocation's key counts


def test_attempt_lost_after_a_crash_counts_as_a_failure() -> None:
    h = History().started().attempt(0).failed(0, retry_at=T0 + 1).attempt(1)
    h.add(
        TaskAttemptFailed,
        position="0",
        name="fold_fn",
        attempt=1,
        error_type="AttemptLost",
        message="the process stopped",
    )
    step = h.state().steps["0"]
    assert step.failures == 2
    assert step.open_attempt is None
    assert step.last_error is not None and step.last_error.error_type == "AttemptLost"
