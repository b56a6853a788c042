"""Tracing and logging around runs and attempts (OpenTelemetry spans, structlog context).

The run's span context is stored in its first event as a W3C ``traceparent``;
an actor rebuilt in another process starts its spans under that parent, so a
run resumed after a crash continues the same trace.

Logging goes through the standard library, as a library's should: perdure's
loggers are structlog `BoundLogger`s over ``logging.getLogger("perdure...")``
with their own processor chain (structlog's global configuration is the host's,
never touched here). A record's message is the event ("run started"); its fields
(run_id, attempt, trace_id, target, ...) are attributes of the `LogRecord`, as
``extra=`` would set them. With no logging configured, nothing is printed: a
`NullHandler` on ``perdure`` keeps Python's last-resort handler quiet.

structlog loads when a `Runtime` is created (its task attempts bind their context), or on
the first line actually written: importing it costs ~70 ms when rich is installed
(``structlog.dev`` imports rich's tracebacks), which `import perdure` should not pay. A
process whose logging configuration sends perdure's records nowhere (no handler but
perdure's `NullHandler`) and that has not loaded structlog itself never loads it.

OpenTelemetry (~10 ms) loads only once the program has loaded it: configuring a tracer
provider imports ``opentelemetry.trace``, so until then no span could record anything,
and a run's spans are `Untraced` (they keep the trace id a stored traceparent names, for
the log lines). A `GlobalTracer` looks the global provider's tracer up when it is.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import structlog.stdlib
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from structlog.typing import Processor

#: LogRecord attributes a field may not overwrite (``extra=`` raises KeyError for them).
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: Keyword arguments of `logging.Logger.log` itself, not fields.
_LOG_KWARGS = ("exc_info", "stack_info", "stacklevel")
#: Between the caller and `logging.Logger.<level>`: BoundLogger.<level>, Logger._proxy_to_logger,
#: stdlib BoundLogger._proxy_to_logger, BoundLoggerBase._proxy_to_logger.
_STRUCTLOG_FRAMES = 4


def _to_stdlib(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: the event becomes the record's message, the fields its attributes.

    A field named like a `LogRecord` attribute (``name``, ``msg``, ``module``...) gets a
    trailing underscore (``name_``) instead of failing the call.
    """
    args = (event_dict.pop("event", None), *event_dict.pop("positional_args", ()))
    kwargs = {key: event_dict.pop(key) for key in _LOG_KWARGS if key in event_dict}
    # The record's file, line and function are the caller's, not structlog's.
    kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + _STRUCTLOG_FRAMES
    if event_dict:
        kwargs["extra"] = {
            f"{key}_" if key in _RESERVED else key: value for key, value in event_dict.items()
        }
    return args, kwargs


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

logging.getLogger("perdure").addHandler(logging.NullHandler())


@functools.cache
def _logger_class() -> type[structlog.stdlib.BoundLogger]:
    """perdure's `BoundLogger` class, defined (and structlog imported) on first use."""
    import structlog.stdlib

    class Logger(structlog.stdlib.BoundLogger):
        """structlog's stdlib `BoundLogger`, checking the level before it builds the event.

        structlog would copy the context and run the processors first; here a call at
        a disabled level costs the stdlib's cached level check and nothing more.
        """

        def _proxy_to_logger(
            self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
        ) -> Any:
            if not self._logger.isEnabledFor(_LEVELS.get(method_name, logging.NOTSET)):
                return None
            return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)

    return Logger


def get_logger(name: str, **fields: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger over the stdlib logger `name` (under ``perdure``), bound to `fields`.

    It has the stdlib logger's interface too (``isEnabledFor``, ``exception``,
    ``log(level, ...)``); the host's logging configuration decides levels,
    handlers and format.
    """
    import structlog.contextvars

    processors: list[Processor] = [structlog.contextvars.merge_contextvars, _to_stdlib]
    return _logger_class()(logging.getLogger(name), processors, fields)


def heard(name: str = "perdure") -> bool:
    """Whether a record of logger `name` reaches a handler the host set (not perdure's
    `NullHandler`) on it or an ancestor: otherwise it goes nowhere."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(type(handler) is not logging.NullHandler for handler in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


def _heard_anywhere() -> bool:
    """`heard`, for perdure's loggers and any the host configured under ``perdure.``."""
    if heard():
        return True
    loggers = logging.root.manager.loggerDict
    return any(
        name.startswith("perdure.") and isinstance(logger, logging.Logger) and logger.handlers
        for name, logger in list(loggers.items())
    )


#: structlog's own context variables for an attempt's fields (`bind_attempt`), in the
#: order of its arguments; found on the first bind.
_ATTEMPT_VARS: list[tuple[contextvars.ContextVar[Any], ...]] = []


