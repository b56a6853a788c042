"""Event builders for tests of event logs (the contract suite and its neighbours)."""

from __future__ import annotations

from typing import Any

from perdure.eventlog import (
    Event,
    Interrupted,
    Resumed,
    RunStarted,
    TaskCompleted,
    TimerCancelled,
    TimerFired,
    TimerSet,
)


def started(
    run_id: str,
    seq: int = 0,
    *,
    ts: float = 1.0,
    target: str = "work",
    key: str | None = None,
    digest: str = "digest-0",
    input: Any = None,
) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        seq=seq,
        ts=ts,
        target=target,
        kind="function",
        input=input,
        input_digest=digest,
        idempotency_key=key,
    )


def done(run_id: str, seq: int, result: Any = None, *, ts: float = 2.0) -> TaskCompleted:
    return TaskCompleted(
        run_id=run_id,
        seq=seq,
        ts=ts,
        position=str(seq),
        name="step",
        input_digest="d",
        result=result,
    )


def timer(run_id: str, seq: int, timer_id: str, due: float) -> TimerSet:
    return TimerSet(
        run_id=run_id,
        seq=seq,
        ts=2.0,
        timer_id=timer_id,
        due_at=due,
        purpose="sleep",
        position="0",
    )


def fired(run_id: str, seq: int, timer_id: str) -> TimerFired:
    return TimerFired(run_id=run_id, seq=seq, ts=3.0, timer_id=timer_id)


def cancelled(run_id: str, seq: int, timer_id: str) -> TimerCancelled:
    return TimerCancelled(run_id=run_id, seq=seq, ts=3.0, timer_id=timer_id)


def interrupted(run_id: str, seq: int) -> Interrupted:
    return Interrupted(run_id=run_id, seq=seq, ts=2.0, position="0", interrupt_id="i", value="ok?")


def resumed(run_id: str, seq: int) -> Resumed:
    return Resumed(run_id=run_id, seq=seq, ts=2.5, interrupt_id="i", value="yes")


def steps(run_id: str, first_seq: int, count: int) -> list[Event]:
    return [done(run_id, first_seq + n, result=first_seq + n) for n in range(count)]
