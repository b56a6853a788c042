"""Messages to a run from another process, and waits on a run another process drives
(real processes on one PostgreSQL store)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from perdure import Runtime, entrypoint, interrupt
from perdure.eventlog import Resumed
from perdure.runtime import Registry

CHILD = Path(__file__).resolve().parent / "_inbox_child.py"


def _spawn(url: str, run_id: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, run_id, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _line(proc: subprocess.Popen[str], *starts: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while line and not line.startswith(starts):  # skip log lines
        line = proc.stdout.readline()
    return line.strip()


def _finish(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.returncode is not None:
            continue
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(120)
def test_a_resume_from_another_process_reaches_the_driver_and_its_wait_returns(
    pg_store: str,
) -> None:
    a = _spawn(pg_store, "inbox-run-1", "drive")
    b = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        b = _spawn(pg_store, "inbox-run-1", "resume")  # b has no code for the run
        # A applied the resume and finished the run; b's wait returned A's result.
        assert _line(b, "result", "error") == f"result completed A-1 yes by {a.pid}"
        out, _ = a.communicate(timeout=30)
        assert "lost 0" in out.splitlines()  # A kept the run throughout
    finally:
        _finish(*(p for p in (a, b) if p is not None))


@pytest.mark.timeout(120)
def test_a_cancel_from_another_process_reaches_the_driver(pg_store: str) -> None:
    a = _spawn(pg_store, "inbox-run-2", "drive")
    b = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        b = _spawn(pg_store, "inbox-run-2", "cancel")
        assert _line(b, "result", "error").startswith("error RunCancelledError")
    finally:
        _finish(*(p for p in (a, b) if p is not None))


@pytest.mark.timeout(120)
def test_continue_run_from_another_process_reaches_the_driver(pg_store: str) -> None:
    a = _spawn(pg_store, "inbox-run-3", "drive")
    b = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        b = _spawn(pg_store, "inbox-run-3", "cancel-continue")
        assert _line(b, "cancelled", "error") == "cancelled cancelled"
        # Reopened where A drives it (before, b's continue_run tried to drive the run
        # itself and failed: another process holds the lease).
        assert _line(b, "continued", "error") == "continued waiting"
        assert _line(b, "result", "error") == f"result completed A-1 yes by {a.pid}"
        out, _ = a.communicate(timeout=30)
        assert "lost 0" in out.splitlines()
    finally:
        _finish(*(p for p in (a, b) if p is not None))


@pytest.mark.timeout(120)
def test_a_message_whose_taker_died_before_applying_it_is_applied_by_the_next_driver(
    pg_store: str,
) -> None:
    a = _spawn(pg_store, "inbox-run-4", "drive-die")
    b = c = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        c = _spawn(pg_store, "inbox-run-4", "serve")  # has the code: takes the run over
        assert _line(c, "serving") == "serving"
        b = _spawn(pg_store, "inbox-run-4", "resume")
        a.wait(timeout=60)  # (its standard input stays open: only the kill ends it)
        a.communicate()
        assert a.returncode == -9  # it took the resume, and died before applying it
        # C took the run over when A's lease expired, found the message A had taken but
        # never answered, applied it, and answered B (before, the message was gone).
        assert _line(b, "result", "error") == f"result completed A-1 yes by {c.pid}"
        b.communicate(timeout=30)
        c.communicate("", timeout=30)
    finally:
        _finish(*(p for p in (a, b, c) if p is not None))


REG = Registry()


@entrypoint(registry=REG, name="inbox_two_questions")
def two_questions(topic: str) -> dict[str, Any]:
    first = interrupt(f"first about {topic}?")
    second = interrupt(f"second about {topic}?")
    return {"first": first, "second": second}


async def _queue_as_if_taken_by_a_dead_process(
    url: str, run_id: str, message: dict[str, Any]
) -> None:
    """What a process that took `message` and died before removing it leaves in the inbox."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO perdure.inbox (run_id, message, taken_by) VALUES (%s, %s, %s)",
            (run_id, Jsonb(message), "gone-host:1:dead"),
        )


@pytest.mark.timeout(60)
async def test_a_resume_applied_by_a_process_that_died_is_not_applied_again(pg_store: str) -> None:
    # The dead taker wrote the answer to the first question (with the message's token) but
    # died before it removed the message; the process that takes the run over finds the
    # message in the inbox again. Applied again, it answered the *second* question with the
    # first one's value.
    message = {"kind": "resume", "value": "yes", "token": "t-dead-taker"}
    async with Runtime(pg_store, registry=REG) as runtime:
        paused = await runtime.run("inbox_two_questions", "doc", run_id="inbox-dup")
        assert paused["__interrupt__"][0].value == "first about doc?"
        for _ in range(2):  # the first taken and applied here, then found again
            await _queue_as_if_taken_by_a_dead_process(pg_store, "inbox-dup", message)
            await runtime.log.notify("inbox", "inbox-dup")  # type: ignore[attr-defined]
            for _ in range(500):  # until this process took and removed it
                async with await psycopg.AsyncConnection.connect(pg_store) as conn:
                    cur = await conn.execute("SELECT count(*) FROM perdure.inbox")
                    row = await cur.fetchone()
                if row is not None and row[0] == 0:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the inbox message was never applied")
        events = await runtime.log.read("inbox-dup")
        answers = [e for e in events if isinstance(e, Resumed)]
        assert [(a.value, a.token) for a in answers] == [("yes", "t-dead-taker")]
        assert await runtime.status("inbox-dup") == "waiting"  # at the second question
        await runtime.resume("inbox-dup", "no")
        assert (await runtime.wait("inbox-dup")).unwrap() == {"first": "yes", "second": "no"}


BODIES: list[str] = []


@entrypoint(registry=REG, name="inbox_always_fails")
def always_fails(topic: str) -> str:
    BODIES.append(topic)
    raise RuntimeError(f"{topic} fails")


async def _applied(url: str) -> None:
    """Wait until this process took the inbox's messages and removed them."""
    for _ in range(500):
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT count(*) FROM perdure.inbox")
            row = await cur.fetchone()
        if row is not None and row[0] == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the inbox message was never applied")


@pytest.mark.timeout(60)
async def test_a_continue_applied_by_a_process_that_died_is_not_applied_again(
    pg_store: str,
) -> None:
    # A `continue_run` from another process reached the run's driver, which continued the
    # run and died before it removed the message; the run failed again meanwhile. The
    # process that takes the run over finds the message in the inbox again: applied again,
    # it reopened the run a second time (a continue asked for once, done twice).
    from perdure.eventlog import RunContinued

    BODIES.clear()
    message = {"kind": "continue", "strict": True, "token": "t-dead-continue"}
    async with Runtime(pg_store, registry=REG) as runtime:
        handle = await runtime.start("inbox_always_fails", "doc", run_id="inbox-cont")
        with pytest.raises(Exception, match="doc fails"):
            await handle.result()
        for _ in range(2):  # the first taken and applied here, then found again
            await _queue_as_if_taken_by_a_dead_process(pg_store, "inbox-cont", message)
            await runtime.log.notify("inbox", "inbox-cont")  # type: ignore[attr-defined]
            await _applied(pg_store)
            with pytest.raises(Exception, match="doc fails"):
                await handle.result()
        events = await runtime.log.read("inbox-cont")
        continued = [e for e in events if isinstance(e, RunContinued)]
        assert [c.token for c in continued] == ["t-dead-continue"]
        assert await runtime.status("inbox-cont") == "failed"
        assert len(BODIES) == 2  # the first run and the one continue
