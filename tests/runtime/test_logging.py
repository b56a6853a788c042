"""perdure logs through the standard library: silent by default, the host's configuration decides.

A library prints nothing of its own accord. perdure's records go to
``logging.getLogger("perdure...")`` with their fields (run_id, attempt,
trace_id, target, ...) as record attributes, so caplog and any stdlib handler
see them; `ctx.logger` is a full logger. The CLI and the demo configure their
own console output (tests/cli covers them).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perdure import FunctionContext, MemoryEventLog, RetryPolicy, Runtime, function
from perdure.testing import MockClock

FAST = RetryPolicy(max_attempts=3, initial_interval_ms=10, max_interval_ms=10)

LIBRARY_USER = textwrap.dedent(
    """
    import asyncio, sys
    from perdure import (
        FunctionContext, RetryPolicy, Runtime, entrypoint, function, task,
    )

    @function(retries=RetryPolicy(max_attempts=3, initial_interval_ms=1))
    def flaky(ctx: FunctionContext) -> int:
        ctx.log("trying", attempt=ctx.attempt)
        ctx.logger.warning("careful")
        if ctx.attempt < 2:
            raise ConnectionError("down")
        return ctx.attempt

    @task
    def double(x: int) -> int:
        return 2 * x

    @entrypoint()
    def flow(x: int) -> int:
        return double(x).result()

    async def main() -> None:
        async with Runtime(path=sys.argv[1]) as rt:
            assert await rt.run(flaky) == 2
            assert await rt.run(flow, 21) == 42

    asyncio.run(main())
    """
)


def _run_program(tmp_path: Path, program: str) -> subprocess.CompletedProcess[str]:
    """Run `program` (its argument: a store folder) in a fresh process; it must succeed."""
    script = tmp_path / "program.py"
    script.write_text(program, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def _prints_nothing(tmp_path: Path, program: str) -> None:
    """`program` succeeds without writing a byte to stdout or stderr."""
    done = _run_program(tmp_path, program)
    assert (done.stdout, done.stderr) == ("", "")


def test_a_program_using_perdure_as_a_library_prints_nothing(tmp_path: Path) -> None:
    """Two runs, failed attempts, user logs at info and warning: not one byte of output."""
    _prints_nothing(tmp_path, LIBRARY_USER)


QUIET_USER = textwrap.dedent(
    """
    import asyncio, sys
    from perdure import Command, Runtime, entrypoint, function, interrupt, task

    @function(name="quiet_fn")
    def quiet_fn(x: int) -> int:
        return x

    @task(name="quiet_task")
    async def quiet_task(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return 2 * x

    @entrypoint(name="quiet_flow")
    async def quiet_flow(x: int) -> int:
        return await quiet_task(x) + interrupt("more?")

    async def main() -> None:
        cfg = {"configurable": {"thread_id": "t1"}}
        async with Runtime(path=sys.argv[1]) as rt:
            assert await rt.run(quiet_fn, {"x": 3}) == 3
            await quiet_flow.ainvoke(1, cfg)
            assert await quiet_flow.ainvoke(Command(resume=1), cfg) == 3
            try:
                await quiet_flow.ainvoke(-1, {"configurable": {"thread_id": "t2"}})
            except Exception:
                pass
        assert "structlog" not in sys.modules, "loaded for records nobody receives"

    asyncio.run(main())
    """
)


def test_a_program_that_configures_no_logging_never_loads_structlog(tmp_path: Path) -> None:
    """Runs, an interrupt, a resume and a failed task: with perdure's records going nowhere
    structlog (~70 ms with rich) is not imported, and nothing is printed."""
    _prints_nothing(tmp_path, QUIET_USER)


def test_logging_configured_after_the_runtime_is_created_gets_the_attempts_fields(
    tmp_path: Path,
) -> None:
    """A handler added once the runtime exists (structlog not loaded yet) still gets the
    records, the attempt's context (trace id, attempt) merged into `ctx.log`'s."""
    done = _run_program(
        tmp_path,
        textwrap.dedent(
            """
            import asyncio, logging, sys
            from perdure import FunctionContext, Runtime, function

            @function(name="late_log")
            def late_log(ctx: FunctionContext) -> int:
                ctx.log("inside")
                return 1

            async def main() -> None:
                runtime = Runtime(path=sys.argv[1])
                assert "structlog" not in sys.modules
                logging.basicConfig(
                    level=logging.INFO, format="%(name)s %(message)s %(trace_id)s %(attempt)s"
                )
                async with runtime as rt:
                    assert await rt.run(late_log) == 1

            asyncio.run(main())
            """
        ),
    )
    assert f"perdure.function inside {'0' * 32} 0" in done.stderr.splitlines(), done.stderr


def test_with_logging_configured_the_same_program_shows_perdure_records(tmp_path: Path) -> None:
    done = _run_program(
        tmp_path,
        "import logging\nlogging.basicConfig(level=logging.INFO, format="
        "'%(levelname)s %(name)s %(message)s %(run_id)s')\n" + LIBRARY_USER,
    )
    lines = [line.rsplit(" ", 1)[0] for line in done.stderr.splitlines()]
    assert lines.count("INFO perdure run started") == 2
    assert lines.count("WARNING perdure attempt failed") == 2
    assert lines.count("INFO perdure.function trying") == 3
    assert lines.count("WARNING perdure.function careful") == 3
    assert done.stdout == ""


async def test_caplog_sees_perdure_records_with_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @function(name="log_fields", retries=FAST)
    async def log_fields(ctx: FunctionContext) -> str:
        ctx.log("working", step="fetch")
        if ctx.attempt == 0:
            raise ConnectionError("refused")
        return "ok"

    caplog.set_level(logging.INFO, logger="perdure")
    async with Runtime(log=MemoryEventLog(), clock=MockClock()) as rt:
        handle = await rt.start(log_fields)
        assert await handle.result() == "ok"

    ours = [r for r in caplog.records if getattr(r, "run_id", None) == handle.run_id]
    by_message = {(r.name, r.getMessage(), getattr(r, "attempt", None)): r for r in ours}
    assert sorted(by_message) == [
        ("perdure", "attempt failed", 0),
        ("perdure", "run settled", None),
        ("perdure", "run started", None),
        ("perdure.function", "working", 0),
        ("perdure.function", "working", 1),
    ]
    failed = by_message["perdure", "attempt failed", 0]
    assert failed.levelno == logging.WARNING
    assert failed.error == "ConnectionError: refused"  # type: ignore[attr-defined]
    assert failed.target == "log_fields"  # type: ignore[attr-defined]
    assert failed.task == "log_fields"  # type: ignore[attr-defined]
    settled = by_message["perdure", "run settled", None]
    assert settled.status == "completed"  # type: ignore[attr-defined]
    trace_ids = set()
    for record in ours:
        trace_id = record.trace_id  # type: ignore[attr-defined]
        assert isinstance(trace_id, str) and len(trace_id) == 32
        trace_ids.add(trace_id)
    assert len(trace_ids) == 1
    working = by_message["perdure.function", "working", 1]
    assert (working.step, working.function, working.target) == (  # type: ignore[attr-defined]
        "fetch",
        "log_fields",
        "log_fields",
    )
    # The record points at the caller, not at structlog's or perdure's internals.
    assert (working.funcName, Path(working.pathname).name) == ("log_fields", "test_logging.py")


async def test_the_hosts_levels_decide(caplog: pytest.LogCaptureFixture) -> None:
    """perdure at WARNING: no info records at all; the function's logger has its own level."""

    @function(name="log_levels")
    async def log_levels(ctx: FunctionContext) -> None:
        ctx.logger.info("user info")

    caplog.set_level(logging.WARNING, logger="perdure")
    caplog.set_level(logging.INFO, logger="perdure.function")
    async with Runtime(log=MemoryEventLog(), clock=MockClock()) as rt:
        await rt.run(log_levels)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("perdure.function", "user info")]


