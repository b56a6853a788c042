"""Tracing and logging around runs and attempts (OpenTelemetry spans, structlog context).

The run's span context is stored in its first event as a W3C ``traceparent``;
an actor rebuilt in another process starts its spans under that parent, so a
run resumed after a crash continues the same trace.
"""

from __future__ import annotations

from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator


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

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def bind(self, **fields: Any) -> SafeLogger:
        return SafeLogger(self._inner.bind(**fields))

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        try:
            getattr(self._inner, level)(event, **fields)
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


logger: Any = SafeLogger(structlog.get_logger("perdure"))
_propagator = TraceContextTextMapPropagator()


def caller_context() -> dict[str, str]:
    """The caller's current trace context as a carrier dict (empty if none)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def start_run_span(
    tracer: Tracer, name: str, parent: dict[str, str], attributes: dict[str, Any]
) -> Span:
    ctx = _propagator.extract(parent) if parent else otel_context.Context()
    return tracer.start_span(name, context=ctx, kind=trace.SpanKind.INTERNAL, attributes=attributes)


def span_carrier(span: Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def start_child_span(tracer: Tracer, parent: Span, name: str, attributes: dict[str, Any]) -> Span:
    return tracer.start_span(name, context=trace.set_span_in_context(parent), attributes=attributes)


def trace_id_hex(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def end_span(span: Span | None, error: BaseException | None = None, message: str = "") -> None:
    if span is None or not span.is_recording():
        return
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, message or f"{type(error).__name__}: {error}"))
    elif message:
        span.set_status(Status(StatusCode.ERROR, message))
    span.end()
