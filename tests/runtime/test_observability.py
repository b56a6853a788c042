"""OpenTelemetry spans (injected provider, in-memory exporter) and structlog correlation ids.

A run has a span; each attempt has a child span with an error status when it
fails. The run's trace context is stored in its `RunStarted` event, so a run
resumed by a new runtime — after a clean stop or a SIGKILL — continues the
same trace.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from perdure import FunctionContext, LmdbEventLog, RetryPolicy, Runtime, function
from perdure.errors import RunFailedError
from perdure.eventlog import RunStarted
from perdure.testing import MemoryEventLog, MockClock

FAST = RetryPolicy(max_attempts=3, initial_interval_ms=10, max_interval_ms=10)


class Tracing:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]


@pytest.fixture
def tracing() -> Tracing:
    return Tracing()


def trace_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


@function(name="obs_flaky", retries=FAST)
async def obs_flaky(ctx: FunctionContext) -> str:
    ctx.log("working")
    if ctx.attempt < 2:
        raise ConnectionError(f"refused {ctx.attempt}")
    return "ok"


@function(name="obs_doomed", retries=2)
async def obs_doomed() -> None:
    raise PermissionError("forbidden")


async def test_a_span_per_run_and_a_child_span_per_attempt(
    tracing: Tracing, memlog: MemoryEventLog, logs: Any
) -> None:
    async with Runtime(log=memlog, clock=MockClock(), tracer_provider=tracing.provider) as rt:
        handle = await rt.start(obs_flaky)
        assert await handle.result() == "ok"

    (run_span,) = tracing.spans("perdure.run")
    assert run_span.name == "perdure.run obs_flaky"
    assert run_span.kind is SpanKind.INTERNAL
    assert run_span.attributes is not None
    assert run_span.attributes["perdure.run_id"] == handle.run_id
    assert run_span.status.status_code is not StatusCode.ERROR

    attempts = sorted(tracing.spans("perdure.task"), key=lambda s: s.start_time or 0)
    assert [s.name for s in attempts] == ["perdure.task obs_flaky"] * 3
    assert [s.attributes["perdure.attempt"] for s in attempts if s.attributes] == [0, 1, 2]
    for span in attempts:
        assert span.parent is not None and run_span.context is not None
        assert span.parent.span_id == run_span.context.span_id
        assert trace_hex(span) == trace_hex(run_span)
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert attempts[0].status.description == "ConnectionError: refused 0"
    (exception,) = [e for e in attempts[0].events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert not [e for e in attempts[2].events if e.name == "exception"]

    # structlog entries of the run carry the same trace id as its spans.
    assert {e["trace_id"] for e in logs.find("working")} == {trace_hex(run_span)}


async def test_a_failed_run_has_an_error_status(tracing: Tracing, memlog: MemoryEventLog) -> None:
    async with Runtime(log=memlog, clock=MockClock(), tracer_provider=tracing.provider) as rt:
        with pytest.raises(RunFailedError):
            await rt.run(obs_doomed)
    (run_span,) = tracing.spans("perdure.run")
    assert run_span.status.status_code is StatusCode.ERROR
    assert "PermissionError: forbidden" in (run_span.status.description or "")
    assert [s.status.status_code for s in tracing.spans("perdure.task")] == [StatusCode.ERROR] * 2


async def test_the_trace_context_is_stored_in_run_started(
    tracing: Tracing, memlog: MemoryEventLog
) -> None:
    async with Runtime(log=memlog, clock=MockClock(), tracer_provider=tracing.provider) as rt:
        handle = await rt.start(obs_flaky)
        await handle.result()
    (started,) = [e for e in await memlog.read(handle.run_id) if isinstance(e, RunStarted)]
    (run_span,) = tracing.spans("perdure.run")
    assert run_span.context is not None
    version, trace_id, span_id, _flags = started.trace_context["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        trace_hex(run_span),
        format(run_span.context.span_id, "016x"),
    )


async def test_the_callers_span_is_the_parent_of_the_run(
    tracing: Tracing, memlog: MemoryEventLog
) -> None:
    tracer = tracing.provider.get_tracer("test-app")
    async with Runtime(log=memlog, clock=MockClock(), tracer_provider=tracing.provider) as rt:
        with tracer.start_as_current_span("POST /summarize") as request:
            await rt.run(obs_flaky)
    (run_span,) = tracing.spans("perdure.run")
    assert run_span.parent is not None
    assert run_span.parent.span_id == request.get_span_context().span_id
    assert run_span.context is not None
    assert run_span.context.trace_id == request.get_span_context().trace_id


def test_runs_of_separate_calls_have_separate_traces(tracing: Tracing) -> None:
    async def go() -> None:
        async with Runtime(
            log=MemoryEventLog(), clock=MockClock(), tracer_provider=tracing.provider
        ) as rt:
            await rt.run(obs_flaky)
            await rt.run(obs_flaky)

    asyncio.run(go())
    assert len({trace_hex(s) for s in tracing.spans("perdure.run")}) == 2


gate: dict[str, asyncio.Event] = {}


@function(name="obs_blocking")
async def obs_blocking(ctx: FunctionContext) -> dict[str, Any]:
    if ctx.attempt == 0 and "first" in gate:
        await gate["first"].wait()  # the first runtime stops while this waits
    return {"attempt": ctx.attempt}


async def test_a_run_resumed_by_a_new_runtime_continues_the_same_trace(tmp_path: Path) -> None:
    store = tmp_path / "obs-store"
    first_tracing, second_tracing = Tracing(), Tracing()
    gate["first"] = asyncio.Event()
    try:
        async with Runtime(
            path=store, clock=MockClock(), tracer_provider=first_tracing.provider
        ) as rt:
            handle = await rt.start(obs_blocking)
            await asyncio.sleep(0.05)
    finally:
        del gate["first"]
    (original,) = first_tracing.spans("perdure.run")

    async with Runtime(
        path=store, clock=MockClock(), tracer_provider=second_tracing.provider
    ) as rt:
        assert (await rt.wait(handle.run_id)).unwrap() == {"attempt": 0}
    resumed_runs = second_tracing.spans("perdure.run")
    assert [s.name for s in resumed_runs] == ["perdure.run obs_blocking (resumed)"]
    assert trace_hex(resumed_runs[0]) == trace_hex(original)
    for span in second_tracing.spans("perdure.task"):
        assert trace_hex(span) == trace_hex(original)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import structlog
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from opentelemetry.sdk.trace import TracerProvider
    from perdure import FunctionContext, Runtime, function

    @function(name="obs_killed")
    async def obs_killed(ctx: FunctionContext) -> int:
        print("ATTEMPT", ctx.attempt, flush=True)
        await asyncio.Event().wait()  # blocks until the process is killed

    async def main() -> None:
        # A service with tracing configured (spans go nowhere here: the child is killed).
        async with Runtime(path=sys.argv[1], tracer_provider=TracerProvider()) as rt:
            handle = await rt.start(obs_killed)
            print("RUN", handle.run_id, flush=True)
            await handle.result()

    asyncio.run(main())
    """
)


