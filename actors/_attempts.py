"""Task attempts: starting them, running them, and recording how they ended.

A task call becomes an attempt (an asyncio task of its own, sync code in the
task pool) that reports back through the mailbox. Its outcome is committed
before any waiting code sees it: a result (`TaskCompleted`), a pause
(`TaskSuspended`), or a failure with a retry timer or a final `TaskFailed`.
Retries follow the task's own `RetryPolicy`; attempts lost with their process
(`AttemptLost`) are retried without using up that budget, up to the policy's
`max_lost_attempts`. An
attempt's start is durable before its body runs, so an attempt that ran is in
the log and its number is never reused (for the exceptions see `_start_attempt`).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import traceback
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span

from perdure.actors import _observe
from perdure.actors._errors import (
    NonDeterminismError,
    NotInWorkflowError,
    Suspend,
    TaskTimeoutError,
)
from perdure.actors._messages import AttemptDone, ExecuteTask
from perdure.actors._scope import Scope, current_scope, failure_error
from perdure.actors._state import Step
from perdure.actors._targets import AttemptInfo
from perdure.eventlog import (
    SerializationError,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TaskFailed,
    TaskSuspended,
    TimerSet,
    check_json,
)
from perdure.eventlog._values import restore

if TYPE_CHECKING:
    from perdure.actors._actor import RunActor

_TRACEBACK_LIMIT = 8000
_NEVER_RETRY = (SerializationError, NonDeterminismError, NotInWorkflowError)


def fail_future(fut: asyncio.Future[Any], error: BaseException) -> None:
    """Fail a waiting future without a "never retrieved" warning if nobody awaits it any more."""
    if not fut.done():
        fut.set_exception(error)
        fut.exception()


def _open_gate(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_result(None)


def _format_error(error: BaseException) -> tuple[str, str, str]:
    """Type name, message and traceback of `error`, as text the log can always store.

    A message with a lone surrogate (or a ``__str__`` that raises) must fail the
    attempt like any other error, not the commit that records it.
    """
    try:
        message = str(error)
    except Exception:
        message = f"<{type(error).__name__} whose str() raised>"
    text = "".join(traceback.format_exception(error))
    return (
        _observe.printable(type(error).__name__),
        _observe.printable(message),
        _observe.printable(text[-_TRACEBACK_LIMIT:]),
    )


class AttemptRunner(abc.ABC):
    """The task attempts of one actor incarnation; `Execution` adds the body on top."""

    def __init__(self, actor: RunActor) -> None:
        self.actor = actor
        #: position -> (attempt task, attempt number, the call that started it)
        self.attempts: dict[str, tuple[asyncio.Task[None], int, ExecuteTask]] = {}
        self.calls: dict[str, ExecuteTask] = {}
        self.waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._semaphore: asyncio.Semaphore | None = None

    @abc.abstractmethod
    def _complete(self, value: Any, *, stored: bool = False) -> None:
        """Finish the run with `value` (a function run ends with its task; `stored`: the
        value is already in its stored form)."""

    @abc.abstractmethod
    def _fail_run(self, error: BaseException, message: str | None = None) -> None:
        """Fail the run with `error` (a function run fails with its task)."""

    def on_execute(self, message: ExecuteTask) -> None:
        actor = self.actor
        if message.incarnation != actor.incarnation or actor.state.terminal is not None:
            message.future.cancel()
            return
        position = message.position
        self.calls[position] = message
        step = actor.state.steps.get(position)
        if step is not None and (step.done or step.failed is not None):
            self._deliver(step, [message.future], message.spec.result_type)
            return
        self.waiters.setdefault(position, []).append(message.future)
        self.ensure_attempt(position)

    def _deliver(self, step: Step, futures: list[asyncio.Future[Any]], result_type: Any) -> None:
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
        step = actor.state.steps.get(position)
        if step is None:
            self._start_attempt(call, 0)
            return
        if step.done or step.failed is not None or step.retry_timer is not None:
            return
        if step.failures:
            policy = call.spec.retry
            last = step.last_error
            exhausted = step.failures - step.lost >= policy.max_attempts
            if exhausted or step.lost > policy.max_lost_attempts or (last and not last.retryable):
                self._final_failure(step, call)
                return
            if last is not None and last.next_retry_at is not None:
                due = last.next_retry_at
            else:
                due = step.last_failure_ts + policy.delay(step.failures)
            if due > actor.host.clock.now():
                self._set_retry_timer(position, due, step.failures)
                return
        self._start_attempt(call, step.failures)

    def _set_retry_timer(self, position: str, due: float, failures: int) -> None:
        self.actor.emit(
            TimerSet,
            timer_id=f"retry:{self.actor.state.invocation}:{position}:{failures}",
            due_at=due,
            purpose="retry",
            position=position,
        )

    def _start_attempt(self, call: ExecuteTask, attempt: int) -> None:
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
            current_scope.set(Scope(actor, call.position, None))
            parent = actor.run_span
            span: Span | None
            if parent is not None and not parent.is_recording():
                # The run is not traced (no tracer provider, or sampled out), nor are its
                # attempts; their logs still carry the run's trace id.
                span, trace_id = None, _observe.trace_id_hex(parent)
            else:
                span = actor.host.tracer.start_span(
                    f"perdure.task {spec.name}",
                    context=trace.set_span_in_context(parent) if parent else None,
                    attributes={
                        "perdure.run_id": actor.run_id,
                        "perdure.task": spec.name,
                        "perdure.position": call.position,
                        "perdure.attempt": attempt,
                    },
                )
                trace_id = _observe.trace_id_hex(span)
            structlog.contextvars.bind_contextvars(
                run_id=actor.run_id,
                target=actor.state.target,
                task=spec.name,
                attempt=attempt,
                trace_id=trace_id,
            )
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
                done.outcome, done.error = (
                    "error",
                    SerializationError(
                        f"task {spec.name!r} returned a value that cannot be stored: {exc}",
                        path=exc.path,
                        type_name=exc.type_name,
                    ),
                )
            except Exception as exc:
                done.outcome, done.error = "error", exc
            _observe.end_span(span, done.error)
        actor.post(done)

    def on_attempt_done(self, message: AttemptDone) -> None:
        actor = self.actor
        if message.incarnation != actor.incarnation:
            return
        entry = self.attempts.get(message.position)
        if entry is None or entry[1] != message.attempt:
            return
        del self.attempts[message.position]
        if actor.state.terminal is not None:
            return
        call = entry[2]
        step = actor.state.steps[message.position]
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
        self, step: Step, call: ExecuteTask, attempt: int, error: BaseException
    ) -> None:
        actor = self.actor
        policy = call.spec.retry
        failures = step.failures + 1
        retryable = policy.is_retryable(error) and not isinstance(error, _NEVER_RETRY)
        again = retryable and failures - step.lost < policy.max_attempts
        now = actor.host.clock.now()
        due = now + policy.delay(failures) if again else None
        error_type, text, trace = _format_error(error)
        actor.emit(
            TaskAttemptFailed,
            position=call.position,
            name=call.spec.name,
            attempt=attempt,
            error_type=error_type,
            message=text,
            traceback=trace,
            retryable=retryable,
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
        if due is None:
            self._final_failure(step, call)
        elif due > now:
            self._set_retry_timer(call.position, due, failures)
        else:
            self._start_attempt(call, failures)

    def _final_failure(self, step: Step, call: ExecuteTask) -> None:
        actor = self.actor
        last = step.last_error
        message = last.message if last else ""
        cap = call.spec.retry.max_lost_attempts
        if step.lost > cap:
            message = (
                f"{step.lost} attempts were lost with their process (crash or kill), more "
                f"than the retry policy's max_lost_attempts={cap}: the task may be what "
                f"brings the process down"
            )
        actor.emit(
            TaskFailed,
            position=call.position,
            name=call.spec.name,
            input_digest=call.digest,
            error_type=last.error_type if last else "Error",
            message=message,
            traceback=last.traceback if last else "",
            attempts=step.failures,
        )
        self.calls.pop(call.position, None)
        self._deliver(step, self.waiters.pop(call.position, []), call.spec.result_type)
        if actor.state.kind == "function" and call.position == "0":
            assert step.failed is not None
            self._fail_run(failure_error(actor.run_id, step.failed))
