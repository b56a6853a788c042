"""Workflows: `@entrypoint` and `@task`, the Python spelling of the functional workflow API.

A workflow is ordinary Python; each task call is recorded, so a resumed run
re-executes the body and gets recorded results back instead of recomputing.
`interrupt(value)` pauses for a person and `Command(resume=...)` continues.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Coroutine
from typing import (
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

import attrs

from perdure._function import _check_timeout, build_policy
from perdure._workflow_api import WorkflowApi
from perdure.actors import (
    NO_RETRY,
    AttemptInfo,
    BodyInfo,
    Final,
    Received,
    RetryPolicy,
    TargetSpec,
    TaskFuture,
    TaskSpec,
    ask_interrupt,
    call_task,
    current_body,
    durable_sleep,
    publish_event,
    receive_message,
)
from perdure.eventlog import EventLog, declared_types, rebuild
from perdure.runtime import (
    InvalidArgumentsError,
    Registry,
    check_id,
    default_registry,
    run_sync,
    store_spec,
)

P = ParamSpec("P")
R = TypeVar("R")
InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")
SaveT = TypeVar("SaveT")
_INJECTABLE = ("previous", "config", "writer", "store")


class Task(Generic[P, R]):
    """A function decorated with `@task`: calling it inside a workflow returns a `TaskFuture`.

    ``Task[P, R]``: called with the function's parameters ``P``, it returns a
    ``TaskFuture[R]``, ``R`` being the function's result (awaited, for an async one).
    """

    def __init__(self, fn: Callable[P, Any], spec: TaskSpec) -> None:
        self.__wrapped__ = fn
        self.spec = spec
        self.name = spec.name
        self._signature = inspect.signature(fn)
        # Calls that certainly fit skip `Signature.bind` (a replay makes one call per step).
        self._arity = _plain_arity(self._signature)
        self.__name__ = getattr(fn, "__name__", spec.name)
        self.__qualname__ = getattr(fn, "__qualname__", spec.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<perdure task {self.name!r}>"

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        if kwargs or len(args) != self._arity:
            self._check_arguments(args, kwargs)
        return call_task(self.spec, args, kwargs)

    def _check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgumentsError(
                f"task {self.name!r}{self._signature}: {exc}", target=self.name
            ) from None


def _plain_arity(signature: inspect.Signature) -> int | None:
    """The parameter count if every parameter is positional without a default, else None."""
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = signature.parameters.values()
    if all(p.kind in plain and p.default is inspect.Parameter.empty for p in params):
        return len(signature.parameters)
    return None


class TaskDecorator(Protocol):
    """What ``@task(...)`` with options returns: applied to a function, a `Task`."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retry_policy: RetryPolicy | int | None = None,
    timeout: float | None = None,
) -> TaskDecorator: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry_policy: RetryPolicy | int | None = None,
    timeout: float | None = None,
) -> Task[..., Any] | TaskDecorator:
    """Declare a workflow task (sync or async). Its result is recorded once it completes.

    name: the task's name in the log and in stream updates (default ``__name__``).
    retry_policy: a `RetryPolicy`, or an int of max attempts. Default: 1 attempt.
    timeout: seconds one attempt may run.
    """

    def decorate(func: Callable[..., Any]) -> Task[..., Any]:
        if not callable(func):
            raise TypeError(f"@task decorates a function, got {func!r}")
        tname = name or getattr(func, "__name__", None)
        if not tname:
            raise TypeError("@task needs name=... for a callable without __name__")
        check_id("name", tname)
        policy = build_policy(retry_policy, None, (), NO_RETRY)
        seconds = _check_timeout(timeout, f"@task {tname!r}")
        is_async = inspect.iscoroutinefunction(func)

        async def call(args: list[Any], kwargs: dict[str, Any], info: AttemptInfo) -> Any:
            if is_async:
                return await func(*args, **kwargs)
            return await run_sync("task", func, *args, **kwargs)

        # Workflow code gets the task's result back as its declared return type
        # (plain JSON without one); the task itself is called with the values passed.
        result_type = declared_types(func)[1]
        spec = TaskSpec(
            name=tname,
            call=call,
            retry=policy,
            timeout=seconds,
            result_type=result_type,
            inline=None if is_async else func,
        )
        return Task(func, spec)

    if fn is not None:
        return decorate(fn)
    return decorate  # type: ignore[return-value]  # one function stands for both overloads


