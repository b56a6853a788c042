"""The event types of a run's log: frozen, slotted attrs classes with stable wire names.

A run's state is never stored; it is rebuilt by folding these events in order.
Each class has a wire name (``WIRE_NAME``, used in the JSON instead of the
Python path, so classes can move) and a schema version (``VERSION``); old
versions are upgraded by the upcasters in `perdure.eventlog._codec`.

Positions name a step of a run's deterministic call order: ``"0"``, ``"1"``,
... for the workflow body's steps, ``"3.0"`` for the first step inside the task
at position 3, and ``""`` for the body itself (its own retries).

``seen_seq`` on the events that record a step's request (attempt starts, sleep
timers, interrupts) is what the code had seen when it asked: every outcome
with a lower seq had been handed to it, none after. A replay withholds each
recorded outcome until the code has asked again for every step it had asked
for without seeing that outcome, so a race (``asyncio.wait`` over a task and a
sleep) has the winner it had live. ``-1``: not known (logs from before it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs

RunKind = Literal["function", "workflow"]
TimerPurpose = Literal["retry", "sleep", "receive", "interrupt", "deadline"]


@attrs.frozen(kw_only=True)
class Event:
    """Fields every event carries: its run, its per-run sequence number, its wall-clock time."""

    WIRE_NAME: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    run_id: str
    seq: int
    ts: float


@attrs.frozen(kw_only=True)
class RunStarted(Event):
    """An invocation of a run began. Workflows may have several invocations per thread."""

    WIRE_NAME: ClassVar[str] = "run_started"
    target: str
    kind: RunKind
    input: Any
    input_digest: str
    idempotency_key: str | None = None
    trace_context: dict[str, str] = attrs.field(factory=dict)
    invocation: int = 0
    #: The caller's config for this invocation, given to the body as its `config`:
    #: ``configurable`` keys other than the thread id, ``tags``, ``metadata`` (JSON).
    config: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class TaskAttemptStarted(Event):
    """Attempt `attempt` (0-indexed) of the step at `position` began running its body."""

    WIRE_NAME: ClassVar[str] = "task_attempt_started"
    position: str
    name: str
    input_digest: str
    attempt: int
    input: Any = None
    seen_seq: int = -1


@attrs.frozen(kw_only=True)
class TaskAttemptFailed(Event):
    """An attempt raised (or the process died during it). `next_retry_at` is set if retried."""

    WIRE_NAME: ClassVar[str] = "task_attempt_failed"
    position: str
    name: str
    attempt: int
    error_type: str
    message: str
    traceback: str = ""
    retryable: bool = True
    next_retry_at: float | None = None


@attrs.frozen(kw_only=True)
class TaskSuspended(Event):
    """An attempt stopped because its body called `interrupt()`; it is not a failure."""

    WIRE_NAME: ClassVar[str] = "task_suspended"
    position: str
    name: str
    attempt: int


@attrs.frozen(kw_only=True)
class TaskCompleted(Event):
    """The step at `position` produced `result`; replay returns it without running the task."""

    WIRE_NAME: ClassVar[str] = "task_completed"
    position: str
    name: str
    input_digest: str
    result: Any


@attrs.frozen(kw_only=True)
class TaskFailed(Event):
    """The step at `position` failed for good (retries exhausted or not retryable)."""

    WIRE_NAME: ClassVar[str] = "task_failed"
    position: str
    name: str
    input_digest: str
    error_type: str
    message: str
    traceback: str = ""
    attempts: int = 1


@attrs.frozen(kw_only=True)
class Interrupted(Event):
    """The run paused at `position` asking a person for input (`value` is the question).

    `value_digest` is the digest of `value`: a replay matches the interrupt at
    `position` by it, as a task is matched by its input digest. Logs written
    before it existed have ``""`` here; the digest is then computed from
    `value` when the log is folded.
    """

    WIRE_NAME: ClassVar[str] = "interrupted"
    position: str
    interrupt_id: str
    value: Any
    value_digest: str = ""
    seen_seq: int = -1


@attrs.frozen(kw_only=True)
class Resumed(Event):
    """The interrupt `interrupt_id` was answered with `value`.

    `token` names the message that carried the answer when it came through a shared
    store's inbox from another process (``""`` otherwise): a process that takes the run
    over and finds that message again (its taker died before removing it) sees it was
    applied, and does not apply it a second time.
    """

    WIRE_NAME: ClassVar[str] = "resumed"
    interrupt_id: str
    value: Any
    token: str = ""


@attrs.frozen(kw_only=True)
class TimerSet(Event):
    """A durable timer, due at `due_at` (unix seconds): a retry backoff, a durable sleep, a
    `receive()` or `interrupt()` timeout, or a run's deadline (`purpose`)."""

    WIRE_NAME: ClassVar[str] = "timer_set"
    timer_id: str
    due_at: float
    purpose: TimerPurpose
    position: str
    seen_seq: int = -1


