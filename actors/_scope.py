"""Execution scopes: where user code asks for steps (tasks, interrupts, sleeps) of its run.

A scope is the workflow body or one task attempt. Each has its own step
counter, so positions follow the code's call order ("2", "2.0", ...) however
parallel work finishes. Steps already in the log are answered here, at once,
from the actor's state (replay); new ones become messages to the actor. The
functions may be called from the event loop or from a worker thread (sync code).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import math
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from perdure.actors._errors import NotInWorkflowError, Suspend, TaskFailedError
from perdure.actors._messages import ExecuteTask, InterruptRequest, SleepRequest
from perdure.actors._replay import match_step
from perdure.actors._targets import BodyInfo, TaskSpec
from perdure.eventlog import TaskFailed, check_json, digest
from perdure.eventlog._json import fresh

if TYPE_CHECKING:
    from perdure.actors._actor import RunActor

T = TypeVar("T")


class Scope:
    """The body of a run or one task attempt, with its own step counter."""

    __slots__ = ("actor", "body", "counter", "incarnation", "prefix")

    def __init__(self, actor: RunActor, prefix: str, body: BodyInfo | None) -> None:
        self.actor = actor
        self.incarnation = actor.incarnation
        self.prefix = prefix
        self.counter = 0
        self.body = body

    def next_position(self) -> str:
        n = self.counter
        self.counter = n + 1
        return f"{self.prefix}.{n}" if self.prefix else str(n)

    def check_alive(self) -> None:
        if not self.actor.alive or self.actor.incarnation != self.incarnation:
            raise Suspend("actor stopped")


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


def failure_error(run_id: str, failed: TaskFailed) -> TaskFailedError:
    return TaskFailedError(
        f"task {failed.name!r} (run {run_id!r}, position {failed.position}) failed after "
        f"{failed.attempts} attempt(s): {failed.error_type}: {failed.message}",
        run_id=run_id,
        task=failed.name,
        position=failed.position,
        error_type=failed.error_type,
        error_message=failed.message,
        attempts=failed.attempts,
    )


async def _wait(fut: asyncio.Future[Any]) -> Any:
    return await fut


class TaskFuture(Generic[T]):
    """The result of a task call: ``await`` it in async code, ``.result()`` in sync code."""

    __slots__ = ("_error", "_fut", "_loop", "_value", "name")

    def __init__(
        self,
        name: str,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[Any] | None = None,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        self.name = name
        self._loop = loop
        self._fut = fut
        self._value = value
        self._error = error

    def __repr__(self) -> str:
        return f"<TaskFuture {self.name} done={self.done()}>"

    def done(self) -> bool:
        return self._fut is None or self._fut.done()

    def __await__(self) -> Generator[Any, None, T]:
        if self._fut is None:
            if self._error is not None:
                raise self._error
            return self._value  # type: ignore[no-any-return]
        return (yield from self._fut.__await__())  # type: ignore[no-any-return]

    def result(self, timeout: float | None = None) -> T:
        """Block until the task's result is durable, then return it (sync workflow code)."""
        if self._fut is None:
            if self._error is not None:
                raise self._error
            return self._value  # type: ignore[no-any-return]
        if _on_loop_thread(self._loop):
            if self._fut.done():
                return self._fut.result()  # type: ignore[no-any-return]
            raise RuntimeError(
                f"task {self.name!r}: .result() would block the event loop; "
                "in async workflow code use `await` on the task's future"
            )
        return asyncio.run_coroutine_threadsafe(_wait(self._fut), self._loop).result(timeout)  # type: ignore[no-any-return]


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

    check_json(arg_list, "args", where=where)
    check_json(kwargs, "kwargs", where=where)
    payload_digest = digest([arg_list, kwargs])
    step = match_step(actor.state, position, "task", spec.name, payload_digest)
    if step is not None and step.settled_seq < actor.durable_seq:
        if step.done:
            return TaskFuture(spec.name, actor.loop, value=fresh(step.result))
        if step.failed is not None:
            return TaskFuture(spec.name, actor.loop, error=failure_error(actor.run_id, step.failed))
    fut: asyncio.Future[Any] = asyncio.Future(loop=actor.loop)
    _thread_safe_post(
        scope,
        ExecuteTask(
            incarnation=scope.incarnation,
            position=position,
            spec=spec,
            args=arg_list,
            kwargs=kwargs,
            digest=payload_digest,
            future=fut,
        ),
    )
    return TaskFuture(spec.name, actor.loop, fut=fut)


def interrupt_id(run_id: str, invocation: int, position: str) -> str:
    """A stable id for the interrupt at `position` of an invocation."""
    raw = f"{run_id}\x00{invocation}\x00{position}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def interrupt(value: Any) -> Any:
    """Pause the run until a person answers `value`; return their answer once given."""
    scope = require_scope("interrupt()")
    actor = scope.actor
    position = scope.next_position()
    check_json(value, "value", where=f"interrupt() in run {actor.run_id!r} at position {position}")
    value_digest = digest(value)
    step = match_step(actor.state, position, "interrupt", digest=value_digest, value=value)
    if step is not None:
        if step.answered and step.settled_seq < actor.durable_seq:
            return fresh(step.answer)
        raise Suspend("interrupt", step.interrupt_id)
    iid = interrupt_id(actor.run_id, actor.state.invocation, position)
    _thread_safe_post(
        scope,
        InterruptRequest(
            incarnation=scope.incarnation,
            position=position,
            interrupt_id=iid,
            value=value,
            digest=value_digest,
        ),
    )
    raise Suspend("interrupt", iid)


def durable_sleep(seconds: float) -> None:
    """Wait `seconds` durably: the run is unloaded and resumed by a stored timer."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds):
        raise TypeError(f"sleep() needs a number of seconds, got {seconds!r}")
    scope = require_scope("sleep()")
    actor = scope.actor
    position = scope.next_position()
    step = match_step(actor.state, position, "sleep")
    if step is not None:
        if step.fired:
            return
        raise Suspend("sleep", step.timer_id)
    if seconds <= 0:
        return
    _thread_safe_post(
        scope,
        SleepRequest(incarnation=scope.incarnation, position=position, seconds=float(seconds)),
    )
    raise Suspend("sleep")


def current_body() -> BodyInfo:
    scope = require_scope("get_previous_state()")
    if scope.body is None:
        raise NotInWorkflowError("get_previous_state() can only be called in an @entrypoint body")
    return scope.body