@function(name="obs_killed")
async def obs_killed(ctx: FunctionContext) -> int:
    return ctx.attempt


async def test_a_run_resumed_after_sigkill_continues_the_same_trace(tmp_path: Path) -> None:
    store = tmp_path / "obs-killed"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        os.fspath(script),
        os.fspath(store),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        lines: list[str] = []
        # The attempt may begin before start() returns: wait for both lines.
        while not (
            any(line.startswith("ATTEMPT 0") for line in lines)
            and any(line.startswith("RUN") for line in lines)
        ):
            line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode()
            assert line, f"child exited early (code {child.returncode}): {lines}"
            lines.append(line)
        run_id = next(line.split()[1] for line in lines if line.startswith("RUN"))
        await asyncio.sleep(0.1)  # let the attempt start reach the log
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()

    tracing = Tracing()
    log = LmdbEventLog(store)
    try:
        async with Runtime(log=log, clock=MockClock(), tracer_provider=tracing.provider) as rt:
            # Attempt 0 died with its process: it is recorded as lost, attempt 1 runs here.
            assert (await rt.wait(run_id)).unwrap() == 1
            (started,) = [e for e in await log.read(run_id) if isinstance(e, RunStarted)]
    finally:
        await log.close()
    stored_trace = started.trace_context["traceparent"].split("-")[1]
    (resumed,) = tracing.spans("perdure.run")
    assert trace_hex(resumed) == stored_trace
    assert resumed.parent is not None
    assert (
        format(resumed.parent.span_id, "016x") == started.trace_context["traceparent"].split("-")[2]
    )
    assert {trace_hex(s) for s in tracing.spans("perdure.task")} == {stored_trace}


