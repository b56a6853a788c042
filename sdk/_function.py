"""`@function`: a durable, retryable unit of work, and the `FunctionContext` it may ask for."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

import attrs

from perdure.actors import (
    AttemptInfo,
    BackoffPolicy,
    BackoffType,
    PolicyError,
    RetryPolicy,
    TargetSpec,
    TaskSpec,
    call_task,
    current_scope,
    get_logger,
)
from perdure.eventlog import declared_types, rebuild
from perdure.runtime import InvalidArgumentsError, Registry, default_registry, run_sync

if TYPE_CHECKING:
    import structlog.stdlib

P = ParamSpec("P")
R = TypeVar("R")


class FunctionContext:
    """What a running function can know and do: its run, its attempt, structured logging.

    Add it as the first parameter (annotated ``FunctionContext`` or named
    ``ctx``) and perdure passes it in.
    """

    __slots__ = ("_logger", "attempt", "function", "idempotency_key", "run_id")

    def __init__(self, info: AttemptInfo) -> None:
        self.run_id = info.run_id
        self.attempt = info.attempt
        self.function = info.name
        #: Stable across retries and restarts: the caller's idempotency key, or
        #: one derived from the run id. Pass it to downstream APIs (payments, ...).
        self.idempotency_key = info.idempotency_key
        self._logger: structlog.stdlib.BoundLogger | None = None

    @property
    def logger(self) -> structlog.stdlib.BoundLogger:
        """A logger bound with the run id, function and attempt (and the run's trace id).

        A structlog `BoundLogger` over the stdlib logger ``perdure.function``: your
        logging configuration decides its level and handlers, and its records carry
        the fields as attributes (``record.run_id``). It has the stdlib interface
        too (``isEnabledFor``, ``exception``, ``log(level, ...)``).
        """
        if self._logger is None:
            self._logger = get_logger(
                "perdure.function", run_id=self.run_id, function=self.function, attempt=self.attempt
            )
        return self._logger

    def __repr__(self) -> str:
        return f"FunctionContext(run_id={self.run_id!r}, attempt={self.attempt})"

    def log(self, message: str, **fields: Any) -> None:
        """Log `message` at info level with `fields` and the run's correlation ids."""
        self.logger.info(message, stacklevel=2, **fields)


def _wants_context(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return False
    first = params[0]
    annotation = first.annotation
    if annotation is FunctionContext or (
        isinstance(annotation, str) and annotation.split(".")[-1] == "FunctionContext"
    ):
        return True
    return first.name == "ctx"


def user_signature(fn: Callable[..., Any], skip_first: bool) -> inspect.Signature:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    return sig.replace(parameters=params[1:] if skip_first else params)


_NO_CONTEXT = object()  # stands in for the FunctionContext when an input is checked


def input_binder(
    sig: inspect.Signature,
) -> Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any]]]:
    """How a run's input (a dict of arguments by name) becomes the call's args and kwargs.

    Every key is passed by keyword, except the positional-only parameters'
    (``def f(a, /)``), which go by position, so every parameter can be given by
    name. Keys a ``**kwargs`` parameter collects go by keyword, whatever they
    are called.
    """
    positional = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.POSITIONAL_ONLY]
    if not positional:
        return lambda value: ([], value)

    def bind(value: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        kwargs = dict(value)
        args: list[Any] = []
        for index, param in enumerate(positional):
            if param.name in kwargs:
                args.append(kwargs.pop(param.name))
            elif param.default is not param.empty and any(
                later.name in kwargs for later in positional[index + 1 :]
            ):
                args.append(param.default)  # a later one is given: this one keeps its default
            else:
                break
        return args, kwargs

    return bind


def _rebuild_arguments(
    kwargs: dict[str, Any], types: dict[str, Any], target: str
) -> dict[str, Any]:
    """Keyword arguments with each declared type rebuilt from its stored (plain JSON) form."""
    return {
        key: rebuild(value, types[key], f"argument {key!r} of {target!r}")
        if key in types
        else value
        for key, value in kwargs.items()
    }


def build_policy(
    retries: int | RetryPolicy | None,
    backoff: BackoffPolicy | BackoffType | str | None,
    non_retryable: tuple[type[BaseException], ...],
    default: RetryPolicy,
) -> RetryPolicy:
    """Combine the decorator's retry options into one `RetryPolicy` (errors at decoration time)."""
    if retries is None:
        policy = default
    elif isinstance(retries, RetryPolicy):
        policy = retries
    elif isinstance(retries, int) and not isinstance(retries, bool):
        if retries < 1:
            raise PolicyError(
                f"retries={retries!r}: give the maximum number of attempts including the "
                "first (>= 1), or a RetryPolicy"
            )
        policy = attrs.evolve(default, max_attempts=retries)
    else:
        raise PolicyError(
            f"retries must be an int (max attempts) or a RetryPolicy, got {retries!r}"
        )
    if backoff is not None:
        policy = attrs.evolve(policy, backoff=BackoffPolicy.parse(backoff))
    if non_retryable:
        extra: tuple[type[BaseException], ...] = policy.non_retryable + tuple(non_retryable)
        policy = attrs.evolve(policy, non_retryable=extra)
    return policy


def _check_timeout(timeout: float | None, what: str) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise PolicyError(f"{what}: timeout must be a number of seconds > 0, got {timeout!r}")
    return float(timeout)


class DurableFunction(Generic[P, R]):
    """A function decorated with `@function`.

    Run it durably with `Runtime.run(fn_or_name, {...})` or `Client().run(...)`.
    Inside a workflow, calling it schedules it as a checkpointed task and
    returns a future. Anywhere else, calling it calls the plain function.

    ``DurableFunction[P, R]``: ``P`` is its durable signature (the parameters
    after a `FunctionContext`), ``R`` its result (awaited, for an async one). A
    call is typed ``Any``: a `TaskFuture` of ``R`` inside a workflow, the plain
    function's return value elsewhere.
    """

    def __init__(self, fn: Callable[..., Any], spec: TargetSpec, as_task: TaskSpec) -> None:
        self.__wrapped__ = fn
        self.__perdure_target__ = spec
        self._as_task = as_task
        self.name = spec.name
        self.__name__ = getattr(fn, "__name__", spec.name)
        self.__qualname__ = getattr(fn, "__qualname__", spec.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = fn.__doc__

    @property
    def retry_policy(self) -> RetryPolicy:
        assert self.__perdure_target__.task is not None
        return self.__perdure_target__.task.retry

    def __repr__(self) -> str:
        return f"<perdure function {self.name!r}>"

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        if current_scope.get() is not None:
            return call_task(self._as_task, args, kwargs)
        return self.__wrapped__(*args, **kwargs)


class FunctionDecorator(Protocol):
    """What ``@function(...)`` with options returns: applied to a function, a `DurableFunction`."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[FunctionContext, P], Coroutine[Any, Any, R]], /
    ) -> DurableFunction[P, R]: ...
    @overload
    def __call__(
        self, fn: Callable[Concatenate[FunctionContext, P], R], /
    ) -> DurableFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> DurableFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> DurableFunction[P, R]: ...


# A first parameter typed `FunctionContext` (or a supertype, such as Any) is the context.
@overload
def function(
    fn: Callable[Concatenate[FunctionContext, P], Coroutine[Any, Any, R]], /
) -> DurableFunction[P, R]: ...


@overload
def function(fn: Callable[Concatenate[FunctionContext, P], R], /) -> DurableFunction[P, R]: ...


@overload
def function(fn: Callable[P, Coroutine[Any, Any, R]], /) -> DurableFunction[P, R]: ...


@overload
def function(fn: Callable[P, R], /) -> DurableFunction[P, R]: ...


@overload
def function(
    *,
    name: str | None = None,
    retries: int | RetryPolicy | None = None,
    backoff: BackoffPolicy | BackoffType | str | None = None,
    timeout: float | None = None,
    timeout_total: float | None = None,
    non_retryable: tuple[type[BaseException], ...] = (),
    registry: Registry | None = None,
) -> FunctionDecorator: ...


def function(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int | RetryPolicy | None = None,
    backoff: BackoffPolicy | BackoffType | str | None = None,
    timeout: float | None = None,
    timeout_total: float | None = None,
    non_retryable: tuple[type[BaseException], ...] = (),
    registry: Registry | None = None,
) -> DurableFunction[..., Any] | FunctionDecorator:
    """Declare a durable function: retried with backoff, optionally idempotent, crash-safe.

    name: the name callers use (default: the function's ``__name__``).
    retries: max attempts including the first (int), or a `RetryPolicy`.
        Default: 3 attempts, 1 s initial interval, exponential backoff.
    backoff: "exponential" | "linear" | "constant" (any case), a `BackoffType`
        or a `BackoffPolicy(type=..., multiplier=...)`.
    timeout: seconds one attempt may run before it fails (and is retried).
    timeout_total: seconds a run of the function may take in all, retries and backoff
        included (a durable deadline: past it the run is cancelled, even across restarts).
    non_retryable: exception classes that fail at once without retries
        (raising `NonRetryableError` does the same).
    """

    def decorate(func: Callable[..., Any]) -> DurableFunction[..., Any]:
        if not callable(func):
            raise TypeError(f"@function decorates a function, got {func!r}")
        fname = name or getattr(func, "__name__", None)
        if not fname:
            raise TypeError("@function needs name=... for a callable without __name__")
        policy = build_policy(retries, backoff, tuple(non_retryable), RetryPolicy())
        seconds = _check_timeout(timeout, f"@function {fname!r}")
        total = _check_timeout(timeout_total, f"@function {fname!r} timeout_total")
        wants_ctx = _wants_context(func)
        sig = user_signature(func, skip_first=wants_ctx)
        full_sig = inspect.signature(func)
        from_input = input_binder(sig)
        is_async = inspect.iscoroutinefunction(func)
        param_types, result_type = declared_types(func)

        async def call(args: list[Any], kwargs: dict[str, Any], info: AttemptInfo) -> Any:
            """Called from a workflow: the arguments are as the workflow passed them."""
            lead = (FunctionContext(info),) if wants_ctx else ()
            if is_async:
                return await func(*lead, *args, **kwargs)
            return await run_sync("task", func, *lead, *args, **kwargs)

        async def call_run(args: list[Any], kwargs: dict[str, Any], info: AttemptInfo) -> Any:
            """A run of its own: `kwargs` is the run's input, arguments by name.

            The input comes from the log as plain JSON: declared types are rebuilt.
            """
            if param_types:
                kwargs = _rebuild_arguments(kwargs, param_types, fname)
            given, named = from_input(kwargs)
            return await call([*args, *given], named, info)

        def validate_input(value: Any) -> None:
            if not isinstance(value, dict):
                raise InvalidArgumentsError(
                    f"function {fname!r} takes a dict of keyword arguments as input "
                    f"(parameters: {sig}), got {type(value).__name__}",
                    target=fname,
                )
            args, kwargs = from_input(value)
            try:
                # Bound with the context in place, so an input key that collides with the
                # context parameter (``def f(ctx, **kw)`` given ``{"ctx": ...}``) is caught.
                full_sig.bind(*((_NO_CONTEXT,) if wants_ctx else ()), *args, **kwargs)
            except TypeError as exc:
                raise InvalidArgumentsError(
                    f"input does not fit function {fname!r}{sig}: {exc}", target=fname
                ) from None

        task = TaskSpec(
            name=fname, call=call_run, retry=policy, timeout=seconds, record_input=False
        )
        spec = TargetSpec(
            name=fname,
            kind="function",
            validate_input=validate_input,
            task=task,
            source=func,
            result_type=result_type,
            timeout_total=total,
        )
        (registry or default_registry).register(spec)
        as_task = attrs.evolve(task, call=call, record_input=True, result_type=result_type)
        return DurableFunction(func, spec, as_task)

    if fn is not None:
        return decorate(fn)
    return decorate  # type: ignore[return-value]  # one function stands for all overloads