@attrs.frozen(kw_only=True)
class TimerFired(Event):
    WIRE_NAME: ClassVar[str] = "timer_fired"
    timer_id: str


@attrs.frozen(kw_only=True)
class TimerCancelled(Event):
    WIRE_NAME: ClassVar[str] = "timer_cancelled"
    timer_id: str


@attrs.frozen(kw_only=True)
class RunCompleted(Event):
    """The invocation returned `result`; `saved` is what the next invocation sees as `previous`."""

    WIRE_NAME: ClassVar[str] = "run_completed"
    result: Any
    saved: Any = None


@attrs.frozen(kw_only=True)
class RunFailed(Event):
    """The invocation failed. `details` carries structured context (e.g. of a replay divergence)."""

    WIRE_NAME: ClassVar[str] = "run_failed"
    error_type: str
    message: str
    traceback: str = ""
    details: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RunCancelled(Event):
    WIRE_NAME: ClassVar[str] = "run_cancelled"
    reason: str = ""


@attrs.frozen(kw_only=True)
class RunParked(Event):
    """The supervisor gave up restarting the run's actor; `reason` says why."""

    WIRE_NAME: ClassVar[str] = "run_parked"
    reason: str


@attrs.frozen(kw_only=True)
class RunContinued(Event):
    """A failed or parked invocation was reopened: failed steps get fresh attempts.

    `token` names the message that asked for it when it came through a shared store's
    inbox from another process (``""`` otherwise, and in logs written before it was
    recorded): a process that takes the run over and finds that message again (its
    taker died before removing it) sees it was applied, and does not continue again.
    """

    WIRE_NAME: ClassVar[str] = "run_continued"
    reason: str = ""
    token: str = ""


@attrs.frozen(kw_only=True)
class MessageReceived(Event):
    """A message was sent to the run (`Runtime.send`) on `topic`; it waits for a `receive()`."""

    WIRE_NAME: ClassVar[str] = "message_received"
    topic: str
    value: Any
    idempotency_key: str | None = None


@attrs.frozen(kw_only=True)
class ReceiveWaiting(Event):
    """The body's `receive()` at `position` found no message on `topic` and waits for one."""

    WIRE_NAME: ClassVar[str] = "receive_waiting"
    position: str
    topic: str
    seen_seq: int = -1


@attrs.frozen(kw_only=True)
class ReceiveCancelled(Event):
    """The `areceive()` at `position` was cancelled before a message reached it (the
    loser of a race, or an ``asyncio.wait_for`` that gave up): it takes no message."""

    WIRE_NAME: ClassVar[str] = "receive_cancelled"
    position: str
    topic: str


@attrs.frozen(kw_only=True)
class InterruptCancelled(Event):
    """The `ainterrupt()` at `position` was cancelled before an answer or its timeout (the
    loser of a race, or an ``asyncio.wait_for`` that gave up): nobody can answer it any more."""

    WIRE_NAME: ClassVar[str] = "interrupt_cancelled"
    position: str
    interrupt_id: str


@attrs.frozen(kw_only=True)
class MessageDelivered(Event):
    """The `receive()` at `position` was handed the message recorded at `message_seq`."""

    WIRE_NAME: ClassVar[str] = "message_delivered"
    position: str
    topic: str
    message_seq: int
    seen_seq: int = -1


@attrs.frozen(kw_only=True)
class EventPublished(Event):
    """The body called `set_event(key, value)` at `position`; a later one overwrites it."""

    WIRE_NAME: ClassVar[str] = "event_set"
    position: str
    key: str
    value: Any


EVENT_TYPES: tuple[type[Event], ...] = (
    RunStarted,
    TaskAttemptStarted,
    TaskAttemptFailed,
    TaskSuspended,
    TaskCompleted,
    TaskFailed,
    Interrupted,
    Resumed,
    TimerSet,
    TimerFired,
    TimerCancelled,
    RunCompleted,
    RunFailed,
    RunCancelled,
    RunParked,
    RunContinued,
    MessageReceived,
    ReceiveWaiting,
    MessageDelivered,
    EventPublished,
    ReceiveCancelled,
    InterruptCancelled,
)

BY_WIRE_NAME: dict[str, type[Event]] = {cls.WIRE_NAME: cls for cls in EVENT_TYPES}