class entrypoint:
    """Declare a workflow: ``@entrypoint(checkpointer=...)`` over a one-argument function.

    checkpointer: where this workflow's runs are kept: a store (a folder path
        or a ``postgresql://`` URL) or a perdure `EventLog` (`MemoryEventLog()`);
        default: ``PERDURE_STORE`` (alias ``PERDURE_PATH``), else ``./.perdure``.
    retry_policy: retries of the body itself (a task's attempts are its own).
    name: the workflow's registered name (default ``__name__``).
    timeout: seconds each invocation may take in all, waits included: a durable
        deadline set when it starts; past it the run is cancelled (reason
        ``deadline exceeded: ...``), even across restarts.

    The function may also accept keyword parameters ``previous`` (the value
    saved by the last completed invocation on this thread), ``config`` and
    ``writer`` (emit items to ``stream(stream_mode="custom")``).
    """

    @attrs.frozen
    class final(Final[OutputT, SaveT]):
        """``entrypoint.final(value=..., save=...)``: return `value`, save `save` as `previous`.

        Generic: a body annotated ``-> entrypoint.final[str, int]`` makes a
        ``Workflow[..., str]`` whose next invocation gets an ``int`` as ``previous``.
        """

    def __init__(
        self,
        checkpointer: EventLog | str | os.PathLike[str] | None = None,
        *,
        retry_policy: RetryPolicy | int | None = None,
        name: str | None = None,
        registry: Registry | None = None,
        timeout: float | None = None,
    ) -> None:
        if isinstance(checkpointer, str | os.PathLike):
            checkpointer = store_spec(checkpointer)  # a folder or a postgresql:// URL
        elif checkpointer is not None and not isinstance(checkpointer, EventLog):
            raise TypeError(
                "checkpointer must be a store (a folder path or a postgresql:// URL) or a "
                f"perdure event log (LmdbEventLog(path), MemoryEventLog()), got {checkpointer!r}"
            )
        self.checkpointer: EventLog | str | None = checkpointer
        self.retry_policy = (
            build_policy(retry_policy, None, (), NO_RETRY) if retry_policy is not None else None
        )
        self.name = name
        self.registry = registry or default_registry
        self.timeout = _check_timeout(timeout, "@entrypoint" + (f" {name!r}" if name else ""))

    # The input is the first parameter; `previous`, `config`, `writer` may follow.
    @overload
    def __call__(
        self, fn: Callable[Concatenate[InputT, ...], Coroutine[Any, Any, Final[OutputT, SaveT]]], /
    ) -> Workflow[InputT, OutputT]: ...
    @overload
    def __call__(
        self, fn: Callable[Concatenate[InputT, ...], Final[OutputT, SaveT]], /
    ) -> Workflow[InputT, OutputT]: ...
    @overload
    def __call__(
        self, fn: Callable[Concatenate[InputT, ...], Coroutine[Any, Any, OutputT]], /
    ) -> Workflow[InputT, OutputT]: ...
    @overload
    def __call__(
        self, fn: Callable[Concatenate[InputT, ...], OutputT], /
    ) -> Workflow[InputT, OutputT]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Workflow[Any, Any]:
        if not callable(fn):
            raise TypeError(f"@entrypoint decorates a function, got {fn!r}")
        wname = self.name or getattr(fn, "__name__", None)
        if not wname:
            raise TypeError("@entrypoint needs name=... for a callable without __name__")
        params = inspect.signature(fn).parameters
        positional = [
            p
            for p in params.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _INJECTABLE
        ]
        if len(positional) != 1:
            raise InvalidArgumentsError(
                f"@entrypoint {wname!r} must take exactly one positional input parameter "
                f"(use a dict for several values); its parameters are {list(params)}",
                target=wname,
            )
        wanted = [key for key in _INJECTABLE if key in params]
        is_async = inspect.iscoroutinefunction(fn)
        # The input and `previous` come from the log as plain JSON: rebuild declared types.
        # ``-> entrypoint.final[Value, Saved]`` declares no value type: plain JSON.
        param_types, result_type = declared_types(fn, exclude=(Final,))
        input_type = param_types.get(positional[0].name)
        previous_type = param_types.get("previous")

        async def run(info: BodyInfo) -> Any:
            injected: dict[str, Any] = {}
            for key in wanted:
                injected[key] = {
                    "previous": info.previous,
                    "config": info.config,
                    "writer": info.writer,
                    "store": None,
                }[key]
            value = info.input
            if input_type is not None:
                value = rebuild(value, input_type, f"input of {wname!r}")
            if previous_type is not None and info.previous is not None:
                injected["previous"] = rebuild(
                    info.previous, previous_type, f"previous of {wname!r}"
                )
            if is_async:
                return await fn(value, **injected)
            return await run_sync("body", fn, value, **injected)

        spec = TargetSpec(
            name=wname,
            kind="workflow",
            validate_input=lambda value: None,
            run=run,
            retry=self.retry_policy,
            source=fn,
            result_type=result_type,
            timeout_total=self.timeout,
        )
        self.registry.register(spec)
        return Workflow(fn, spec, self.checkpointer)