def _run_child(code: str) -> str:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_process_that_traces_nothing_never_loads_opentelemetry() -> None:
    """Without a tracer provider given or OpenTelemetry loaded, runs (started, resumed,
    finished) leave OpenTelemetry unimported: ~10 ms a short-lived process need not pay."""
    out = _run_child(
        """
        import asyncio, sys
        from perdure import Command, MemoryEventLog, Runtime, entrypoint, interrupt, task

        @task(name="quiet_step")
        async def step(i: int) -> int:
            return i

        @entrypoint(name="quiet_wf")
        async def wf(n: int) -> int:
            total = await step(n)
            return total + interrupt("go?")

        async def main() -> None:
            cfg = {"configurable": {"thread_id": "q1"}}
            async with Runtime(log=MemoryEventLog()):
                await wf.ainvoke(1, cfg)
                print(await wf.ainvoke(Command(resume=2), cfg))

        asyncio.run(main())
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert out.split() == ["3", "[]"], out


def test_the_global_provider_configured_after_the_runtime_is_created_traces_runs() -> None:
    """A runtime without ``tracer_provider=`` follows OpenTelemetry's global provider, even
    one the program sets after creating the runtime (the API's proxy behaviour)."""
    out = _run_child(
        """
        import asyncio
        from perdure import Runtime, function
        from perdure.testing import MemoryEventLog

        @function(name="late_traced")
        async def late_traced() -> int:
            return 7

        runtime = Runtime(log=MemoryEventLog())  # before OpenTelemetry is configured

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        async def main() -> None:
            async with runtime as rt:
                assert await rt.run(late_traced) == 7

        asyncio.run(main())
        print(sorted({s.name for s in exporter.get_finished_spans()}))
        """
    )
    assert "perdure.run late_traced" in out and "perdure.task late_traced" in out, out


@pytest.mark.parametrize(
    "parent",
    [
        {},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            "tracestate": "congo=t61rcWkgMzE",
        },
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"},
        {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
        {"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"},
        {"traceparent": "garbage"},
    ],
)
def test_an_untraced_run_span_is_what_the_api_gives_without_a_provider(
    parent: dict[str, str],
) -> None:
    """Without OpenTelemetry loaded a run's span is perdure's `Untraced`: the same trace
    id (for log lines) and stored carrier as the API's no-op tracer gives."""
    from opentelemetry.trace import NoOpTracerProvider

    from perdure.actors import GlobalTracer
    from perdure.actors._observe import Untraced, span_carrier, start_run_span, trace_id_hex

    api = start_run_span(NoOpTracerProvider().get_tracer("perdure"), "run", parent, {})
    ours = Untraced(parent)
    assert trace_id_hex(ours) == trace_id_hex(api)  # type: ignore[arg-type]
    assert span_carrier(ours) == span_carrier(api)
    assert not ours.is_recording()
    # Here OpenTelemetry is loaded: a global tracer resolves to the API's.
    assert not isinstance(start_run_span(GlobalTracer("perdure"), "run", parent, {}), Untraced)  # type: ignore[arg-type]
