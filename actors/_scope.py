"""Execution scopes: where user code asks for steps (tasks, interrupts, sleeps) of its run.

A scope is the workflow body or one task attempt. Each has its own step
counter, so positions follow the code's call order ("2", "2.0", ...) however
parallel work finishes. Steps already in the log are answered here, at once,
from the actor's state (replay); new ones become messages to the actor. The
functions may be called from the event loop or from a worker thread (sync code).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import hashlib
import math
import threading
import time
from collections.abc import Generator
from typing import Any, Generic, TypeVar

import attrs

from perdure.actors._errors import (
    InterruptTimeoutError,
    NonDeterminismError,
    NotInWorkflowError,
    Suspend,
)
from perdure.actors._failure import failure_error
from perdure.actors._messages import (
    ExecuteTask,
    InterruptRequest,
    PublishEvent,
    ReceiveRequest,
    SleepRequest,
    UnparkReceive,
)
from perdure.actors._order import Holdback
from perdure.actors._ports import RunView
from perdure.actors._replay import match_step
from perdure.actors._state import InterruptStep, TaskStep
from perdure.actors._targets import BodyInfo, TaskSpec
from perdure.actors._watchdog import watchdog
from perdure.eventlog import check_json, digest, fresh, restore

T = TypeVar("T")


class Scope:
    """The body of a run or one task attempt, with its own step counter.

    `root` is the asyncio task that runs the scope's code itself (None for sync
    code in a thread); asyncio tasks the code starts (``asyncio.wait``,
    ``gather``, ``create_task``) are its children. `generation` ties a body
    scope to one execution of the body: children left running when it ends
    stop at their next step.

    In an async body, recorded outcomes are handed out in the order the code
    saw them live (`holdback`, see `perdure.actors._order`), so a race between
    a task and a sleep has the same winner on every replay.
    """

    __slots__ = (
        "_holdback",
        "actor",
        "body",
        "counter",
        "deferred",
        "generation",
        "incarnation",
        "prefix",
        "root",
    )

    def __init__(
        self, actor: RunView, prefix: str, body: BodyInfo | None, generation: int = 0
    ) -> None:
        self.actor = actor
        self.incarnation = actor.incarnation
        self.prefix = prefix
        self.counter = 0
        self.body = body
        self.generation = generation
        self.root: asyncio.Task[Any] | None = None
        self._holdback: Holdback | None = None
        #: A sync task call of this (thread-side) scope not handed to the actor yet: if
        #: the code's next move is to wait on it, its thread runs it (`TaskFuture.result`);
        #: any other move first sends it the usual way (`dispatch_deferred`), and so does
        #: the watchdog if the code moves on for longer than `DEFER` (it then runs
        #: in the task pool while the code goes on, as any call).
        self.deferred: TaskFuture[Any] | None = None

    def next_position(self) -> str:
        if self.deferred is not None:
            dispatch_deferred(self)
        n = self.counter
        self.counter = n + 1
        holdback = self._holdback
        if holdback is not None and holdback.held:
            holdback.release_due()
        return f"{self.prefix}.{n}" if self.prefix else str(n)

    def check_alive(self) -> None:
        actor = self.actor
        if (
            not actor.alive
            or actor.incarnation != self.incarnation
            or (self.generation and actor.body_generation != self.generation)
        ):
            raise quiet(Suspend("actor stopped"))

    def seen(self) -> int:
        """What the code has seen of the log now (recorded as a new step's `seen_seq`)."""
        return self.actor.durable_seq

    def ordered(self) -> bool:
        """Whether recorded outcomes are handed out in their live order here (async bodies)."""
        return (
            self.root is not None
            and not self.prefix
            and threading.get_ident() == self.actor.thread_id
        )

    @property
    def holdback(self) -> Holdback:
        """The recorded outcomes this scope holds back (see `perdure.actors._order`)."""
        if self._holdback is None:
            self._holdback = Holdback(self.actor.state, self.actor.loop, lambda: self.counter)
        return self._holdback

    def holding(self) -> bool:
        return self._holdback is not None and bool(self._holdback.held)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def quiet(signal: BaseException) -> BaseException:
    """Return `signal` (a `Suspend` about to be raised) after marking the current asyncio task's
    exception as retrieved: a child task of a body (``asyncio.wait``, ``create_task``) that ends
    with it must not reach asyncio's "exception was never retrieved" log."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not on an event loop thread
        return signal
    if task is not None:
        task.add_done_callback(_retrieve)
    return signal


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "perdure_scope", default=None
)


def require_scope(what: str) -> Scope:
    scope = current_scope.get()
    if scope is None:
        raise NotInWorkflowError(
            f"{what} can only be used while a perdure workflow or function runs "
            "(inside an @entrypoint, a @task or a @function body)"
        )
    scope.check_alive()
    return scope


async def _wait(fut: asyncio.Future[Any]) -> Any:
    return await fut


class TaskFuture(Generic[T]):
    """The result of a task call: ``await`` it in async code, ``.result()`` in sync code."""

    __slots__ = (
        "_call",
        "_error",
        "_fut",
        "_held",
        "_loop",
        "_scope",
        "_value",
        "_waiter",
        "name",
    )

    def __init__(
        self,
        name: str,
        loop: asyncio.AbstractEventLoop,
        *,
        fut: asyncio.Future[Any] | None = None,
        value: Any = None,
        error: BaseException | None = None,
        waiter: _ThreadStepFuture | None = None,
    ) -> None:
        self.name = name
        self._loop = loop
        self._fut = fut
        self._value = value
        self._error = error
        #: `fut`'s outcome copied for a thread (a sync body): `.result()` waits on it
        #: without asking the loop for anything (see `_ThreadStepFuture`).
        self._waiter = waiter
        #: a recorded outcome held back (see `Scope.hold`): its scope and settled seq
        self._held: tuple[Scope, int] | None = None
        #: A deferred call (see `Scope.deferred`): the message not sent yet, and its scope.
        self._call: ExecuteTask | None = None
        self._scope: Scope | None = None

    def __repr__(self) -> str:
        done = self._fut is None or self._fut.done()
        return f"<TaskFuture {self.name} done={done}>"

    def done(self) -> bool:
        if self._call is not None:
            _dispatch(self)  # asked, not waited on: it runs the usual way meanwhile
        return self._fut is None or self._fut.done()

    def __await__(self) -> Generator[Any, None, T]:
        if self._call is not None:
            _dispatch(self)
        if self._fut is None:
            if self._error is not None:
                raise self._error
            return self._value  # type: ignore[no-any-return]
        held = self._held
        if held is not None and not self._fut.done() and not _in_child(held[0]):
            # The scope's own code waits on it: nothing can overtake it (and code that
            # changed since the log must not wait for steps it no longer asks for).
            held[0].holdback.release_until(held[1])
        try:
            return (yield from self._fut.__await__())  # type: ignore[no-any-return]
        except Suspend as signal:
            stall = signal.detail
            if signal.reason == "replay end" and callable(stall) and _child_of_a_scope():
                # Replayed, a task the log does not settle has not finished yet: in a race,
                # another side may still win (the replay ends if none can).
                return (yield from stall().__await__())  # type: ignore[no-any-return]
            raise quiet(signal) from None

    @staticmethod
    def _wait_in_thread(
        waiter: _ThreadStepFuture | concurrent.futures.Future[Any], timeout: float | None
    ) -> T:
        """Wait for the thread-side copy; give up (`Suspend`) once the body's actor stopped.

        The copy is settled by the loop when the step is, but an actor that stops
        before it even takes the call (its mailbox is dropped) never settles it:
        without the check the body's thread, and the process's exit, would hang.
        """
        scope = current_scope.get()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = (
                _ALIVE_CHECK if deadline is None else min(_ALIVE_CHECK, deadline - time.monotonic())
            )
            try:
                if isinstance(waiter, _ThreadStepFuture):
                    return waiter.wait(max(wait, 0.0))  # type: ignore[no-any-return]
                return waiter.result(max(wait, 0.0))  # type: ignore[no-any-return]
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                if scope is not None:
                    scope.check_alive()

    def result(self, timeout: float | None = None) -> T:
        """Block until the task's result is durable, then return it (sync workflow code)."""
        if self._fut is None:
            if self._error is not None:
                raise self._error
            return self._value  # type: ignore[no-any-return]
        here = current_scope.get()
        if here is not None and here.deferred is not None and here.deferred is not self:
            dispatch_deferred(here)  # it must not wait until this one is done (a fan-out)
        call = self._call
        if call is not None:
            scope = self._scope
            if timeout is None and scope is not None and scope.deferred is self and here is scope:
                scope.deferred = None
                self._call = None
                if watchdog.claim(self):  # else the watchdog sent it: wait as usual
                    # The code waits on its last call right away: run it in this thread
                    # (no trip to a task thread); the actor records it as usual.
                    scope.check_alive()
                    scope.actor.run_inline(call)
            else:
                _dispatch(self)
        if _on_loop_thread(self._loop):
            if self._fut.done():
                return self._fut.result()  # type: ignore[no-any-return]
            raise RuntimeError(
                f"task {self.name!r}: .result() would block the event loop; "
                "in async workflow code use `await` on the task's future"
            )
        if self._waiter is not None:
            return self._wait_in_thread(self._waiter, timeout)
        return asyncio.run_coroutine_threadsafe(_wait(self._fut), self._loop).result(timeout)  # type: ignore[no-any-return]


#: How often (seconds) a sync body blocked in `.result()` checks that its actor still
#: runs: an actor that stops (closed runtime, lost lease) may never settle the step.
_ALIVE_CHECK = 0.25


class _ThreadStepFuture(asyncio.Future[Any]):
    """A step's future that sync code (a body or task in a pool thread) waits on.

    The waiting thread blocks on a plain lock the loop releases the moment the
    outcome is set: in the loop iteration that settles the step (a done callback
    would run an iteration later: one more pass through the selector per step),
    and without a `concurrent.futures.Future` (a condition and its locks) per step.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._ready = threading.Lock()
        self._ready.acquire()

    def set_result(self, result: Any) -> None:
        super().set_result(result)
        self._ready.release()

    def set_exception(self, exception: type | BaseException) -> None:
        super().set_exception(exception)
        super().exception()  # the waiting thread gets it: never "exception was never retrieved"
        self._ready.release()

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self._ready.release()
        return True

    def wait(self, timeout: float) -> Any:
        """In the waiting thread: the outcome once set (raised if an error), else
        `concurrent.futures.TimeoutError` after `timeout` seconds."""
        if not self._ready.acquire(timeout=timeout):
            raise concurrent.futures.TimeoutError
        self._ready.release()  # settled for good: any later wait passes at once
        if self.cancelled():
            raise concurrent.futures.CancelledError
        error = self.exception()
        if error is not None:
            raise error
        return self.result()


#: How long sync code may hold a task call back before the watchdog sends it (seconds).
DEFER = 0.005


def _dispatch(future: TaskFuture[Any]) -> None:
    """Send a deferred call to the actor the usual way (its attempt runs in the task pool),
    unless the watchdog did already."""
    call, future._call = future._call, None
    scope = future._scope
    if call is not None and scope is not None and watchdog.claim(future):
        _thread_safe_post(scope, call)


def dispatch_deferred(scope: Scope) -> None:
    """Send the scope's deferred call, if any (the code moved on, or its scope ended).
    Called by the scope's own thread, or once that thread is done with the scope."""
    future, scope.deferred = scope.deferred, None
    if future is not None:
        _dispatch(future)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _thread_safe_post(scope: Scope, message: object) -> None:
    actor = scope.actor
    if threading.get_ident() == actor.thread_id:
        actor.post(message)
    else:
        actor.loop.call_soon_threadsafe(actor.post, message)


def call_task(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskFuture[Any]:
    """Ask for the next step to be `spec(*args, **kwargs)`; replayed if already recorded."""
    scope = require_scope(f"task {spec.name!r}")
    actor = scope.actor
    position = scope.next_position()
    arg_list = list(args)

    def where() -> str:
        return f"task {spec.name!r} (run {actor.run_id!r}, position {position})"

    stored_args = check_json(arg_list, "args", where=where)
    stored_kwargs = check_json(kwargs, "kwargs", where=where) if kwargs else kwargs
    stored = [stored_args, stored_kwargs]
    payload_digest = digest(stored)
    state = actor.state
    step = state.steps.get(position)
    if not (
        type(step) is TaskStep and step.name == spec.name and step.input_digest == payload_digest
    ):  # the replayed call that matches skips the matcher; anything else goes through it
        step = match_step(state, position, "task", spec.name, payload_digest)
    if (
        step is not None
        and step.settled_seq < actor.durable_seq
        and (step.done or step.failed is not None)
    ):
        if not scope.ordered() or scope.holdback.due(step.settled_seq):
            if step.done:
                return TaskFuture(
                    spec.name, actor.loop, value=restore(step.result, spec.result_type)
                )
            assert step.failed is not None
            return TaskFuture(spec.name, actor.loop, error=failure_error(actor.run_id, step.failed))
        held: asyncio.Future[Any] = actor.loop.create_future()
        scope.holdback.hold(step.settled_seq, lambda: _settle(held, step, actor.run_id))
        future: TaskFuture[Any] = TaskFuture(spec.name, actor.loop, fut=held)
        future._held = (scope, step.settled_seq)
        return future
    in_thread = threading.get_ident() != actor.thread_id
    fut: asyncio.Future[Any]
    waiter: _ThreadStepFuture | None = None
    if in_thread:
        fut = waiter = _ThreadStepFuture(actor.loop)
    else:
        fut = asyncio.Future(loop=actor.loop)
    message = ExecuteTask(
        incarnation=scope.incarnation,
        position=position,
        spec=spec,
        args=arg_list,
        kwargs=kwargs,
        digest=payload_digest,
        future=fut,
        stored=None if stored_args is arg_list and stored_kwargs is kwargs else stored,
        seen_seq=scope.seen(),
    )
    future = TaskFuture(spec.name, actor.loop, fut=fut, waiter=waiter)
    if (
        in_thread
        and step is None
        and spec.inline is not None
        and spec.timeout is None
        and actor.inline_tasks
    ):
        # Sync code calling a sync task: hold the call back until the code's next move
        # (most often `.result()`, which then runs it in this thread; see `Scope.deferred`).
        future._call, future._scope = message, scope
        scope.deferred = future
        watchdog.arm(future, DEFER, functools.partial(_thread_safe_post, scope, message))
    else:
        _thread_safe_post(scope, message)
    return future


def _settle(fut: asyncio.Future[Any], step: TaskStep, run_id: str) -> None:
    if fut.done():
        return
    if step.done:
        fut.set_result(fresh(step.result))
    elif step.failed is not None:
        fut.set_exception(failure_error(run_id, step.failed))
        fut.exception()  # whoever awaits it gets it; nobody awaiting must not log it


def interrupt_id(run_id: str, invocation: int, position: str) -> str:
    """A stable id for the interrupt at `position` of an invocation."""
    raw = f"{run_id}\x00{invocation}\x00{position}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def interrupt(value: Any, *, timeout: float | None = None) -> Any:
    """Pause the run until a person answers `value`; return their answer once given.

    With `timeout` (seconds), a durable timer is set with the interrupt: if it fires
    before an answer, `InterruptTimeoutError` is raised here instead (and on replay).
    """
    return ask_interrupt(value, timeout)


def ask_interrupt(value: Any, timeout: float | None, *, wait: bool = False) -> Any:
    """The answer to the interrupt asking `value` at the scope's next position.

    Without `wait` (``interrupt()``), until it is answered (or times out) the code
    stops here (`Suspend`) and the body is re-executed once it is. With `wait`
    (``ainterrupt``), code on the event loop gets a future to await instead: in a
    task the body started it is one side of a race (``asyncio.wait``/``wait_for``),
    with the winner it had live on replay; the body's own code is parked on it (the
    run may be evicted meanwhile). A recorded answer is returned at once (or held
    back until due, see `Scope.holdback`); an `ainterrupt()` cancelled live (it lost a
    race) waits for ever, as the code that cancelled it expects.
    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout)
    ):
        raise TypeError(
            f"interrupt(): timeout must be a number of seconds or None, got {timeout!r}"
        )
    scope = require_scope("interrupt()")
    actor = scope.actor
    position = scope.next_position()
    value = check_json(
        value, "value", where=f"interrupt() in run {actor.run_id!r} at position {position}"
    )
    value_digest = digest(value)
    step = match_step(actor.state, position, "interrupt", digest=value_digest, value=value)
    on_loop = wait and scope.root is not None and _on_loop_thread(actor.loop)
    if step is not None:
        if step.settled_seq < actor.durable_seq and (step.answered or step.fired):
            child = on_loop and _in_child(scope)
            if not (child and scope.ordered()) or scope.holdback.due(step.settled_seq):
                if step.answered:
                    return fresh(step.answer)
                raise _interrupt_timed_out(actor.run_id, step)
            held: asyncio.Future[Any] = actor.loop.create_future()
            run_id = actor.run_id
            scope.holdback.hold(step.settled_seq, lambda: settle_interrupt([held], run_id, step))
            return held
        if not on_loop:
            raise quiet(Suspend("interrupt", step.interrupt_id))
        if step.cancelled:
            return actor.loop.create_future()
        iid = step.interrupt_id
    else:
        iid = interrupt_id(actor.run_id, actor.state.invocation, position)
    waiter = actor.interrupt_waiter(position, park=not _in_child(scope)) if on_loop else None
    _thread_safe_post(
        scope,
        InterruptRequest(
            incarnation=scope.incarnation,
            position=position,
            interrupt_id=iid,
            value=value,
            digest=value_digest,
            seen_seq=scope.seen(),
            timeout=None if timeout is None else max(0.0, float(timeout)),
        ),
    )
    if waiter is not None:
        return waiter
    raise quiet(Suspend("interrupt", iid))


def settle_interrupt(futures: list[asyncio.Future[Any]], run_id: str, step: InterruptStep) -> None:
    """Hand the outcome of a settled interrupt (its answer, or its timeout) to `ainterrupt()`."""
    for fut in futures:
        if fut.done():
            continue
        if step.answered:
            fut.set_result(fresh(step.answer))
        else:
            fut.set_exception(_interrupt_timed_out(run_id, step))
            fut.exception()  # whoever awaits it gets it; nobody awaiting must not log it


def _interrupt_timed_out(run_id: str, step: InterruptStep) -> InterruptTimeoutError:
    return InterruptTimeoutError(
        f"run {run_id!r}: nobody answered the interrupt at position {step.position} "
        f"(id {step.interrupt_id}, value {step.question!r}) within {step.timeout:g} s",
        run_id=run_id,
        position=step.position,
        interrupt_id=step.interrupt_id,
        timeout=step.timeout,
    )


def durable_sleep(seconds: float, *, wait: bool = False) -> asyncio.Future[None] | None:
    """Wait `seconds` durably: the run is unloaded and resumed by a stored timer.

    Returns None once slept (at once on replay). Otherwise the scope's own
    code raises `Suspend` (the body stops here and is re-executed when the
    timer fires); with `wait` (``asleep``), code in a child asyncio task of the
    body (one side of an ``asyncio.wait`` race) gets a future to await instead,
    done when the timer has fired, so the other side can win meanwhile.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds):
        raise TypeError(f"sleep() needs a number of seconds, got {seconds!r}")
    scope = require_scope("sleep()")
    actor = scope.actor
    position = scope.next_position()
    step = match_step(actor.state, position, "sleep")
    child = wait and scope.root is not None and _in_child(scope)
    if step is not None:
        if step.fired:
            if not (child and scope.ordered()) or scope.holdback.due(step.settled_seq):
                return None
            held: asyncio.Future[None] = actor.loop.create_future()
            scope.holdback.hold(step.settled_seq, lambda: wake([held]))
            return held
        if child:
            return actor.step_waiter(position)
        raise quiet(Suspend("sleep", step.timer_id))
    if seconds <= 0:
        return None
    _thread_safe_post(
        scope,
        SleepRequest(
            incarnation=scope.incarnation,
            position=position,
            seconds=float(seconds),
            seen_seq=scope.seen(),
        ),
    )
    if child:
        return actor.step_waiter(position)
    raise quiet(Suspend("sleep"))


def receive_message(topic: str, timeout: float | None, *, wait: bool = False) -> Any:
    """The next undelivered message on `topic` (None when `timeout` seconds pass first).

    Recorded at the body's position: on replay the same message comes back. Until
    a message (or the timeout) is recorded, the body stops here (`Suspend`) and
    is re-executed once it is. With `wait` (``areceive``), code in a child asyncio
    task of the body (one side of an ``asyncio.wait`` race) gets a future to await
    instead (see `durable_sleep`); the value is then wrapped as `Received`.
    """
    if not isinstance(topic, str) or not topic:
        raise TypeError(f"receive(): topic must be a non-empty string, got {topic!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout)
    ):
        raise TypeError(f"receive(): timeout must be a number of seconds or None, got {timeout!r}")
    scope = require_scope("receive()")
    actor = scope.actor
    position = scope.next_position()
    step = match_step(actor.state, position, "receive")
    child = wait and scope.root is not None and _in_child(scope)
    # The async body's own code waits on a future instead of stopping (`Suspend`) and
    # being re-executed from its start for each message: a long receive loop replays
    # nothing. The run stays evictable (see `Execution.parked`). A sync body's thread
    # waits likewise, for a while (`THREAD_PARK`), then gives its pool thread back.
    root = wait and not child and scope.root is not None and _on_loop_thread(actor.loop)
    in_thread = (
        not wait
        and scope.root is not None
        and not scope.prefix
        and actor.waits_in_threads
        and threading.get_ident() != actor.thread_id
    )
    if step is not None:
        if step.name and step.name != topic:
            raise NonDeterminismError(
                f"run {actor.run_id!r}, position {position}: the code asked for receive() on "
                f"topic {topic!r}, but the log recorded receive() on topic {step.name!r} there",
                run_id=actor.run_id,
                position=position,
                recorded=step.describe(),
                requested=f"receive() on topic {topic!r}",
            )
        if step.done and step.settled_seq < actor.durable_seq:
            if not (child and scope.ordered()) or scope.holdback.due(step.settled_seq):
                return Received(fresh(step.result)) if child else fresh(step.result)
            held: asyncio.Future[Any] = actor.loop.create_future()
            result = fresh(step.result)
            scope.holdback.hold(step.settled_seq, lambda: settle_all([held], result))
            return held
        if child:
            if step.cancelled:
                # Cancelled live (it lost a race): it waits for ever, as the code that
                # cancelled it expects, and takes no message.
                return actor.loop.create_future()
            waiter = actor.receive_waiter(position)
            if position in actor.state.receiving:
                return waiter  # the actor hands it the message (or the timeout) when recorded
        elif step.done and not root and not in_thread:
            raise quiet(Suspend("receive"))
    elif child:
        waiter = actor.receive_waiter(position)
    parked = actor.park_receive(position) if root else None
    thread_waiter: concurrent.futures.Future[Any] | None = (
        concurrent.futures.Future() if in_thread else None
    )
    _thread_safe_post(
        scope,
        ReceiveRequest(
            incarnation=scope.incarnation,
            position=position,
            topic=topic,
            timeout=None if timeout is None else float(timeout),
            seen_seq=scope.seen(),
            thread_waiter=thread_waiter,
        ),
    )
    if child:
        return waiter
    if parked is not None:
        return parked
    if thread_waiter is not None:
        return _receive_in_thread(scope, position, thread_waiter)
    raise quiet(Suspend("receive"))


#: Seconds a sync body's `receive()` waits in its thread for a message before it gives
#: the pool thread back (the body stops there and is re-executed when one comes): a
#: burst of messages runs the body once, and idle runs do not hold threads.
THREAD_PARK = 1.0


def _receive_in_thread(scope: Scope, position: str, waiter: concurrent.futures.Future[Any]) -> Any:
    """A sync body's `receive()` waits for what the actor hands to `waiter`."""
    value: Any
    try:
        try:
            value = TaskFuture._wait_in_thread(waiter, THREAD_PARK)
        except concurrent.futures.TimeoutError:
            _thread_safe_post(
                scope,
                UnparkReceive(incarnation=scope.incarnation, position=position, waiter=waiter),
            )
            value = TaskFuture._wait_in_thread(waiter, None)  # the message, or cancelled
    except concurrent.futures.CancelledError:
        scope.check_alive()
        raise Suspend("receive") from None
    return fresh(value)


@attrs.frozen
class Received:
    """A message `receive_message` returns at once to a child task (no future to await)."""

    value: Any


def settle_all(futures: list[asyncio.Future[Any]], value: Any) -> None:
    """Hand `value` to code waiting in `areceive()` (a child task of the body)."""
    for fut in futures:
        if not fut.done():
            fut.set_result(value)


def publish_event(key: str, value: Any) -> None:
    """Record `value` as the run's event `key` (a step: replay does not record it again)."""
    if not isinstance(key, str) or not key:
        raise TypeError(f"set_event(): key must be a non-empty string, got {key!r}")
    scope = require_scope("set_event()")
    actor = scope.actor
    position = scope.next_position()
    value = check_json(
        value, "value", where=f"set_event({key!r}) in run {actor.run_id!r} at position {position}"
    )
    step = match_step(actor.state, position, "set_event")
    if step is not None:
        if step.name != key:
            raise NonDeterminismError(
                f"run {actor.run_id!r}, position {position}: the code asked for "
                f"set_event({key!r}), but the log recorded set_event({step.name!r}) there",
                run_id=actor.run_id,
                position=position,
                recorded=step.describe(),
                requested=f"set_event({key!r})",
            )
        return
    _thread_safe_post(
        scope,
        PublishEvent(incarnation=scope.incarnation, position=position, key=key, value=value),
    )


def wake(futures: list[asyncio.Future[None]]) -> None:
    """Tell code waiting on a durable sleep that it has fired."""
    for fut in futures:
        if not fut.done():
            fut.set_result(None)


def _child_of_a_scope() -> bool:
    scope = current_scope.get()
    return scope is not None and scope.root is not None and _in_child(scope)


def _in_child(scope: Scope) -> bool:
    """Whether the caller is an asyncio task the scope's code started, not the scope's own."""
    if not _on_loop_thread(scope.actor.loop):
        return False
    return asyncio.current_task() is not scope.root


def current_body() -> BodyInfo:
    scope = require_scope("get_previous_state()")
    if scope.body is None:
        raise NotInWorkflowError("get_previous_state() can only be called in an @entrypoint body")
    return scope.body
