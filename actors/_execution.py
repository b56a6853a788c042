"""Execution of a run's user code: the body, the attempts of its tasks, durable sleeps and timers.

The body is re-executed from its start whenever the run continues (after a
resume, a fired timer, a restart); steps already recorded answer at once from
the state (see `_scope.py`).

A task call becomes an attempt (an asyncio task of its own, sync code in the
task pool) that reports back through the mailbox. Its outcome is committed
before any waiting code sees it: a result (`TaskCompleted`), a pause
(`TaskSuspended`), or a failure with a retry timer or a final `TaskFailed`.
What follows a failure is decided in `_decide.py` from the task's own
`RetryPolicy`; attempts lost with their process (`AttemptLost`) are retried
without using up that budget, up to the policy's `max_lost_attempts`. An
attempt's start is durable before its body runs, so an attempt that ran is in
the log and its number is never reused (for the exceptions see `_start_attempt`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from perdure.actors import _decide, _observe
from perdure.actors._errors import NonDeterminismError, Suspend, TaskFailedError, TaskTimeoutError
from perdure.actors._failure import failure_error, format_error
from perdure.actors._messages import (
    AttemptDone,
    BodyDone,
    CancelInterrupt,
    CancelReceive,
    ExecuteTask,
    InterruptRequest,
    ReceiveRequest,
    SleepRequest,
    UnparkReceive,
)
from perdure.actors._ports import ActorCore
from perdure.actors._scope import (
    Scope,
    call_task,
    current_scope,
    dispatch_deferred,
    quiet,
    settle_all,
    settle_interrupt,
    wake,
)
from perdure.actors._state import BODY, InterruptStep, ReceiveStep, TaskStep
from perdure.actors._targets import AttemptInfo, BodyInfo, Final, TargetSpec, body_config
from perdure.actors._watchdog import watchdog
from perdure.eventlog import (
    InterruptCancelled,
    Interrupted,
    MessageDelivered,
    ReceiveCancelled,
    ReceiveWaiting,
    RunCompleted,
    RunFailed,
    SerializationError,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TaskFailed,
    TaskSuspended,
    TimerCancelled,
    TimerFired,
    TimerSet,
    check_json,
    fresh,
    restore,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span


def fail_future(fut: asyncio.Future[Any], error: BaseException) -> None:
    """Fail a waiting future without a "never retrieved" warning if nobody awaits it any more."""
    if not fut.done():
        fut.set_exception(error)
        fut.exception()


def _open_gate(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_result(None)


class Execution:
    """The user code of one actor incarnation: its body, and the attempts of the tasks it calls."""

    def __init__(self, actor: ActorCore) -> None:
        self.actor = actor
        #: position -> (attempt task, attempt number, the call that started it); the task
        #: is None for an attempt run in its caller's thread (`run_inline`)
        self.attempts: dict[str, tuple[asyncio.Task[None] | None, int, ExecuteTask]] = {}
        self.calls: dict[str, ExecuteTask] = {}
        self.waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        #: The run span whose trace id the attempts' logs carry, and that id as text.
        self._trace_id: tuple[Span, str] | None = None
        self.body: asyncio.Task[None] | None = None
        self.generation = 0
        self.restart_pending = False
        #: position -> futures of child tasks of the body waiting for that durable sleep
        self.sleep_waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: position -> futures of child tasks of the body waiting in `areceive()` there
        self.receive_waiters: dict[str, list[asyncio.Future[Any]]] = {}
        #: a sync body's thread waiting in `receive()` -> the future it waits on
        self.thread_parks: dict[concurrent.futures.Future[Any], asyncio.Future[Any]] = {}
        #: position -> futures of code waiting in `ainterrupt()` there
        self.interrupt_waiters: dict[str, list[asyncio.Future[Any]]] = {}
        #: positions of `areceive()`/`ainterrupt()` calls the body's own code waits on: the
        #: body is parked there, and the actor may be evicted (the body is re-executed later)
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
            if step.kind == "task" and step.open_attempt is not None:
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
        step = state.task_at("0")
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
                if not listed:
                    self.parked.discard(position)
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

    def interrupt_waiter(self, position: str, *, park: bool) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.actor.loop.create_future()
        self.interrupt_waiters.setdefault(position, []).append(fut)
        if park:
            self.parked.add(position)
        incarnation = self.actor.incarnation

        def cancelled(done: asyncio.Future[Any]) -> None:
            # Its waiter was cancelled (a lost race, `wait_for` gave up): withdraw the
            # interrupt. Waiters this execution drops itself are not listed any more.
            listed = self.interrupt_waiters.get(position, [])
            if done.cancelled() and done in listed:
                listed.remove(done)
                if not listed:
                    del self.interrupt_waiters[position]
                    self.parked.discard(position)
                if self.actor.alive:
                    self.actor.post(CancelInterrupt(incarnation=incarnation, position=position))

        fut.add_done_callback(cancelled)
        return fut

    def on_cancel_interrupt(self, message: CancelInterrupt) -> None:
        if message.incarnation != self.actor.incarnation:
            return
        if self.interrupt_waiters.get(message.position):
            return  # another execution of the body waits there again
        self._withdraw_interrupt(message.position)

    def _withdraw_interrupt(self, position: str) -> None:
        """Record the interrupt at `position` as cancelled: nobody can answer it any more."""
        actor = self.actor
        state = actor.state
        step = state.steps.get(position)
        if state.terminal is not None or step is None or step.kind != "interrupt":
            return
        if not step.pending:
            return
        if step.timer_id in state.timers:
            actor.emit(TimerCancelled, timer_id=step.timer_id)
        actor.emit(InterruptCancelled, position=position, interrupt_id=step.interrupt_id)

    def withdraw_cancelled_interrupts(self) -> None:
        """Interrupts whose waiters were cancelled a moment ago (their `CancelInterrupt`
        is not handled yet) must not take an answer (a resume is being handled)."""
        for position, futures in list(self.interrupt_waiters.items()):
            if futures and all(fut.cancelled() for fut in futures):
                del self.interrupt_waiters[position]
                self.parked.discard(position)
                self._withdraw_interrupt(position)

    def on_interrupt(self, message: InterruptRequest) -> None:
        """The code's `interrupt()` at a new position: record the question (and its timer)."""
        actor = self.actor
        if message.incarnation != actor.incarnation:
            return
        step = actor.state.steps.get(message.position)
        if step is not None:
            if step.kind == "interrupt" and (step.answered or step.fired):
                self.wake_interrupt(step)  # settled meanwhile: hand it to the waiter
            return
        actor.emit(
            Interrupted,
            position=message.position,
            interrupt_id=message.interrupt_id,
            value=message.value,
            value_digest=message.digest,
            seen_seq=message.seen_seq,
        )
        if message.timeout is not None:
            actor.emit(
                TimerSet,
                timer_id=f"interrupt:{actor.state.invocation}:{message.position}",
                due_at=actor.host.clock.now() + message.timeout,
                purpose="interrupt",
                position=message.position,
                seen_seq=message.seen_seq,
            )

    def wake_interrupt(self, step: InterruptStep) -> bool:
        """The interrupt `step` was answered or timed out: hand that to the code waiting in
        `ainterrupt()` once durable. False if none waits (the body must be re-executed)."""
        self.parked.discard(step.position)
        waiters = self.interrupt_waiters.pop(step.position, None)
        if not waiters:
            return False
        run_id = self.actor.run_id
        self.actor.after_commit(lambda: settle_interrupt(waiters, run_id, step))
        return True

    def answering(self) -> bool:
        """Whether code of the live body waits in `ainterrupt()` (the run is paused there
        for its callers even though its body has not stopped)."""
        return bool(self.interrupt_waiters)

    def _drop_sleep_waiters(self) -> None:
        for futures in self.sleep_waiters.values():
            for fut in futures:
                fut.cancel()
        self.sleep_waiters.clear()
        dropped = [*self.receive_waiters.values(), *self.interrupt_waiters.values()]
        self.receive_waiters.clear()
        self.interrupt_waiters.clear()
        self.parked.clear()
        for futures in dropped:
            for fut in futures:
                fut.cancel()

    def cancel_attempts(self) -> None:
        for task, _, _ in self.attempts.values():
            if task is not None:
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
        if scope.deferred is not None:  # a sync body's last call, never waited on
            dispatch_deferred(scope)
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
        error_type, text, trace = format_error(error)
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
        retry = _decide.after_body_failure(
            state, spec.retry if spec is not None else None, error, actor.host.clock.now()
        )
        if retry is None:
            self._fail_run(error)
            return
        due, failures = retry.due, retry.failures
        error_type, text, trace = format_error(error)
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

    # -- task attempts -----------------------------------------------------------------

    def on_execute(self, message: ExecuteTask) -> None:
        actor = self.actor
        if message.incarnation != actor.incarnation or actor.state.terminal is not None:
            message.future.cancel()
            return
        position = message.position
        if message.inline and self._begin_inline(message):
            return
        step = actor.state.task_at(position)
        self.calls[position] = message
        if step is not None and (step.done or step.failed is not None):
            self._deliver(step, [message.future], message.spec.result_type)
            return
        self.waiters.setdefault(position, []).append(message.future)
        self.ensure_attempt(position)

    def _begin_inline(self, call: ExecuteTask) -> bool:
        """Record the start of an attempt its caller's thread runs (`run_inline`); False
        if the call must take the usual way instead (then it is no longer `inline`)."""
        position = call.position
        if self.calls.get(position) is call:
            return True  # its outcome came first (the watchdog sent this start late)
        if (
            self.actor.state.task_at(position) is None
            and position not in self.calls
            and position not in self.attempts
        ):
            self.calls[position] = call
            self.waiters.setdefault(position, []).append(call.future)
            self._start_attempt(call, 0, inline=True)
            return True
        # Another execution of the body asked first (a stale one still running): this
        # call joins that step; the caller's own run of it is ignored when it reports.
        call.inline = False
        return False

    def _deliver(
        self, step: TaskStep, futures: list[asyncio.Future[Any]], result_type: Any
    ) -> None:
        """Hand a settled step's outcome to waiting code, once that outcome is durable."""
        actor = self.actor

        def resolve() -> None:
            for fut in futures:
                if fut.done():
                    continue
                if step.done:
                    try:
                        value = restore(step.result, result_type)
                    except SerializationError as exc:  # not the declared type: the caller's error
                        fail_future(fut, exc)
                    else:
                        fut.set_result(value)
                elif step.failed is not None:
                    fail_future(fut, failure_error(actor.run_id, step.failed))

        if step.settled_seq >= actor.durable_seq:
            actor.after_commit(resolve)
        else:
            resolve()

    def ensure_attempt(self, position: str) -> None:
        """Start the next attempt of a called task unless one runs or a backoff is pending."""
        actor = self.actor
        if position in self.attempts or actor.state.terminal is not None:
            return
        call = self.calls.get(position)
        if call is None:
            return
        step = actor.state.task_at(position)
        self._carry_out(
            _decide.next_attempt(step, call.spec.retry, actor.host.clock.now()), step, call
        )

    def _carry_out(
        self, decision: _decide.Decision, step: TaskStep | None, call: ExecuteTask
    ) -> None:
        if isinstance(decision, _decide.StartAttempt):
            self._start_attempt(call, decision.attempt)
        elif isinstance(decision, _decide.SetRetryTimer):
            self._set_retry_timer(call.position, decision.due, decision.failures)
        elif isinstance(decision, _decide.FailStep):
            assert step is not None
            self._final_failure(step, call)

    def _set_retry_timer(self, position: str, due: float, failures: int) -> None:
        self.actor.emit(
            TimerSet,
            timer_id=f"retry:{self.actor.state.invocation}:{position}:{failures}",
            due_at=due,
            purpose="retry",
            position=position,
        )

    def _start_attempt(self, call: ExecuteTask, attempt: int, *, inline: bool = False) -> None:
        """Record the attempt's start, then run it once that record is durable.

        The start is committed before the body runs, so an attempt that ran is
        in the log even if its process dies a moment later, and the next
        attempt gets a higher number (`ctx.attempt`). It shares the commit of
        whatever the same batch holds (the failure or timer that triggered a
        retry, a function's `RunStarted`). Two exceptions, where the start stays
        soft and goes out with the attempt's result (one commit per step):

        - while the invocation's own `RunStarted` is soft (`run()`, `invoke`): a
          crash loses the whole invocation, so nothing can run this attempt
          again under its number;
        - the first attempt of a workflow task, unless `attempt_linger` is 0:
          a workflow step would otherwise cost two durable commits (its start
          cannot share the previous step's commit: the workflow code only asks
          for it once that result is durable). A kill within the linger runs
          the task again as attempt 0, with no trace of the first run (a task
          has no `ctx.attempt`; the body still ran at least once).
        """
        actor = self.actor
        spec = call.spec
        record = spec.record_input and attempt == 0
        soft = actor.start_pending() or (
            attempt == 0 and actor.state.kind == "workflow" and actor.host.attempt_linger > 0
        )
        actor.emit(
            TaskAttemptStarted,
            soft=soft,
            position=call.position,
            name=spec.name,
            input_digest=call.digest,
            attempt=attempt,
            input=(call.stored or [call.args, call.kwargs]) if record else None,
            seen_seq=call.seen_seq,
        )
        state = actor.state
        key = state.idempotency_key if state.kind == "function" and state.idempotency_key else None
        info = AttemptInfo(
            run_id=actor.run_id,
            name=spec.name,
            position=call.position,
            attempt=attempt,
            idempotency_key=key or f"perdure:{actor.run_id}:{state.invocation}:{call.position}",
            target=state.target,
        )
        if inline:  # its caller's thread runs it (`run_inline`) and reports an AttemptDone
            self.attempts[call.position] = (None, attempt, call)
            return
        gate: asyncio.Future[None] | None = None
        if not soft:
            gate = actor.loop.create_future()
            actor.after_commit(functools.partial(_open_gate, gate))
        task = actor.loop.create_task(
            self._attempt_main(call, attempt, info, gate), name=f"perdure-task-{spec.name}"
        )
        self.attempts[call.position] = (task, attempt, call)

    async def _attempt_main(
        self,
        call: ExecuteTask,
        attempt: int,
        info: AttemptInfo,
        gate: asyncio.Future[None] | None,
    ) -> None:
        actor = self.actor
        spec = call.spec
        if gate is not None:
            await gate  # the start is durable: the body may run
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(actor.host.task_concurrency)
        done = AttemptDone(
            incarnation=actor.incarnation, position=call.position, attempt=attempt, outcome="ok"
        )
        async with self._semaphore:
            scope = Scope(actor, call.position, None)
            current_scope.set(scope)
            span = self._attempt_span(call, attempt)
            timed_out = False
            try:
                if spec.timeout is None:
                    done.value = await spec.call(call.args, call.kwargs, info)
                else:
                    async with asyncio.timeout(spec.timeout) as deadline:
                        done.value = await spec.call(call.args, call.kwargs, info)
                done.value = check_json(done.value, "result")
            except Suspend as signal:
                if signal.reason == "actor stopped":
                    _observe.end_span(span)
                    return
                done.outcome = "suspended"
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    _observe.end_span(span, message="cancelled")
                    raise
                done.outcome, done.error = "error", asyncio.CancelledError("task cancelled itself")
            except TimeoutError as exc:
                timed_out = spec.timeout is not None and deadline.expired()
                done.outcome = "error"
                done.error = (
                    TaskTimeoutError(
                        f"attempt exceeded the task's timeout of {spec.timeout} s",
                        run_id=actor.run_id,
                        task=spec.name,
                        timeout=spec.timeout,
                    )
                    if timed_out and spec.timeout is not None
                    else exc
                )
            except SerializationError as exc:
                done.outcome, done.error = "error", _unstorable(spec.name, exc)
            except Exception as exc:
                done.outcome, done.error = "error", exc
            if scope.deferred is not None:  # a sync task's last call, never waited on
                dispatch_deferred(scope)
            _observe.end_span(span, done.error)
        actor.post(done)

    def _attempt_span(self, call: ExecuteTask, attempt: int) -> Span | None:
        """Start the attempt's span (None if the run is not traced) and bind its log context
        (in the attempt's own context: an asyncio task's, or a copy in `run_inline`)."""
        actor = self.actor
        parent = actor.run_span
        span: Span | None
        if parent is not None and not parent.is_recording():
            # The run is not traced (no tracer provider, or sampled out), nor are its
            # attempts; their logs still carry the run's trace id (formatted once a span).
            span = None
            known = self._trace_id
            if known is not None and known[0] is parent:
                trace_id = known[1]
            else:
                trace_id = _observe.trace_id_hex(parent)
                self._trace_id = (parent, trace_id)
        else:
            from opentelemetry import trace  # loaded already: the host's tracer comes from it

            span = actor.host.tracer.start_span(
                f"perdure.task {call.spec.name}",
                context=trace.set_span_in_context(parent) if parent else None,
                attributes={
                    "perdure.run_id": actor.run_id,
                    "perdure.task": call.spec.name,
                    "perdure.position": call.position,
                    "perdure.attempt": attempt,
                },
            )
            trace_id = _observe.trace_id_hex(span)
        _observe.bind_attempt(actor.run_id, actor.state.target, call.spec.name, attempt, trace_id)
        return span

    def run_inline(self, call: ExecuteTask) -> None:
        """Run the first attempt of a sync task in the thread of the sync code waiting on it.

        Called in that thread (a sync body or task, from `TaskFuture.result`), for a
        new step whose attempt start is soft (`RunActor.inline_tasks`). The task runs
        here, in a copy of the caller's context; then its call (marked `inline`: the
        actor records the start and starts nothing) and its `AttemptDone` go to the
        actor in one trip, and it records them like any attempt's. If the task runs
        longer than half the linger, the watchdog sends the call meanwhile, so the
        start is committed while the task runs, as a pooled attempt's would be.
        What follows a failure (retries, in the task pool) and the delivery of the
        durable outcome are the usual ones. Saves two thread crossings per step (to
        a task thread and back) and one actor turn. Never for a task with a
        `timeout`: nothing could interrupt this thread.
        """
        actor = self.actor
        loop = actor.loop
        call.inline = True
        # The start goes with the outcome, unless the task outlives the watchdog's delay.
        watchdog.arm(
            call,
            actor.host.attempt_linger / 2,
            functools.partial(loop.call_soon_threadsafe, actor.post, call),
        )
        done = AttemptDone(
            incarnation=call.incarnation, position=call.position, attempt=0, outcome="ok"
        )
        done.inline, done.call = True, call
        try:
            ran = contextvars.copy_context().run(self._inline_main, call, done)
        except BaseException:  # KeyboardInterrupt, SystemExit: no start left behind to send
            watchdog.claim(call)
            raise
        start_held = watchdog.claim(call)  # else the watchdog sent it
        if not ran:
            raise quiet(Suspend("actor stopped"))
        if start_held:
            loop.call_soon_threadsafe(_post_both, actor, call, done)
        else:
            loop.call_soon_threadsafe(actor.post, done)

    def _inline_main(self, call: ExecuteTask, done: AttemptDone) -> bool:
        """The attempt of `run_inline` (in its own context); False if the actor stopped."""
        spec = call.spec
        assert spec.inline is not None
        scope = Scope(self.actor, call.position, None)
        current_scope.set(scope)
        span = self._attempt_span(call, 0)
        try:
            done.value = check_json(spec.inline(*call.args, **call.kwargs), "result")
        except Suspend as signal:
            if signal.reason == "actor stopped":
                _observe.end_span(span)
                return False
            done.outcome = "suspended"
        except asyncio.CancelledError:
            done.outcome, done.error = "error", asyncio.CancelledError("task cancelled itself")
        except SerializationError as exc:
            done.outcome, done.error = "error", _unstorable(spec.name, exc)
        except Exception as exc:
            done.outcome, done.error = "error", exc
        if scope.deferred is not None:
            dispatch_deferred(scope)
        _observe.end_span(span, done.error)
        return True

    def on_attempt_done(self, message: AttemptDone) -> None:
        actor = self.actor
        if message.incarnation != actor.incarnation:
            return
        entry = self.attempts.get(message.position)
        if entry is None and message.call is not None and actor.state.terminal is None:
            # An inline attempt's outcome overtook its start (sent late by the watchdog).
            if not self._begin_inline(message.call):
                self.on_execute(message.call)  # the step is another's: join it
                return
            entry = self.attempts.get(message.position)
        if entry is None or entry[1] != message.attempt or (entry[0] is None) != message.inline:
            return
        del self.attempts[message.position]
        if actor.state.terminal is not None:
            return
        call = entry[2]
        step = actor.state.steps[message.position]
        assert step.kind == "task"
        if message.outcome == "ok":
            actor.emit(
                TaskCompleted,
                position=call.position,
                name=call.spec.name,
                input_digest=call.digest,
                result=message.value,
            )
            self.calls.pop(call.position, None)  # settled: a long run must not keep every call
            self._deliver(step, self.waiters.pop(call.position, []), call.spec.result_type)
            if actor.state.kind == "function" and call.position == "0":
                # The function's trivial body would only repeat this: finish the run in
                # the same commit (`_complete` cancels the body and its BodyDone).
                self._complete(message.value, stored=True)
        elif message.outcome == "suspended":
            actor.emit(
                TaskSuspended, position=call.position, name=call.spec.name, attempt=message.attempt
            )
            futures = self.waiters.pop(call.position, [])

            def suspend() -> None:
                for fut in futures:
                    fail_future(fut, Suspend("task paused"))

            actor.after_commit(suspend)
        else:
            assert message.error is not None
            self._record_failure(step, call, message.attempt, message.error)

    def _record_failure(
        self, step: TaskStep, call: ExecuteTask, attempt: int, error: BaseException
    ) -> None:
        actor = self.actor
        decided = _decide.after_failure(step, call.spec.retry, error, actor.host.clock.now())
        due = decided.next_retry_at
        error_type, text, trace = format_error(error)
        actor.emit(
            TaskAttemptFailed,
            position=call.position,
            name=call.spec.name,
            attempt=attempt,
            error_type=error_type,
            message=text,
            traceback=trace,
            retryable=decided.retryable,
            next_retry_at=due,
        )
        if _observe.logger.isEnabledFor(_observe.WARNING):
            _observe.logger.warning(
                "attempt failed",
                run_id=actor.run_id,
                target=actor.state.target,
                task=call.spec.name,
                attempt=attempt,
                error=f"{error_type}: {text}",
                retry_at=due,
                trace_id=_observe.trace_id_of(actor.run_span),
            )
        self._carry_out(decided.then, step, call)

    def _final_failure(self, step: TaskStep, call: ExecuteTask) -> None:
        actor = self.actor
        last = step.last_error
        actor.emit(
            TaskFailed,
            position=call.position,
            name=call.spec.name,
            input_digest=call.digest,
            error_type=last.error_type if last else "Error",
            message=_decide.final_failure_message(step, call.spec.retry),
            traceback=last.traceback if last else "",
            attempts=step.failures,
        )
        self.calls.pop(call.position, None)
        self._deliver(step, self.waiters.pop(call.position, []), call.spec.result_type)
        if actor.state.kind == "function" and call.position == "0":
            assert step.failed is not None
            self._fail_run(failure_error(actor.run_id, step.failed))

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

    def park_thread(self, position: str, waiter: concurrent.futures.Future[Any]) -> None:
        """A sync body's `receive()` waits in its thread on `waiter` for what the receive at
        `position` takes (instead of stopping, to be re-executed for each message)."""
        fut = self.receive_waiter(position, park=True)
        self.thread_parks[waiter] = fut

        def copy(done: asyncio.Future[Any]) -> None:
            self.thread_parks.pop(waiter, None)
            if waiter.done():
                return
            if done.cancelled():
                waiter.cancel()
            else:
                waiter.set_result(done.result())

        fut.add_done_callback(copy)

    def on_unpark(self, message: UnparkReceive) -> None:
        fut = self.thread_parks.pop(message.waiter, None)
        if fut is None:  # its receive was never taken (stale, settled run): stop waiting
            if not message.waiter.done():
                message.waiter.cancel()
            return
        listed = self.receive_waiters.get(message.position, [])
        if fut not in listed:
            return  # the message is on its way (handed over once durable)
        listed.remove(fut)
        if not listed:
            del self.receive_waiters[message.position]
            self.parked.discard(message.position)
        fut.cancel()  # not a lost race: no `receive_cancelled`; the body stops there

    def on_receive(self, message: ReceiveRequest) -> None:
        """The body's `receive()` at a new position: hand it the next message or wait."""
        actor = self.actor
        state = actor.state
        if message.incarnation != actor.incarnation or state.terminal is not None:
            return
        if message.thread_waiter is not None:
            self.park_thread(message.position, message.thread_waiter)
        step = state.steps.get(message.position)
        if step is not None:
            if step.kind == "receive" and step.done:  # settled meanwhile: the waiter or
                self._wake_receive(message.position, step)  # the re-executed body finds it
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
        receive = step if step is not None and step.kind == "receive" else None
        if receive is not None and receive.timer_id in state.timers:
            actor.emit(TimerCancelled, timer_id=receive.timer_id)
        self._wake_receive(position, receive)
        return True

    def _wake_receive(self, position: str, step: ReceiveStep | None) -> None:
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
            step = actor.state.steps.get(position)
            self._wake_receive(
                position, step if step is not None and step.kind == "receive" else None
            )
        elif purpose == "interrupt" and position in self.interrupt_waiters:
            asked = actor.state.steps.get(position)
            if asked is None or asked.kind != "interrupt" or not self.wake_interrupt(asked):
                actor.after_commit(self.restart_body)
        elif purpose in ("sleep", "receive", "interrupt") or position == BODY:
            actor.after_commit(self.restart_body)
        else:
            self.ensure_attempt(position)


def _unstorable(name: str, exc: SerializationError) -> SerializationError:
    return SerializationError(
        f"task {name!r} returned a value that cannot be stored: {exc}",
        path=exc.path,
        type_name=exc.type_name,
    )


def _post_both(actor: ActorCore, call: ExecuteTask, done: AttemptDone) -> None:
    """An inline attempt's start and outcome, in one trip to the loop."""
    actor.post(call)
    actor.post(done)
