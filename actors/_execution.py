"""Execution of a run's user code: the body, its retries, durable sleeps and timers.

The body is re-executed from its start whenever the run continues (after a
resume, a fired timer, a restart); steps already recorded answer at once from
the state (see `_scope.py`). Task attempts are in `_attempts.py`.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from perdure.actors import _observe
from perdure.actors._attempts import (
    _NEVER_RETRY,
    AttemptRunner,
    _format_error,
    fail_future,
)
from perdure.actors._errors import NonDeterminismError, Suspend, TaskFailedError
from perdure.actors._messages import BodyDone, CancelReceive, ReceiveRequest, SleepRequest
from perdure.actors._scope import Scope, call_task, current_scope, settle_all, wake
from perdure.actors._state import BODY, Step
from perdure.actors._targets import BodyInfo, Final, TargetSpec, body_config
from perdure.eventlog import (
    MessageDelivered,
    ReceiveCancelled,
    ReceiveWaiting,
    RunCompleted,
    RunFailed,
    SerializationError,
    TaskAttemptFailed,
    TaskSuspended,
    TimerCancelled,
    TimerFired,
    TimerSet,
    check_json,
)
from perdure.eventlog._json import fresh

if TYPE_CHECKING:
    from perdure.actors._actor import RunActor


class Execution(AttemptRunner):
    """The body of one actor incarnation, on top of its task attempts."""

    def __init__(self, actor: RunActor) -> None:
        super().__init__(actor)
        self.body: asyncio.Task[None] | None = None
        self.generation = 0
        self.restart_pending = False
        #: position -> futures of child tasks of the body waiting for that durable sleep
        self.sleep_waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: position -> futures of child tasks of the body waiting in `areceive()` there
        self.receive_waiters: dict[str, list[asyncio.Future[Any]]] = {}
        #: positions of `areceive()` calls the body's own code waits on: the body is
        #: parked there, and the actor may be evicted (the body is re-executed later)
        self.parked: set[str] = set()

    # -- recovery and lifecycle --------------------------------------------------------

    def recover(self) -> None:
        """After a rebuild: attempts the log shows open were lost with their process.

        Not in a settled run (parked, cancelled): nothing may be written to it (its
        store may be what failed); `continue_run` records them when it reopens it.
        """
        if self.actor.state.terminal is not None:
            return
        for step in list(self.actor.state.steps.values()):
            if step.open_attempt is not None:
                self.actor.crash_failure(step.position, step.name, step.open_attempt)

    def start_body(self) -> None:
        actor = self.actor
        state = actor.state
        if self.body is not None or state.terminal is not None or not state.started:
            return
        spec = actor.host.resolve_target(state.target)
        if spec is None:
            _observe.logger.warning(
                "run target is not registered in this process; the run waits for a process "
                "that has it",
                run_id=actor.run_id,
                target=state.target,
            )
            return
        self.generation += 1
        info = BodyInfo(
            run_id=actor.run_id,
            input=fresh(state.input),
            previous=fresh(state.previous),
            config=body_config(actor.host.body_config(actor.run_id), state.config),
            writer=functools.partial(actor.host.publish_custom, actor.run_id),
        )
        self.body = actor.loop.create_task(
            self._body_main(spec, self.generation, info), name=f"perdure-body-{actor.run_id}"
        )

    def backing_off(self) -> bool:
        """A function run whose only work is waiting on a retry timer (safe to unload:
        its trivial body is rebuilt and re-asks for the task when the timer fires)."""
        state = self.actor.state
        if state.kind != "function" or self.attempts:
            return False
        step = state.steps.get("0")
        return step is not None and step.retry_timer is not None

    def restart_body(self) -> None:
        """Re-execute the body now, or as soon as the running execution suspends."""
        if self.actor.state.terminal is not None:
            return
        if self.body is None:
            self.start_body()
        elif self.parked:
            # The body waits in its own `areceive()` and would not suspend before a
            # message: stop that execution (as a suspended one) and start the next.
            body, self.body = self.body, None
            self.generation += 1
            self._drop_sleep_waiters()
            body.cancel()
            self.start_body()
        else:
            self.restart_pending = True

    def cancel_work(self) -> None:
        """Stop the body and every attempt (run finished, cancelled, or actor stopping)."""
        self.generation += 1
        if self.body is not None:
            self.body.cancel()
            self.body = None
        self.cancel_attempts()
        # Child tasks the body left waiting (the losers of a race) end with it.
        for futures in self.waiters.values():
            for fut in futures:
                fut.cancel()
        self.waiters.clear()
        self._drop_sleep_waiters()

    def sleep_waiter(self, position: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.actor.loop.create_future()
        self.sleep_waiters.setdefault(position, []).append(fut)
        return fut

    def receive_waiter(self, position: str, *, park: bool = False) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.actor.loop.create_future()
        self.receive_waiters.setdefault(position, []).append(fut)
        if park:
            self.parked.add(position)
        incarnation = self.actor.incarnation

        def cancelled(done: asyncio.Future[Any]) -> None:
            # The child task was cancelled (it lost a race): withdraw the receive so that
            # no message goes to it. Waiters this execution drops itself are not listed.
            listed = self.receive_waiters.get(position, [])
            if done.cancelled() and done in listed:
                listed.remove(done)
                if self.actor.alive:
                    self.actor.post(CancelReceive(incarnation=incarnation, position=position))

        fut.add_done_callback(cancelled)
        return fut

    def on_cancel_receive(self, message: CancelReceive) -> None:
        if message.incarnation != self.actor.incarnation:
            return
        if self.receive_waiters.get(message.position):
            return  # another execution of the body waits there again
        self._withdraw(message.position)

    def _withdraw(self, position: str) -> None:
        """Record the receive at `position` as cancelled: it takes no message."""
        actor = self.actor
        state = actor.state
        step = state.steps.get(position)
        if (
            state.terminal is not None
            or step is None
            or step.kind != "receive"
            or step.done
            or step.cancelled
        ):
            return
        if step.timer_id in state.timers:
            actor.emit(TimerCancelled, timer_id=step.timer_id)
        actor.emit(ReceiveCancelled, position=position, topic=step.name)

    def _withdraw_cancelled(self) -> None:
        """Receives whose waiting child tasks were cancelled a moment ago (their
        `CancelReceive` is not handled yet) must not take the next message."""
        for position, futures in list(self.receive_waiters.items()):
            if futures and all(fut.cancelled() for fut in futures):
                del self.receive_waiters[position]
                self._withdraw(position)

    def _drop_sleep_waiters(self) -> None:
        for futures in self.sleep_waiters.values():
            for fut in futures:
                fut.cancel()
        self.sleep_waiters.clear()
        receive_waiters = list(self.receive_waiters.values())
        self.receive_waiters.clear()
        self.parked.clear()
        for futures in receive_waiters:
            for fut in futures:
                fut.cancel()

    def cancel_attempts(self) -> None:
        for task, _, _ in self.attempts.values():
            task.cancel()
        self.attempts.clear()

    def forget_calls(self) -> None:
        """Drop every task call and attempt (a start that did not commit; no one waits yet)."""
        self.cancel_attempts()
        self.calls.clear()
        for futures in self.waiters.values():
            for fut in futures:
                fut.cancel()
        self.waiters.clear()

    def fail_waiters(self, error: BaseException) -> None:
        for futures in self.waiters.values():
            for fut in futures:
                fail_future(fut, error)
        self.waiters.clear()

    def suspend_running_attempts(self) -> None:
        for position, (_, attempt, call) in list(self.attempts.items()):
            self.actor.emit(TaskSuspended, position=position, name=call.spec.name, attempt=attempt)
        self.cancel_work()

    # -- the body ------------------------------------------------------------------------

    async def _body_main(self, spec: TargetSpec, generation: int, info: BodyInfo) -> None:
        actor = self.actor
        scope = Scope(actor, "", info, generation)
        scope.root = asyncio.current_task()
        current_scope.set(scope)
        message = BodyDone(incarnation=actor.incarnation, generation=generation, outcome="returned")
        try:
            if spec.kind == "function":
                assert spec.task is not None
                kwargs = info.input if isinstance(info.input, dict) else {}
                message.value = await call_task(spec.task, (), kwargs)
            else:
                assert spec.run is not None
                message.value = await spec.run(info)
        except Suspend as signal:
            if signal.reason == "actor stopped":
                return
            message.outcome = "suspended"
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            message.outcome, message.error = (
                "raised",
                asyncio.CancelledError("body cancelled itself"),
            )
        except Exception as exc:
            message.outcome, message.error = "raised", exc
        actor.post(message)

    def on_body_done(self, message: BodyDone) -> None:
        actor = self.actor
        if message.incarnation != actor.incarnation or message.generation != self.generation:
            return
        self.body = None
        # Child tasks of the ended execution stop at their next step; a re-execution asks anew.
        self.generation += 1
        self._drop_sleep_waiters()
        if actor.state.terminal is not None:
            return
        if message.outcome == "returned":
            self._complete(message.value)
        elif message.outcome == "suspended":
            if self.restart_pending:
                self.restart_pending = False
                self.start_body()
            else:  # the run may have just paused: let waiters see it once all is durable
                actor.after_commit(lambda: actor.host.committed(actor, []))
        elif message.error is not None:
            self._body_failed(message.error)

    def _complete(self, value: Any, *, stored: bool = False) -> None:
        actor = self.actor
        if isinstance(value, Final):
            result, saved = value.value, value.save
        else:
            result = value
            saved = value if actor.state.kind == "workflow" else None
        try:
            if not stored:  # else: already in its stored form (a function's task result)
                result = check_json(result, "return value")
                saved = check_json(saved, "saved value")
        except SerializationError as exc:
            self._fail_run(
                exc,
                f"{actor.state.target!r} (run {actor.run_id!r}) returned a value that cannot be "
                f"stored: {exc}. Fix the code, then continue the run.",
            )
            return
        self._cancel_timers()
        actor.emit(RunCompleted, result=result, saved=saved)
        self.cancel_work()
        actor.after_commit(self._log_settled)

    def _log_settled(self) -> None:
        actor = self.actor
        if _observe.logger.isEnabledFor(_observe.INFO):
            _observe.logger.info(
                "run settled",
                run_id=actor.run_id,
                target=actor.state.target,
                status=actor.state.status,
                trace_id=_observe.trace_id_of(actor.run_span),
            )
        error = actor.state.error
        _observe.end_span(
            actor.run_span, message=f"{error.error_type}: {error.message}" if error else ""
        )
        actor.run_span = None

    def _cancel_timers(self) -> None:
        for timer_id in list(self.actor.state.timers):
            self.actor.emit(TimerCancelled, timer_id=timer_id)

    def _fail_run(self, error: BaseException, message: str | None = None) -> None:
        error_type, text, trace = _format_error(error)
        if isinstance(error, TaskFailedError) and self.actor.state.kind == "function":
            error_type, text = error.error_type, error.error_message
        details: dict[str, str] = {}
        if isinstance(error, NonDeterminismError):
            details = {
                "position": error.position,
                "recorded": error.recorded,
                "requested": error.requested,
            }
        self._cancel_timers()
        self.actor.emit(
            RunFailed,
            error_type=error_type,
            message=message or text,
            traceback=trace,
            details=details,
        )
        self.cancel_work()
        self.actor.after_commit(self._log_settled)

    def _body_failed(self, error: BaseException) -> None:
        actor = self.actor
        state = actor.state
        spec = actor.host.resolve_target(state.target)
        policy = spec.retry if spec is not None else None
        failures = state.body_failures + 1
        if (
            policy is None
            or isinstance(error, (*_NEVER_RETRY, TaskFailedError))
            or not policy.is_retryable(error)
            or failures >= policy.max_attempts
        ):
            self._fail_run(error)
            return
        due = actor.host.clock.now() + policy.delay(failures)
        error_type, text, trace = _format_error(error)
        actor.emit(
            TaskAttemptFailed,
            position=BODY,
            name=state.target,
            attempt=failures - 1,
            error_type=error_type,
            message=text,
            traceback=trace,
            retryable=True,
            next_retry_at=due,
        )
        actor.emit(
            TimerSet,
            timer_id=f"retry:{state.invocation}:body:{failures}",
            due_at=due,
            purpose="retry",
            position=BODY,
        )

    # -- tasks -------------------------------------------------------------------------------

    # -- sleeps and timers -----------------------------------------------------------------

    def on_sleep(self, message: SleepRequest) -> None:
        actor = self.actor
        if message.incarnation != actor.incarnation or message.position in actor.state.steps:
            return
        actor.emit(
            TimerSet,
            timer_id=f"sleep:{actor.state.invocation}:{message.position}",
            due_at=actor.host.clock.now() + message.seconds,
            purpose="sleep",
            position=message.position,
            seen_seq=message.seen_seq,
        )

    # -- messages --------------------------------------------------------------------------

    def on_receive(self, message: ReceiveRequest) -> None:
        """The body's `receive()` at a new position: hand it the next message or wait."""
        actor = self.actor
        state = actor.state
        if message.incarnation != actor.incarnation or state.terminal is not None:
            return
        step = state.steps.get(message.position)
        if step is not None:
            if step.done:  # settled meanwhile: the waiter or the re-executed body finds it
                self._wake_receive(message.position, step)
            elif message.position in state.receiving:
                self._deliver_message(message.position, message.topic, message.seen_seq)
            return
        if self._deliver_message(message.position, message.topic, message.seen_seq):
            return
        # Soft: a crash that loses it only makes the re-executed body ask again, and the
        # next message's commit takes it along (one fsync per message in a receive loop).
        # With a timeout it is hard, with its timer: the timeout counts from the first ask.
        actor.emit(
            ReceiveWaiting,
            soft=message.timeout is None,
            position=message.position,
            topic=message.topic,
            seen_seq=message.seen_seq,
        )
        if message.timeout is not None:
            actor.emit(
                TimerSet,
                timer_id=f"receive:{state.invocation}:{message.position}",
                due_at=actor.host.clock.now() + max(0.0, message.timeout),
                purpose="receive",
                position=message.position,
                seen_seq=message.seen_seq,
            )

    def deliver_waiting(self, topic: str) -> None:
        """A message arrived on `topic`: hand it to a `receive()` waiting there, if any."""
        if self.receive_waiters:
            self._withdraw_cancelled()
        for position, waited in list(self.actor.state.receiving.items()):
            if waited == topic and not self._deliver_message(position, topic, -1):
                return

    def _deliver_message(self, position: str, topic: str, seen_seq: int) -> bool:
        """Record the next undelivered message on `topic` as the receive at `position`'s."""
        actor = self.actor
        state = actor.state
        queue = state.messages.get(topic, ())
        index = state.delivered.get(topic, 0)
        if index >= len(queue):
            return False
        actor.emit(
            MessageDelivered,
            position=position,
            topic=topic,
            message_seq=queue[index][0],
            seen_seq=seen_seq,
        )
        step = state.steps.get(position)
        if step is not None and step.timer_id in state.timers:
            actor.emit(TimerCancelled, timer_id=step.timer_id)
        self._wake_receive(position, step)
        return True

    def _wake_receive(self, position: str, step: Step | None) -> None:
        """The receive at `position` settled: hand its result to a child task waiting on
        it (a race), else re-execute the body (it stopped there)."""
        waiters = self.receive_waiters.pop(position, None)
        self.parked.discard(position)
        if waiters and step is not None:
            value = step.result
            self.actor.after_commit(lambda: settle_all(waiters, value))
        else:
            self.actor.after_commit(self.restart_body)

    def on_timer(self, timer_id: str) -> None:
        actor = self.actor
        entry = actor.state.timers.get(timer_id)
        if entry is None or actor.state.terminal is not None:
            return
        due_at, purpose, position = entry
        actor.emit(TimerFired, timer_id=timer_id)
        if purpose == "deadline":
            when = datetime.fromtimestamp(due_at, tz=UTC).isoformat(timespec="milliseconds")
            actor.cancel_run(f"deadline exceeded: the invocation had to be done by {when}")
            actor.after_commit(self._log_settled)
            return
        if purpose == "sleep" and position in self.sleep_waiters:
            # A child task of the live body waits on it (a race): wake it, nothing to restart.
            waiters = self.sleep_waiters.pop(position)
            actor.after_commit(lambda: wake(waiters))
        elif purpose == "receive" and position in self.receive_waiters:
            self._wake_receive(position, actor.state.steps.get(position))
        elif purpose in ("sleep", "receive", "interrupt") or position == BODY:
            actor.after_commit(self.restart_body)
        else:
            self.ensure_attempt(position)
