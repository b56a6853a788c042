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

logger: Any = structlog.get_logger("perdure")
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