def bind_attempt(run_id: str, target: str, task: str, attempt: int, trace_id: str | None) -> None:
    """Bind a task attempt's fields to structlog's context (the host's structlog loggers
    merge them), at the cost of five `ContextVar.set`. In a process that has not loaded
    structlog and whose logging sends perdure's records nowhere, nothing could read
    them, and structlog is not imported for them (~70 ms when rich is installed).

    Runs once per step: the generic path (an f-string and a dict look-up per key, a
    dict of tokens) was ~2 µs of it. The variables are structlog's own (taken from
    the tokens of the first, ordinary bind), so structlog reads, resets and unbinds
    them as usual.
    """
    if not _ATTEMPT_VARS:
        if "structlog" not in sys.modules and not heard():
            return  # nothing could read them: structlog is not even loaded for them
        import structlog.contextvars

        tokens = structlog.contextvars.bind_contextvars(
            run_id=run_id, target=target, task=task, attempt=attempt, trace_id=trace_id
        )
        names = ("run_id", "target", "task", "attempt", "trace_id")
        _ATTEMPT_VARS.append(tuple(tokens[name].var for name in names))
        return
    found = _ATTEMPT_VARS[0]
    found[0].set(run_id)
    found[1].set(target)
    found[2].set(task)
    found[3].set(attempt)
    found[4].set(trace_id)


def load_logging() -> None:
    """Import structlog now if perdure's records go somewhere (or the host uses structlog):
    a runtime calls it when it is created, so that its first task attempt (which binds the
    run's context) does not pay the import in the middle of a run. A process whose logging
    sends them nowhere does not load it (see `bind_attempt`)."""
    if "structlog" in sys.modules or _heard_anywhere():
        import structlog.contextvars  # noqa: F401


INFO, WARNING = logging.INFO, logging.WARNING


def printable(text: str) -> str:
    """`text`, with what UTF-8 cannot encode (lone surrogates) as backslash escapes."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(error: BaseException) -> str:
    """``Type: message`` of `error` as printable text, even if its ``__str__`` raises."""
    try:
        message = str(error)
    except Exception:
        message = "<str() raised>"
    return printable(f"{type(error).__name__}: {message}")


def _plain(value: Any) -> Any:
    """`value` as ASCII text (any stream can write it), numbers as they are."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:
        text = f"<{type(value).__name__} that cannot be shown>"
    return text.encode("ascii", "backslashreplace").decode("ascii")


class SafeLogger:
    """perdure's own log lines: a line that cannot be rendered or written never raises.

    A log call sits inside actors and the supervisor; if it raised (a lone
    surrogate on a strict UTF-8 stream, a broken handler, a processor error),
    it would kill the actor and leave its callers waiting. A failed line is
    written again with every field as escaped ASCII text; if that fails too,
    it is dropped.
    """

    __slots__ = ("_fields", "_inner", "_stdlib")

    def __init__(self, name: str, **fields: Any) -> None:
        self._stdlib = logging.getLogger(name)
        self._fields = fields
        #: The structlog logger, built on the first line written (see the module docstring).
        self._inner: Any = None

    def bind(self, **fields: Any) -> SafeLogger:
        return SafeLogger(self._stdlib.name, **{**self._fields, **fields})

    def isEnabledFor(self, level: int) -> bool:
        return self._stdlib.isEnabledFor(level)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if not self._stdlib.isEnabledFor(_LEVELS[level]):
            return
        if self._inner is None and "structlog" not in sys.modules and not heard(self._stdlib.name):
            return  # no handler would get it: structlog is not loaded for it
        try:
            if self._inner is None:
                self._inner = get_logger(self._stdlib.name, **self._fields)
            # stacklevel: the record names perdure's caller, not this wrapper.
            getattr(self._inner, level)(event, stacklevel=3, **fields)
        except Exception:
            try:
                plain = {key: _plain(value) for key, value in fields.items()}
                getattr(self._inner, level)(_plain(event), **plain)
            except Exception:
                pass  # a log line is not worth an actor: drop it

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit("exception", event, fields)