class Workflow(WorkflowApi[InputT, OutputT]):
    """A decorated entrypoint: run it with `invoke`/`ainvoke`/`stream`/`astream`.

    ``Workflow[I, O]``: `invoke` takes the body's input ``I`` and returns its
    output ``O`` (the ``value`` of an ``entrypoint.final[O, S]``).
    """

    def __init__(
        self, fn: Callable[..., Any], spec: TargetSpec, checkpointer: EventLog | str | None
    ) -> None:
        super().__init__(spec, checkpointer)
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", spec.name)
        self.__qualname__ = getattr(fn, "__qualname__", spec.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<perdure workflow {self.name!r}>"


def sleep(seconds: float) -> None:
    """Durable sleep in sync workflow code: the run is unloaded and resumed by a stored timer."""
    durable_sleep(seconds)


async def asleep(seconds: float) -> None:
    """Durable sleep in async workflow code (``await perdure.asleep(3600)``).

    Awaited by the body itself, the run is unloaded until the stored timer
    fires. In a task the body started (``asyncio.create_task(asleep(60))``,
    one side of ``asyncio.wait(..., return_when=FIRST_COMPLETED)``) it waits
    for the timer while the body goes on, so a task can race a durable
    timeout; replays give the race the winner it had live.
    """
    fired = durable_sleep(seconds, wait=True)
    if fired is not None:
        await fired


def receive(topic: str = "default", *, timeout: float | None = None) -> Any:
    """In a workflow body: the next message sent to this run on `topic` (`Runtime.send`),
    in the order they were sent, or None when `timeout` seconds pass first.

    The wait is durable (the run is unloaded while it waits, and the timeout is a
    stored timer); the delivery is recorded, so a replay returns the same message and
    every message goes to exactly one `receive`.
    """
    return receive_message(topic, timeout)


async def areceive(topic: str = "default", *, timeout: float | None = None) -> Any:
    """`receive` for async workflow code (``msg = await perdure.areceive()``).

    Awaited by the body itself, the run is unloaded until a message (or the timeout)
    is recorded. In a task the body started (one side of ``asyncio.wait(...,
    return_when=FIRST_COMPLETED)``, or ``asyncio.wait_for``) it waits while the body
    goes on; replays give the race the winner it had live, and a receive cancelled
    before a message reached it (the loser) takes none.
    """
    got = receive_message(topic, timeout, wait=True)
    if isinstance(got, Received):
        return got.value
    if isinstance(got, asyncio.Future):
        return await got
    return got


async def ainterrupt(value: Any, *, timeout: float | None = None) -> Any:
    """`interrupt` for async workflow code (``answer = await perdure.ainterrupt(question)``).

    Awaited by the body itself, the run pauses (and may be unloaded) until the answer
    (`Command(resume=...)`) or the timeout (`InterruptTimeoutError`) is recorded. In
    a task the body started it can be one side of a race (``asyncio.wait(...,
    return_when=FIRST_COMPLETED)``, ``asyncio.wait_for``) against tasks, `asleep` and
    `areceive`: replays give the race the winner it had live, and an `ainterrupt()`
    cancelled before its answer (the loser) is withdrawn: a later resume is refused.
    """
    got = ask_interrupt(value, timeout, wait=True)
    if isinstance(got, asyncio.Future):
        return await got
    return got


def set_event(key: str, value: Any) -> None:
    """In a workflow body: publish `value` under `key` for `Runtime.get_event` (a recorded
    step; a later `set_event` with the same key overwrites it)."""
    publish_event(key, value)


def get_previous_state() -> Any:
    """Inside an entrypoint: the value saved by the previous invocation on this thread."""
    return current_body().previous
