"""The fold of a run's events into its state: the only way run state is ever built.

`fold(events)` is pure: the same events always give the same state. The actor
keeps the state current by `apply`-ing each event it appends, so live state and
state rebuilt by replay agree by construction (a property test checks this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal, TypeVar

import attrs

from perdure.eventlog import (
    Event,
    EventPublished,
    InterruptCancelled,
    Interrupted,
    MessageDelivered,
    MessageReceived,
    ReceiveCancelled,
    ReceiveWaiting,
    Resumed,
    RunCancelled,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunParked,
    RunStarted,
    RunStatus,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TaskFailed,
    TaskSuspended,
    TimerCancelled,
    TimerFired,
    TimerSet,
    digest,
)

BODY = ""  # the position of the workflow body itself (its own retries)
DEADLINE = "deadline"  # the position of a run's deadline timer (the whole invocation)
#: error_type of an attempt that the log shows started but never ended (its process died).
ATTEMPT_LOST = "AttemptLost"


@attrs.define(slots=True)
class _StepBase:
    """What every recorded step has: its position and when the code may see its outcome."""

    position: str
    #: seq of the event that settled the step (result, final failure, answer, timer fired);
    #: user code may only see the outcome once that seq is durable.
    settled_seq: int = -1
    #: what the code had seen when it first asked for this step (see `Interrupted.seen_seq`)
    seen_seq: int = -1


@attrs.define(slots=True)
class TaskStep(_StepBase):
    """A task call (or a function's single step): its attempts and its result."""

    kind: ClassVar[Literal["task"]] = "task"
    name: str = ""
    input_digest: str = ""
    failures: int = 0
    #: how many of `failures` were attempts lost with their process (not the task's fault)
    lost: int = 0
    last_failure_ts: float = 0.0
    last_error: TaskAttemptFailed | None = None
    open_attempt: int | None = None
    done: bool = False
    result: Any = None
    failed: TaskFailed | None = None
    retry_timer: str | None = None

    def describe(self) -> str:
        """A short human description for error messages."""
        return f"task {self.name!r} with input digest {self.input_digest}"


@attrs.define(slots=True)
class InterruptStep(_StepBase):
    """An `interrupt(value)`: the question asked and, once given, the answer."""

    kind: ClassVar[Literal["interrupt"]] = "interrupt"
    interrupt_id: str = ""
    question: Any = None
    #: digest of `question`: a replayed `interrupt(value)` must ask the same question
    question_digest: str = ""
    answered: bool = False
    answer: Any = None
    #: the token of the inbox message that answered it (see `Resumed.token`)
    answer_token: str = ""
    #: the timeout's timer (`interrupt(value, timeout=...)`), and whether it fired first
    timer_id: str = ""
    due_at: float = 0.0
    fired: bool = False
    #: an interrupt's limit in seconds (its timer's due_at minus when it was set)
    timeout: float = 0.0
    #: an `ainterrupt()` cancelled before an answer (`interrupt_cancelled`): not pending
    cancelled: bool = False

    @property
    def pending(self) -> bool:
        """Whether it still waits for an answer (not answered, timed out or cancelled)."""
        return not (self.answered or self.fired or self.cancelled)

    def describe(self) -> str:
        return f"interrupt() with value {self.question!r}"


@attrs.define(slots=True)
class SleepStep(_StepBase):
    """A durable sleep: its timer and whether it fired."""

    kind: ClassVar[Literal["sleep"]] = "sleep"
    timer_id: str = ""
    due_at: float = 0.0
    fired: bool = False

    def describe(self) -> str:
        return "a durable sleep"


@attrs.define(slots=True)
class ReceiveStep(_StepBase):
    """A `receive(topic)`: the message delivered to it, or its timeout."""

    kind: ClassVar[Literal["receive"]] = "receive"
    #: the topic
    name: str = ""
    timer_id: str = ""
    due_at: float = 0.0
    #: the timeout fired first (the receive returned None)
    fired: bool = False
    done: bool = False
    result: Any = None
    #: seq of the delivered message
    message_seq: int = -1
    #: a receive cancelled before a message reached it (`receive_cancelled`)
    cancelled: bool = False

    def describe(self) -> str:
        return f"receive() on topic {self.name!r}"


@attrs.define(slots=True)
class SetEventStep(_StepBase):
    """A `set_event(key, value)`."""

    kind: ClassVar[Literal["set_event"]] = "set_event"
    #: the event's key
    name: str = ""
    done: bool = False

    def describe(self) -> str:
        return f"set_event({self.name!r})"


#: One recorded step of the current invocation; `step.kind` tells which (and narrows the type).
Step = TaskStep | InterruptStep | SleepStep | ReceiveStep | SetEventStep
_S = TypeVar("_S", TaskStep, InterruptStep, SleepStep, ReceiveStep, SetEventStep)


@attrs.define(slots=True)
class RunState:
    """Everything known about a run, rebuilt from its events."""

    run_id: str
    next_seq: int = 0
    target: str = ""
    kind: str = ""
    input: Any = None
    input_digest: str = ""
    idempotency_key: str | None = None
    trace_context: dict[str, str] = attrs.field(factory=dict)
    invocation: int = -1
    #: The current invocation's caller config (see `RunStarted.config`).
    config: dict[str, Any] = attrs.field(factory=dict)
    terminal: RunStatus | None = None
    steps: dict[str, Step] = attrs.field(factory=dict)
    interrupts: dict[str, InterruptStep] = attrs.field(factory=dict)
    #: pending timers: id -> (due_at, purpose, position)
    timers: dict[str, tuple[float, str, str]] = attrs.field(factory=dict)
    open_attempts: int = 0
    body_failures: int = 0
    body_retry_timer: str | None = None
    last_body_failure_ts: float = 0.0
    result: Any = None
    has_previous: bool = False
    previous: Any = None
    error: RunFailed | None = None
    reason: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    attempts: int = 0
    #: messages sent to the run, by topic, in append order: (seq, value)
    messages: dict[str, list[tuple[int, Any]]] = attrs.field(factory=dict)
    #: per topic, how many of its messages were delivered to a `receive()`
    delivered: dict[str, int] = attrs.field(factory=dict)
    #: idempotency keys of the messages sent so far
    message_keys: set[str] = attrs.field(factory=set)
    #: `receive()` positions waiting for a message: position -> topic
    receiving: dict[str, str] = attrs.field(factory=dict)
    #: values published by `set_event`: key -> latest value
    events: dict[str, Any] = attrs.field(factory=dict)
    #: tokens of the inbox messages that continued the run (see `RunContinued.token`)
    continue_tokens: frozenset[str] = frozenset()

    @property
    def started(self) -> bool:
        return self.invocation >= 0

    @property
    def status(self) -> RunStatus:
        """The run's status as the runs index shows it."""
        if self.terminal is not None:
            return self.terminal
        if self.open_attempts == 0 and self.body_retry_timer is None and self.waiting_on():
            return "waiting"
        return "running"

    def waiting_on(self) -> bool:
        """True if the run has an unanswered interrupt, an unfired durable sleep or a
        `receive()` waiting for a message."""
        if self.receiving:
            return True
        for step in self.interrupts.values():
            if step.pending:
                return True
        return any(purpose == "sleep" for _, purpose, _ in self.timers.values())

    def task_at(self, position: str) -> TaskStep | None:
        """The task step recorded at `position`, if any."""
        step = self.steps.get(position)
        return step if step is not None and step.kind == "task" else None

    def pending_interrupts(self) -> list[InterruptStep]:
        return [step for step in self.interrupts.values() if step.pending]


def _step(state: RunState, position: str, cls: type[_S]) -> _S:
    step = state.steps.get(position)
    if step.__class__ is cls:
        return step
    # Nothing recorded there yet (a consistent log never records two kinds at one position).
    new = state.steps[position] = cls(position)
    return new


def _run_started(state: RunState, e: RunStarted) -> None:
    if not state.started:
        state.created_at = e.ts
        state.idempotency_key = e.idempotency_key
        state.trace_context = dict(e.trace_context)
    state.target = e.target
    state.kind = e.kind
    state.input = e.input
    state.input_digest = e.input_digest
    state.invocation = e.invocation
    state.config = e.config
    state.terminal = None
    state.steps = {}
    state.interrupts = {}
    state.receiving = {}
    state.open_attempts = 0
    state.body_failures = 0
    state.body_retry_timer = None
    state.result = None
    state.error = None
    state.reason = ""
    state.attempts = 0


def _attempt_started(state: RunState, e: TaskAttemptStarted) -> None:
    step = _step(state, e.position, TaskStep)
    step.name = e.name
    step.input_digest = e.input_digest
    if step.seen_seq < 0:
        step.seen_seq = e.seen_seq
    if step.open_attempt is None:
        state.open_attempts += 1
    step.open_attempt = e.attempt
    state.attempts += 1


def _close_attempt(state: RunState, step: TaskStep) -> None:
    if step.open_attempt is not None:
        step.open_attempt = None
        state.open_attempts -= 1


def _attempt_failed(state: RunState, e: TaskAttemptFailed) -> None:
    if e.position == BODY:
        state.body_failures += 1
        state.last_body_failure_ts = e.ts
        return
    step = _step(state, e.position, TaskStep)
    step.name = e.name
    _close_attempt(state, step)
    step.failures += 1
    if e.error_type == ATTEMPT_LOST:
        step.lost += 1
    step.last_failure_ts = e.ts
    step.last_error = e


def _suspended(state: RunState, e: TaskSuspended) -> None:
    _close_attempt(state, _step(state, e.position, TaskStep))


def _completed(state: RunState, e: TaskCompleted) -> None:
    step = _step(state, e.position, TaskStep)
    _close_attempt(state, step)
    step.name = e.name
    step.input_digest = e.input_digest
    step.done = True
    step.result = e.result
    step.settled_seq = e.seq


def _failed(state: RunState, e: TaskFailed) -> None:
    step = _step(state, e.position, TaskStep)
    _close_attempt(state, step)
    step.name = e.name
    step.input_digest = e.input_digest
    step.failed = e
    step.settled_seq = e.seq


def _interrupted(state: RunState, e: Interrupted) -> None:
    step = _step(state, e.position, InterruptStep)
    step.interrupt_id = e.interrupt_id
    step.question = e.value
    # A log written before interrupts recorded their digest: derive it (the upcast).
    step.question_digest = e.value_digest or digest(e.value)
    step.seen_seq = e.seen_seq
    state.interrupts[e.interrupt_id] = step


def _resumed(state: RunState, e: Resumed) -> None:
    step = state.interrupts.get(e.interrupt_id)
    if step is not None:
        step.answered = True
        step.answer = e.value
        step.answer_token = e.token
        step.settled_seq = e.seq


def _interrupt_cancelled(state: RunState, e: InterruptCancelled) -> None:
    step = state.interrupts.get(e.interrupt_id)
    if step is not None:
        step.cancelled = True


def _timer_set(state: RunState, e: TimerSet) -> None:
    state.timers[e.timer_id] = (e.due_at, e.purpose, e.position)
    if e.purpose == "receive":
        receive = _step(state, e.position, ReceiveStep)
        receive.timer_id = e.timer_id
        receive.due_at = e.due_at
    elif e.purpose == "sleep":
        sleep = _step(state, e.position, SleepStep)
        sleep.timer_id = e.timer_id
        sleep.due_at = e.due_at
        sleep.seen_seq = e.seen_seq
    elif e.purpose == "deadline":
        pass  # the run's deadline: nothing waits on it, it cancels the run when it fires
    elif e.purpose == "interrupt":
        asked = _step(state, e.position, InterruptStep)
        asked.timer_id = e.timer_id
        asked.due_at = e.due_at
        asked.timeout = max(0.0, e.due_at - e.ts)
    elif e.position == BODY:
        state.body_retry_timer = e.timer_id
    else:
        _step(state, e.position, TaskStep).retry_timer = e.timer_id


def _timer_done(state: RunState, timer_id: str, fired: bool, seq: int) -> None:
    entry = state.timers.pop(timer_id, None)
    if entry is None:
        return
    _, purpose, position = entry
    if purpose == "sleep":
        step = state.steps.get(position)
        if step is not None and step.kind == "sleep":
            step.fired = fired
            if fired:
                step.settled_seq = seq
    elif purpose == "receive":
        step = state.steps.get(position)
        if fired and step is not None and step.kind == "receive" and not step.done:
            # The receive timed out: it returns None.
            state.receiving.pop(position, None)
            step.done = True
            step.fired = True
            step.result = None
            step.settled_seq = seq
    elif purpose == "deadline":
        pass
    elif purpose == "interrupt":
        step = state.steps.get(position)
        if fired and step is not None and step.kind == "interrupt" and not step.answered:
            # Nobody answered in time: the interrupt raises InterruptTimeoutError.
            step.fired = True
            step.settled_seq = seq
    elif position == BODY:
        state.body_retry_timer = None
    else:
        step = state.steps.get(position)
        if step is not None and step.kind == "task" and step.retry_timer == timer_id:
            step.retry_timer = None


def _run_completed(state: RunState, e: RunCompleted) -> None:
    state.terminal = "completed"
    state.result = e.result
    state.previous = e.saved
    state.has_previous = True


def _run_failed(state: RunState, e: RunFailed) -> None:
    state.terminal = "failed"
    state.error = e


def _run_cancelled(state: RunState, e: RunCancelled) -> None:
    state.terminal = "cancelled"
    state.reason = e.reason


def _run_parked(state: RunState, e: RunParked) -> None:
    state.terminal = "parked"
    state.reason = e.reason


def _run_continued(state: RunState, e: RunContinued) -> None:
    if e.token:
        state.continue_tokens = state.continue_tokens | {e.token}
    state.terminal = None
    state.error = None
    state.reason = ""
    state.body_failures = 0
    # Steps that failed for good get fresh attempts; completed ones stay.
    for position in [
        p for p, s in state.steps.items() if s.kind == "task" and s.failed is not None
    ]:
        del state.steps[position]


def _message_received(state: RunState, e: MessageReceived) -> None:
    state.messages.setdefault(e.topic, []).append((e.seq, e.value))
    if e.idempotency_key is not None:
        state.message_keys.add(e.idempotency_key)


def _receive_waiting(state: RunState, e: ReceiveWaiting) -> None:
    step = _step(state, e.position, ReceiveStep)
    step.name = e.topic
    step.seen_seq = e.seen_seq
    state.receiving[e.position] = e.topic


def _message_delivered(state: RunState, e: MessageDelivered) -> None:
    step = _step(state, e.position, ReceiveStep)
    step.name = e.topic
    if step.seen_seq < 0:
        step.seen_seq = e.seen_seq
    state.receiving.pop(e.position, None)
    state.delivered[e.topic] = state.delivered.get(e.topic, 0) + 1
    step.done = True
    step.result = next(
        (value for seq, value in state.messages.get(e.topic, ()) if seq == e.message_seq), None
    )
    step.message_seq = e.message_seq
    step.settled_seq = e.seq


def _receive_cancelled(state: RunState, e: ReceiveCancelled) -> None:
    step = _step(state, e.position, ReceiveStep)
    step.name = e.topic
    step.cancelled = True
    state.receiving.pop(e.position, None)


def _event_published(state: RunState, e: EventPublished) -> None:
    step = _step(state, e.position, SetEventStep)
    step.name = e.key
    step.done = True
    step.settled_seq = e.seq
    state.events[e.key] = e.value


_APPLY: dict[type[Event], Callable[[RunState, Any], None]] = {
    RunStarted: _run_started,
    TaskAttemptStarted: _attempt_started,
    TaskAttemptFailed: _attempt_failed,
    TaskSuspended: _suspended,
    TaskCompleted: _completed,
    TaskFailed: _failed,
    Interrupted: _interrupted,
    Resumed: _resumed,
    TimerSet: _timer_set,
    TimerFired: lambda s, e: _timer_done(s, e.timer_id, True, e.seq),
    TimerCancelled: lambda s, e: _timer_done(s, e.timer_id, False, e.seq),
    RunCompleted: _run_completed,
    RunFailed: _run_failed,
    RunCancelled: _run_cancelled,
    RunParked: _run_parked,
    RunContinued: _run_continued,
    MessageReceived: _message_received,
    ReceiveWaiting: _receive_waiting,
    MessageDelivered: _message_delivered,
    EventPublished: _event_published,
    ReceiveCancelled: _receive_cancelled,
    InterruptCancelled: _interrupt_cancelled,
}


def apply(state: RunState, event: Event) -> None:
    """Advance `state` by one event (in place)."""
    _APPLY[type(event)](state, event)
    state.next_seq = event.seq + 1
    state.updated_at = event.ts


def fold(run_id: str, events: Iterable[Event]) -> RunState:
    """Build a run's state from its events, from nothing."""
    state = RunState(run_id=run_id)
    for event in events:
        apply(state, event)
    return state
