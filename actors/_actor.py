"""The run actor: one asyncio task per live run, the only writer of that run's events.

Its loop takes a batch of messages from the mailbox, lets each handler emit
events (applied to the state at once, so later handlers in the batch see
them), commits the batch in one append, and only then runs the effects that
expose outcomes to user code. A storage error escapes the loop; the supervisor
then rebuilds the actor from the log, so in-memory state never outlives a
failed write.

Some events are "soft": they may wait up to `attempt_linger` seconds to share a
commit with the next hard one. A `RunStarted` of `run()`/`invoke` is soft, and
so are the attempt starts made while it is (a crash then loses the whole
invocation, which nobody can continue): a fast function call costs one fsync.
So is the first attempt start of a workflow task (one commit per step). Every
other attempt start is committed before its body runs (see `_attempts.py`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from perdure.actors import _decide, _observe
from perdure.actors._errors import (
    ActorCrashedError,
    InvalidResumeError,
    RunCancelledError,
    RunSettledError,
    Suspend,
)
from perdure.actors._execution import Execution
from perdure.actors._mailbox import Mailbox
from perdure.actors._messages import (
    AttemptDone,
    BodyDone,
    Cancel,
    CancelInterrupt,
    CancelReceive,
    Continue,
    ExecuteTask,
    FireTimer,
    Flush,
    InterruptRequest,
    PublishEvent,
    ReceiveRequest,
    Resume,
    SendMessage,
    SleepRequest,
    Start,
    Stop,
    UnparkReceive,
    Wake,
)
from perdure.actors._ports import ActorHost
from perdure.actors._snapshot import load_state, save_state, snapshot_due
from perdure.actors._state import ATTEMPT_LOST, DEADLINE, RunState, apply
from perdure.eventlog import (
    Event,
    EventPublished,
    IdempotencyKeyTakenError,
    MessageReceived,
    Resumed,
    RunCancelled,
    RunContinued,
    RunStarted,
    SequenceConflictError,
    TaskAttemptFailed,
    TimerCancelled,
    TimerSet,
    check_json,
    digest,
    fresh,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

_DRAIN_LIMIT = 512


class RunActor:
    """One incarnation of a run's actor. A crash or eviction ends it; the next one rebuilds."""

    def __init__(self, run_id: str, host: ActorHost, mailbox: Mailbox, incarnation: int) -> None:
        self.run_id = run_id
        self.host = host
        self.mailbox = mailbox
        self.incarnation = incarnation
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        self.state = RunState(run_id=run_id)
        self.alive = True
        self.waits_in_threads = True
        #: Every event with seq < durable_seq is committed.
        self.durable_seq = 0
        self.last_active = self.loop.time()
        self._pending: list[Event] = []
        self._hard = False
        self._after: list[Callable[[], None]] = []
        self._replies: list[asyncio.Future[None]] = []
        #: The linger timer, and the loop time by which soft events must be committed.
        self._flush_handle: asyncio.TimerHandle | None = None
        self._linger_due: float | None = None
        #: Seq of a `RunStarted` emitted soft (see `Start.durable`), until it is durable.
        self.soft_start_seq: int | None = None
        self._stop_when_idle = False
        #: events covered by the run's last snapshot (read or written; see `_snapshot`)
        self._snapshot_seq = 0
        self.run_span: Span | None = None
        self.execution = Execution(self)

    # -- mailbox -----------------------------------------------------------------

    def post(self, message: object) -> None:
        """Queue a message for this run (event-loop thread only)."""
        self.mailbox.put_nowait(message)

    @property
    def inline_tasks(self) -> bool:
        """Whether a sync task its sync code waits on may run in that code's thread: only
        in a workflow whose first attempt starts are soft (see `Execution.run_inline`)."""
        return self.state.kind == "workflow" and self.host.attempt_linger > 0

    def run_inline(self, call: ExecuteTask) -> None:
        """In the calling code's thread: see `Execution.run_inline`."""
        self.execution.run_inline(call)

    @property
    def body_generation(self) -> int:
        """Which execution of the body is current (a body scope of another one is stale)."""
        return self.execution.generation

    def step_waiter(self, position: str) -> asyncio.Future[None]:
        """A future done when the durable sleep at `position` has fired (loop thread only)."""
        return self.execution.sleep_waiter(position)

    def receive_waiter(self, position: str) -> asyncio.Future[Any]:
        """A future done with what the `receive()` at `position` takes (loop thread only)."""
        return self.execution.receive_waiter(position)

    def park_receive(self, position: str) -> asyncio.Future[Any] | None:
        """A future the async body's own `areceive()` at `position` waits on (see
        `Execution.parked`); None where the body must stop there instead."""
        return self.execution.receive_waiter(position, park=True)

    def interrupt_waiter(self, position: str, *, park: bool) -> asyncio.Future[Any] | None:
        """A future done with the outcome of the `ainterrupt()` at `position` (see
        `Execution.interrupt_waiter`)."""
        return self.execution.interrupt_waiter(position, park=park)

    def start_pending(self) -> bool:
        """Whether this invocation's `RunStarted` is soft and not durable yet."""
        return self.soft_start_seq is not None and self.durable_seq <= self.soft_start_seq

    def start_lost(self) -> bool:
        """Whether this run's latest start never reached the log (its actor is crashing)."""
        return self.start_pending()

    def idle(self) -> bool:
        return (
            (
                self.execution.body is None
                or self.execution.backing_off()
                or bool(self.execution.parked)
            )
            and not self.execution.attempts
            and not self._pending
            and self.mailbox.empty()
        )

    async def main(self) -> None:
        """Rebuild from the log, recover, then serve the mailbox until stopped."""
        batch: list[object] = []
        handled = 0
        try:
            await self._rebuild()
            while True:
                message = await self.mailbox.get()
                batch = [message]
                while len(batch) < _DRAIN_LIMIT and not self.mailbox.empty():
                    batch.append(self.mailbox.get_nowait())
                handled = 0
                stop = False
                for item in batch:
                    if isinstance(item, Start):
                        if self._pending:
                            await self.flush()
                        await self._start(item)
                    elif isinstance(item, Stop):
                        if item.force:
                            # What came after the stop is for the next incarnation.
                            self.mailbox.put_back(batch[handled + 1 :])
                            await self._shutdown()
                            return
                        self._stop_when_idle = True
                    else:
                        self._handle(item)
                    handled += 1
                if self._hard:
                    await self.flush()
                now = self.loop.time()
                if self._pending and self._linger_due is None:
                    self._linger_due = now + self.host.attempt_linger
                    if self._flush_handle is None:
                        self._flush_handle = self.loop.call_at(self._linger_due, self._linger_check)
                self.last_active = now
                if (
                    self.state.terminal is None
                    and snapshot_due(self.state, self._snapshot_seq)
                    and self.durable_seq == self.state.next_seq
                    and self.idle()
                ):  # checked here too: a busy run would build a coroutine per turn for nothing
                    await self._snapshot()
                if self._stop_when_idle and self.idle():
                    stop = True
                if stop:
                    return
        except BaseException as exc:
            self._abandon(batch[handled:], exc)
            raise
        finally:
            self._teardown()

    def _abandon(self, unhandled: list[object], exc: BaseException) -> None:
        """The actor is crashing: no caller may be left waiting on a message it took.

        The message being handled gets `ActorCrashedError` (it may have half
        happened); the ones after it go back to the mailbox for the next
        incarnation. When the actor is being cancelled there is no next one.
        """
        if not unhandled:
            return
        crashed = isinstance(exc, Exception)
        error = ActorCrashedError(
            f"run {self.run_id!r}: its actor crashed while handling this request "
            f"({_observe.describe(exc)}); what the run committed "
            "stays and it is rebuilt from its log - check its status and ask again if need be"
            if crashed
            else f"run {self.run_id!r}: its actor stopped before answering",
            run_id=self.run_id,
        )
        error.__cause__ = exc
        for item in unhandled if not crashed else unhandled[:1]:
            reply = getattr(item, "reply", None)
            if isinstance(reply, asyncio.Future) and not reply.done():
                reply.set_exception(error)
        if crashed:
            self.mailbox.put_back(unhandled[1:])

    def _linger_check(self) -> None:
        """The linger timer: flush soft events whose linger ran out, else wait for the next.

        One timer serves many commits: a flush clears `_linger_due` instead of
        cancelling the timer, which then only re-arms for a later linger.
        """
        self._flush_handle = None
        due = self._linger_due
        if due is None or not self.alive:
            return
        if self.loop.time() >= due:
            self.post(Flush())
        else:
            self._flush_handle = self.loop.call_at(due, self._linger_check)

    def _teardown(self) -> None:
        self.alive = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.execution.cancel_work()
        for reply in self._replies:
            if not reply.done():
                reply.set_exception(
                    RuntimeError(f"run {self.run_id!r}: its actor stopped before answering")
                )
        _observe.end_span(self.run_span)
        self.run_span = None

    async def _snapshot(self) -> None:
        """Keep a snapshot of the folded state beside the log, once the run is idle with
        everything durable (see `perdure.actors._snapshot`); a failure only costs speed."""
        if not self.idle() or self.durable_seq != self.state.next_seq:
            return
        self._snapshot_seq = self.state.next_seq
        try:
            await save_state(self.host.log, self.state)
        except Exception as exc:
            _observe.logger.debug("snapshot not written", run_id=self.run_id, error=repr(exc))

    async def _rebuild(self) -> None:
        self.state, self._snapshot_seq = await load_state(self.host.log, self.run_id)
        self.durable_seq = self.state.next_seq
        if not self.state.started:
            return
        self.execution.recover()
        if self._pending:
            await self.flush()
        self.open_run_span(resumed=True)
        # Waiters registered with an earlier incarnation learn of a run that settled in a
        # batch whose commit raised after landing (e.g. a failed fsync).
        self.host.committed(self, [])
        if self.state.terminal is None and self.state.status == "running":
            self.execution.start_body()

    # -- emitting and committing ---------------------------------------------------

    def emit(self, cls: type[Event], *, soft: bool = False, **fields: Any) -> Event:
        """Create the run's next event, apply it to the state, queue it for the next commit."""
        event = cls(run_id=self.run_id, seq=self.state.next_seq, ts=self.host.clock.now(), **fields)
        apply(self.state, event)
        self._pending.append(event)
        if not soft:
            self._hard = True
        return event

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run `effect` once everything emitted so far is durable (now, if it already is)."""
        if self._hard:
            self._after.append(effect)
        else:
            effect()

    async def flush(self) -> None:
        """Commit pending events in one append, then run the effects that waited on them."""
        self._linger_due = None
        if not self._pending:
            return
        events, self._pending, self._hard = self._pending, [], False
        effects, self._after = self._after, []
        replies, self._replies = self._replies, []
        landed = False

        def durable() -> None:
            # Run by the log the moment the batch is durable (`EventLog.append`'s
            # `on_durable`): the code these effects wake runs before this actor resumes,
            # and what it posts is waiting in the mailbox by then. A log that calls it
            # only before `append` returns is fine too: `landed` covers both.
            nonlocal landed
            landed = True
            self.durable_seq = events[-1].seq + 1
            self.host.committed(self, events)
            for effect in effects:
                effect()
            for reply in replies:
                if not reply.done():
                    reply.set_result(None)

        log = self.host.log
        try:
            await log.append(
                self.run_id, events[0].seq, events, status=self.state.status, on_durable=durable
            )
        except BaseException as exc:
            if not landed:
                for reply in replies:
                    if not reply.done():
                        reply.set_exception(exc)
            raise
        if not landed:
            durable()

    def reply_after_commit(self, reply: asyncio.Future[None]) -> None:
        if self._hard:
            self._replies.append(reply)
        elif not reply.done():
            reply.set_result(None)

    # -- message handlers ------------------------------------------------------------

    def _handle(self, message: object) -> None:
        if isinstance(message, ExecuteTask):
            self.execution.on_execute(message)
        elif isinstance(message, AttemptDone):
            self.execution.on_attempt_done(message)
        elif isinstance(message, BodyDone):
            self.execution.on_body_done(message)
        elif isinstance(message, InterruptRequest):
            self.execution.on_interrupt(message)
        elif isinstance(message, SleepRequest):
            self.execution.on_sleep(message)
        elif isinstance(message, ReceiveRequest):
            self.execution.on_receive(message)
        elif isinstance(message, CancelReceive):
            self.execution.on_cancel_receive(message)
        elif isinstance(message, CancelInterrupt):
            self.execution.on_cancel_interrupt(message)
        elif isinstance(message, UnparkReceive):
            self.execution.on_unpark(message)
        elif isinstance(message, SendMessage):
            self._send(message)
        elif isinstance(message, PublishEvent):
            if message.incarnation == self.incarnation and message.position not in self.state.steps:
                self.emit(
                    EventPublished, position=message.position, key=message.key, value=message.value
                )
        elif isinstance(message, FireTimer):
            self.execution.on_timer(message.timer_id)
        elif isinstance(message, Resume):
            self._resume(message)
        elif isinstance(message, Continue):
            self._continue(message)
        elif isinstance(message, Cancel):
            self._cancel(message)
        elif isinstance(message, Flush):
            # The linger ran out: commit the soft events now, with or without company.
            if self._pending:
                self._hard = True
        elif isinstance(message, Wake):
            pass  # rebuilding (done on start-up of the incarnation) was the point
        else:
            raise TypeError(f"run {self.run_id!r}: unknown message {message!r}")

    async def _start(self, message: Start) -> None:
        state = self.state
        spec = message.spec
        refusal = _decide.start_refusal(state, spec, message.new_invocation)
        if refusal is not None:
            message.reply.set_exception(refusal)
            return
        invocation = state.invocation + 1
        if invocation == 0:
            self.run_span = _observe.start_run_span(
                self.host.tracer,
                f"perdure.run {spec.name}",
                message.trace_context,
                {"perdure.run_id": self.run_id, "perdure.target": spec.name},
            )
            trace_context = _observe.span_carrier(self.run_span)
        else:
            trace_context = {}
        started = self.emit(
            RunStarted,
            soft=not message.durable,
            target=spec.name,
            kind=spec.kind,
            input=message.input,
            input_digest=message.input_digest,
            idempotency_key=message.idempotency_key,
            trace_context=trace_context,
            invocation=invocation,
            config=message.config,
        )
        deadline = message.deadline
        if spec.timeout_total is not None:
            by_timeout = started.ts + spec.timeout_total
            deadline = by_timeout if deadline is None else min(deadline, by_timeout)
        if deadline is not None:
            self.emit(
                TimerSet,
                soft=not message.durable,
                timer_id=f"deadline:{invocation}",
                due_at=deadline,
                purpose="deadline",
                position=DEADLINE,
            )
        if not message.durable:
            self.soft_start_seq = started.seq
        elif spec.kind == "function" and spec.task is not None:
            # The function's attempt 0 starts in the same commit as the run (its start
            # must be durable before the body runs, and this commit is being made).
            # `message.input` is the stored form; the body gets it as plain JSON, as a
            # rebuilt run's body does (`Execution.start_body`), and the digest is of that.
            kwargs = fresh(message.input) if isinstance(message.input, dict) else {}
            self.execution.on_execute(
                ExecuteTask(
                    incarnation=self.incarnation,
                    position="0",
                    spec=spec.task,
                    args=[],
                    kwargs=kwargs,
                    digest=digest([[], kwargs]),
                    future=self.loop.create_future(),
                )
            )
        try:
            if message.durable:
                await self.flush()
        except (IdempotencyKeyTakenError, SequenceConflictError) as exc:
            _observe.end_span(self.run_span)
            self.run_span = None
            self.execution.forget_calls()
            await self._rebuild_state_only()
            message.reply.set_exception(exc)
            return
        except BaseException as exc:  # a storage error: tell the caller, then crash and rebuild
            if not message.reply.done():
                message.reply.set_exception(exc)
            raise
        if self.run_span is None:
            self.open_run_span(resumed=False)
        if _observe.logger.isEnabledFor(_observe.INFO):
            _observe.logger.info(
                "run started",
                run_id=self.run_id,
                target=spec.name,
                invocation=invocation,
                trace_id=_observe.trace_id_of(self.run_span),
            )
        message.reply.set_result(None)
        self.execution.start_body()

    async def _rebuild_state_only(self) -> None:
        self.state, self._snapshot_seq = await load_state(self.host.log, self.run_id)
        self.durable_seq = self.state.next_seq

    def _resume(self, message: Resume) -> None:
        state = self.state
        token = message.token
        if token and any(i.answer_token == token for i in state.interrupts.values()):
            # Applied before, by a process that died before it removed the message from
            # the store's inbox: answering again would give its value to a later question.
            message.reply.set_result(None)
            return
        if self.execution.interrupt_waiters:
            self.execution.withdraw_cancelled_interrupts()
        answers = _decide.resume_answers(state, message.value)
        if isinstance(answers, InvalidResumeError):
            message.reply.set_exception(answers)
            return
        try:
            answers = check_json(answers, "resume")
        except Exception as exc:
            message.reply.set_exception(exc)
            return
        restart = False
        for interrupt_id, answer in answers.items():
            self.emit(Resumed, interrupt_id=interrupt_id, value=answer, token=token)
            step = state.interrupts[interrupt_id]
            if step.timer_id in state.timers:
                self.emit(TimerCancelled, timer_id=step.timer_id)
            # Code waiting in `ainterrupt()` gets the answer; else the body stopped there.
            if not self.execution.wake_interrupt(step):
                restart = True
        self.reply_after_commit(message.reply)
        if restart:
            self.after_commit(self.execution.restart_body)

    def _send(self, message: SendMessage) -> None:
        state = self.state
        if not state.started:
            message.reply.set_exception(
                RunSettledError(
                    f"run {self.run_id!r} has not started; nothing can receive a message",
                    run_id=self.run_id,
                    status=state.status,
                )
            )
            return
        key = message.idempotency_key
        if key is not None and key in state.message_keys:
            message.reply.set_result(None)  # sent before: a no-op
            return
        if state.terminal is not None:
            message.reply.set_exception(
                RunSettledError(
                    f"run {self.run_id!r} has settled (status: {state.terminal}); "
                    "no receive() will ever take this message",
                    run_id=self.run_id,
                    status=state.terminal,
                )
            )
            return
        self.emit(MessageReceived, topic=message.topic, value=message.value, idempotency_key=key)
        self.reply_after_commit(message.reply)
        self.execution.deliver_waiting(message.topic)

    def _continue(self, message: Continue) -> None:
        """Reopen a failed, parked or cancelled run: completed steps stay, the rest run again.

        A cancelled run is reopened as DBOS resumes a cancelled workflow: attempts the
        cancel cut short are recorded as ended (the next one gets a higher number), and
        durable sleeps whose timers the cancel (or parking) removed are set again.
        """
        state = self.state
        if message.token and message.token in state.continue_tokens:
            # Applied before, by a process that died before it removed the message from
            # the store's inbox: continuing again would reopen a run that failed since.
            message.reply.set_result(None)
            return
        if _decide.can_continue(state):
            was = state.terminal
            self.emit(RunContinued, reason=f"continued after it was {was}", token=message.token)
            for step in list(state.steps.values()):
                if step.kind == "task" and step.open_attempt is not None:
                    self.crash_failure(
                        step.position,
                        step.name,
                        step.open_attempt,
                        message=f"the run was {was} while this attempt ran; the run was "
                        "continued, and the next attempt does not use up the retry budget",
                    )
                if step.kind == "sleep" and not step.fired and step.timer_id not in state.timers:
                    self.emit(
                        TimerSet,
                        timer_id=step.timer_id,
                        due_at=step.due_at,
                        purpose="sleep",
                        position=step.position,
                    )
            self.reply_after_commit(message.reply)
            self.after_commit(self.execution.restart_body)
        elif message.strict:
            message.reply.set_exception(_decide.continue_refusal(state))
        else:
            message.reply.set_result(None)

    def _cancel(self, message: Cancel) -> None:
        if self.state.terminal is not None or not self.state.started:
            message.reply.set_result(None)
            return
        self.cancel_run(message.reason)
        self.reply_after_commit(message.reply)

    def cancel_run(self, reason: str) -> None:
        """Record the run as cancelled (`reason`), stop its body and tasks, fail their waiters."""
        for timer_id in list(self.state.timers):
            self.emit(TimerCancelled, timer_id=timer_id)
        self.emit(RunCancelled, reason=reason)
        error = RunCancelledError(
            f"run {self.run_id!r} was cancelled" + (f": {reason}" if reason else ""),
            run_id=self.run_id,
            reason=reason,
        )
        self.execution.fail_waiters(error)
        self.execution.cancel_work()

    async def _shutdown(self) -> None:
        """Graceful stop: attempts still running are recorded as suspended, not failed."""
        self.execution.suspend_running_attempts()
        await self.flush()

    def open_run_span(self, *, resumed: bool) -> None:
        if self.run_span is None and self.state.started:
            name = f"perdure.run {self.state.target}" + (" (resumed)" if resumed else "")
            self.run_span = _observe.start_run_span(
                self.host.tracer,
                name,
                self.state.trace_context,
                {"perdure.run_id": self.run_id, "perdure.target": self.state.target},
            )

    def crash_failure(
        self, position: str, name: str, attempt: int, *, message: str | None = None
    ) -> None:
        """Record an attempt the log shows started but never ended (the process died)."""
        self.emit(
            TaskAttemptFailed,
            position=position,
            name=name,
            attempt=attempt,
            error_type=ATTEMPT_LOST,
            message=message
            or "the process stopped while this attempt ran (crash or kill); the next "
            "attempt follows its backoff, without using up the retry budget",
            retryable=True,
            next_retry_at=None,
        )


__all__ = ["RunActor", "Suspend"]
