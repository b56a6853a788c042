"""No log line, encoding failure or unexpected crash may leave a caller waiting for ever.

A caller waits on a reply future that the run's actor answers. These tests make
the actor's environment fail where it used to strand callers: a log stream that
cannot write a line (an ASCII-only terminal, a non-ASCII run id), a handler
that raises half-way through a request, a supervisor that cannot restart a
crashed actor. Every caller must get an answer or a clear error, in seconds.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from perdure import Command, MemoryEventLog, Runtime, entrypoint, function, interrupt
from perdure.actors import RunActor
from perdure.errors import ActorCrashedError
from perdure.testing import MockClock

ANSWER_WITHIN = 10.0  # seconds: far more than any of these needs; a hang fails, not stalls


@function(name="robust_greet")
def robust_greet(name: str) -> str:
    return f"hello {name}"


@function(name="robust_fails", retries=1)
def robust_fails() -> str:
    raise ValueError("bad \ud800 input from a user")  # a message UTF-8 cannot encode


@entrypoint(name="robust_ask")
def robust_ask(question: str) -> Any:
    return interrupt(question)


class AsciiTerminal(io.StringIO):
    """A stream that can only write ASCII, as stdout under ``LANG=C`` (it raises otherwise)."""

    def write(self, text: str) -> int:
        text.encode("ascii")  # UnicodeEncodeError for anything else, as the real one
        return super().write(text)


class StrictHandler(logging.Handler):
    """A handler that raises when a line cannot be written (the stdlib's stream handlers
    swallow such errors; a host's own handler need not)."""

    def __init__(self, stream: AsciiTerminal) -> None:
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k == "run_id")
        self.stream.write(f"{record.getMessage()} {fields}\n")


@pytest.fixture
def ascii_only_log_stream() -> Iterator[AsciiTerminal]:
    """perdure's log lines go to a handler that raises on anything but ASCII."""
    stream = AsciiTerminal()
    handler = StrictHandler(stream)
    log = logging.getLogger("perdure")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)
        log.setLevel(old)


async def test_a_log_line_the_stream_cannot_write_does_not_strand_the_caller(
    ascii_only_log_stream: AsciiTerminal,
) -> None:
    # A valid run id that is not ASCII: the "run started" line cannot be written as is.
    async with Runtime(log=MemoryEventLog(), clock=MockClock()) as rt:
        result = await asyncio.wait_for(
            rt.run(robust_greet, {"name": "Zoë"}, run_id="commande-été-42"), ANSWER_WITHIN
        )
        assert result == "hello Zoë"
        assert (await rt.get_run("commande-été-42")) is not None
    # The line was written again, escaped, rather than lost.
    assert "commande-\\xe9t\\xe9-42" in ascii_only_log_stream.getvalue()


async def test_an_error_message_with_a_lone_surrogate_fails_the_attempt_not_the_actor() -> None:
    async with Runtime(log=MemoryEventLog(), clock=MockClock()) as rt:
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(rt.run(robust_fails, {}, run_id="sur-1"), ANSWER_WITHIN)
        assert type(caught.value).__name__ == "RunFailedError"
        assert "bad \\ud800 input" in str(caught.value)
        state = await rt.state("sur-1")
        assert state.status == "failed"
        assert state.error is not None and "\\ud800" in state.error.message
        assert rt.statistics().restarts == 0  # the actor never crashed


async def test_an_actor_that_crashes_on_a_request_fails_that_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Runtime(log=MemoryEventLog(), clock=MockClock(), idle_timeout=3600) as rt:
        await rt.start(robust_ask, "ok?", run_id="ask-1")
        assert (await rt.wait("ask-1")).status == "waiting"
        real = RunActor._resume
        crashes: list[int] = []

        def crash_once(self: RunActor, message: Any) -> None:
            if not crashes:
                crashes.append(1)
                raise RuntimeError("injected: the handler broke half-way")
            real(self, message)

        monkeypatch.setattr(RunActor, "_resume", crash_once)
        with pytest.raises(ActorCrashedError, match="crashed while handling this request") as err:
            await asyncio.wait_for(rt.resume("ask-1", "yes"), ANSWER_WITHIN)
        assert err.value.run_id == "ask-1"
        assert isinstance(err.value.__cause__, RuntimeError)
        # The run was rebuilt from its log and takes the same request again.
        await asyncio.wait_for(rt.send("ask-1", Command(resume="yes")), ANSWER_WITHIN)
        outcome = await asyncio.wait_for(rt.wait("ask-1"), ANSWER_WITHIN)
        assert (outcome.status, outcome.result) == ("completed", "yes")


async def test_requests_queued_behind_a_crashing_one_reach_the_next_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Runtime(log=MemoryEventLog(), clock=MockClock(), idle_timeout=3600) as rt:
        await rt.start(robust_ask, "ok?", run_id="ask-2")
        assert (await rt.wait("ask-2")).status == "waiting"
        real = RunActor._resume
        seen: list[Any] = []

        def crash_on_first(self: RunActor, message: Any) -> None:
            seen.append(message.value)
            if message.value == "poison":
                raise RuntimeError("injected: this request breaks the handler")
            real(self, message)

        monkeypatch.setattr(RunActor, "_resume", crash_on_first)
        # Both land in the mailbox before the actor runs: one batch.
        first = asyncio.ensure_future(rt.resume("ask-2", "poison"))
        second = asyncio.ensure_future(rt.resume("ask-2", "fine"))
        done = await asyncio.wait_for(
            asyncio.gather(first, second, return_exceptions=True), ANSWER_WITHIN
        )
        assert isinstance(done[0], ActorCrashedError)
        assert done[1] is None  # answered by the rebuilt actor
        assert seen == ["poison", "fine"]
        outcome = await asyncio.wait_for(rt.wait("ask-2"), ANSWER_WITHIN)
        assert (outcome.status, outcome.result) == ("completed", "fine")


async def test_a_supervisor_that_cannot_restart_an_actor_fails_its_waiters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Runtime(log=MemoryEventLog(), clock=MockClock(), idle_timeout=3600) as rt:
        await rt.start(robust_ask, "ok?", run_id="ask-3")
        assert (await rt.wait("ask-3")).status == "waiting"

        def broken_restart(run_id: str) -> None:
            raise RuntimeError("injected: restart bookkeeping failed")

        def crash(self: RunActor, message: Any) -> None:
            raise RuntimeError("injected: the handler broke")

        supervisor = rt._supervisor
        assert supervisor is not None
        monkeypatch.setattr(supervisor, "_on_restart", broken_restart)
        monkeypatch.setattr(RunActor, "_resume", crash)
        requests = [asyncio.ensure_future(rt.resume("ask-3", v)) for v in ("first", "second")]
        results = await asyncio.wait_for(
            asyncio.gather(*requests, return_exceptions=True), ANSWER_WITHIN
        )
        assert all(isinstance(r, ActorCrashedError) for r in results), results
        # The first broke the actor; the second, queued behind it, met no successor.
        assert "crashed while handling this request" in str(results[0])
        assert "could not be restarted" in str(results[1])
        # The run is intact: a later request rebuilds it from its log.
        monkeypatch.undo()
        await asyncio.wait_for(rt.resume("ask-3", "third"), ANSWER_WITHIN)
        outcome = await asyncio.wait_for(rt.wait("ask-3"), ANSWER_WITHIN)
        assert (outcome.status, outcome.result) == ("completed", "third")