async def test_ctx_logger_is_a_full_logger(caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, bool] = {}

    @function(name="log_full")
    async def log_full(ctx: FunctionContext) -> None:
        seen["info"] = ctx.logger.isEnabledFor(logging.INFO)
        seen["debug"] = ctx.logger.isEnabledFor(logging.DEBUG)
        ctx.logger.debug("not shown")
        ctx.logger.log(logging.INFO, "at %s", "info", name="a field called name")
        try:
            raise KeyError("missing")
        except KeyError:
            ctx.logger.exception("lookup failed")

    caplog.set_level(logging.INFO, logger="perdure.function")
    async with Runtime(log=MemoryEventLog(), clock=MockClock()) as rt:
        await rt.run(log_full)
    assert seen == {"info": True, "debug": False}
    at_info, failed = caplog.records
    assert at_info.getMessage() == "at info"
    assert at_info.name == "perdure.function"  # the record's own name is kept...
    assert at_info.name_ == "a field called name"  # type: ignore[attr-defined]  # ...the field renamed
    assert failed.levelno == logging.ERROR
    assert failed.exc_info is not None and failed.exc_info[0] is KeyError
    assert failed.funcName == "log_full"


async def test_each_task_attempt_sees_its_own_fields_in_structlog_context() -> None:
    """Code in a task (sync, run inline, or async) finds the attempt's fields bound in
    structlog's context, fresh for each step (the bind reuses structlog's variables)."""
    import structlog.contextvars

    from perdure import entrypoint, task

    seen: list[dict[str, object]] = []

    @task(name="ctx_sync")
    def ctx_sync(i: int) -> int:
        seen.append(structlog.contextvars.get_contextvars())
        return i

    @task(name="ctx_async")
    async def ctx_async(i: int) -> int:
        seen.append(structlog.contextvars.get_contextvars())
        return i

    @entrypoint(name="ctx_flow")
    async def ctx_flow(n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx_async(i)
        return total

    @entrypoint(name="ctx_sync_flow")
    def ctx_sync_flow(n: int) -> int:
        return sum(ctx_sync(i).result() for i in range(n))

    async with Runtime(log=MemoryEventLog(), clock=MockClock()):
        await ctx_flow.ainvoke(2, {"configurable": {"thread_id": "ctx-a"}})
        await ctx_sync_flow.ainvoke(2, {"configurable": {"thread_id": "ctx-s"}})
    assert [(s["run_id"], s["target"], s["task"], s["attempt"]) for s in seen] == [
        ("ctx-a", "ctx_flow", "ctx_async", 0),
        ("ctx-a", "ctx_flow", "ctx_async", 0),
        ("ctx-s", "ctx_sync_flow", "ctx_sync", 0),
        ("ctx-s", "ctx_sync_flow", "ctx_sync", 0),
    ]
    trace_ids = [s["trace_id"] for s in seen]
    assert all(isinstance(t, str) and len(t) == 32 for t in trace_ids)
    assert trace_ids[0] == trace_ids[1] and trace_ids[2] == trace_ids[3]