@functools.cache
def _propagator() -> TraceContextTextMapPropagator:
    """The W3C trace-context propagator (OpenTelemetry loads on first use, not at import)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


@functools.cache
def _traceparent() -> re.Pattern[str]:
    """A W3C ``traceparent``: version, trace id, parent span id, flags (and more, after
    version 00). Compiled on first use, not at import."""
    return re.compile(r"^\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\s*$")


def tracing_loaded() -> bool:
    """Whether OpenTelemetry's API is loaded (or will load a provider from the environment):
    before that no tracer provider can have been configured, and no span be current."""
    return "opentelemetry.trace" in sys.modules or "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


class GlobalTracer:
    """The tracer of OpenTelemetry's global provider, looked up once OpenTelemetry is loaded.

    A `Runtime` without ``tracer_provider=`` holds one: creating it imports nothing;
    `resolve` gives the real tracer once the program has loaded OpenTelemetry (and
    maybe configured its SDK), None before. Its tracer is the API's, which follows a
    provider set later, as the runtime's tracer always did.
    """

    __slots__ = ("_name", "_tracer")

    def __init__(self, name: str) -> None:
        self._name = name
        self._tracer: Tracer | None = None

    def resolve(self) -> Tracer | None:
        if self._tracer is None and tracing_loaded():
            from opentelemetry import trace

            self._tracer = trace.get_tracer_provider().get_tracer(self._name)
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> Span:
        """`Tracer.start_span` of the real tracer (OpenTelemetry is loaded for it)."""
        import opentelemetry.trace  # noqa: F401 - what `resolve` looks for

        tracer = self.resolve()
        assert tracer is not None
        return tracer.start_span(*args, **kwargs)


class _UntracedContext:
    __slots__ = ("trace_id",)

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id


class Untraced:
    """A run's span while OpenTelemetry is not loaded: it records nothing, like the API's
    non-recording span, and keeps the trace its stored traceparent names (if valid)."""

    __slots__ = ("_context", "carrier")

    def __init__(self, parent: dict[str, str]) -> None:
        header = parent.get("traceparent")
        match = _traceparent().match(header) if isinstance(header, str) else None
        trace_id = 0
        #: What a propagator would inject for it (the parent's trace context, if valid).
        self.carrier: dict[str, str] = {}
        if match is not None:
            version, trace_hex, span_hex, flags, rest = match.groups()
            if (
                version != "ff"
                and not (version == "00" and rest)
                and int(trace_hex, 16)
                and int(span_hex, 16)
            ):
                trace_id = int(trace_hex, 16)
                self.carrier["traceparent"] = f"00-{trace_hex}-{span_hex}-{flags}"
                state = parent.get("tracestate")
                if isinstance(state, str) and state.strip():
                    self.carrier["tracestate"] = state
        self._context = _UntracedContext(trace_id)

    def is_recording(self) -> bool:
        return False

    def get_span_context(self) -> _UntracedContext:
        return self._context

    def end(self) -> None:
        pass


#: perdure's own log: run lifecycle, failed attempts, the supervisor and the scheduler. Call
#: sites on a run's path check ``logger.isEnabledFor(level)`` first: a disabled level is free.
logger = SafeLogger("perdure")


def caller_context() -> dict[str, str]:
    """The caller's current trace context as a carrier dict (empty if none)."""
    carrier: dict[str, str] = {}
    if "opentelemetry.trace" not in sys.modules:
        return carrier  # no span can be current: nothing has loaded OpenTelemetry
    _propagator().inject(carrier)
    return carrier


def start_run_span(
    tracer: Tracer, name: str, parent: dict[str, str], attributes: dict[str, Any]
) -> Span:
    """The run's span under the `parent` carrier (an `Untraced` one if OpenTelemetry is not
    loaded: a `GlobalTracer` that cannot resolve yet)."""
    if isinstance(tracer, GlobalTracer):
        resolved = tracer.resolve()
        if resolved is None:
            return Untraced(parent)  # type: ignore[return-value] # a Span to its callers
        tracer = resolved
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    ctx = _propagator().extract(parent) if parent else otel_context.Context()
    return tracer.start_span(name, context=ctx, kind=trace.SpanKind.INTERNAL, attributes=attributes)


def span_carrier(span: Span | Untraced) -> dict[str, str]:
    if isinstance(span, Untraced):
        return dict(span.carrier)
    carrier: dict[str, str] = {}
    from opentelemetry import trace

    _propagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def start_child_span(tracer: Tracer, parent: Span, name: str, attributes: dict[str, Any]) -> Span:
    from opentelemetry import trace

    return tracer.start_span(name, context=trace.set_span_in_context(parent), attributes=attributes)


def trace_id_hex(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def trace_id_of(span: Span | None) -> str | None:
    """The run's trace id for a log line, or None if the run has no span (yet)."""
    return None if span is None else trace_id_hex(span)


def end_span(span: Span | None, error: BaseException | None = None, message: str = "") -> None:
    if span is None or not span.is_recording():
        return
    from opentelemetry.trace import Status, StatusCode

    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, message or f"{type(error).__name__}: {error}"))
    elif message:
        span.set_status(Status(StatusCode.ERROR, message))
    span.end()
