"""Child processes of test_crash.py: a fork server whose children append until SIGKILLed.

Run as ``python _crash_child.py``: it imports perdure once, then serves
commands on stdin, one per line, answering on stdout:

- ``spawn STORE SEED RUNS OUT``: fork a child that opens the store, writes
  ``ready`` to the file OUT, and appends to RUNS runs forever, writing
  ``<run id> <last seq>`` to OUT after each `append` returns (acknowledged).
  Answers the child's pid.
- ``reap PID``: wait for that child; answers its exit code (-9 after SIGKILL).

Forking a process that has imported but never opened a store is safe, and
makes a kill cycle take milliseconds instead of a fresh interpreter's import.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import traceback

from perdure.eventlog import (
    Event,
    LmdbEventLog,
    RunStarted,
    TaskCompleted,
    TimerFired,
    TimerSet,
)


def track(pending: set[str], events: list[Event]) -> None:
    """Update the run's pending timer ids with `events`."""
    for event in events:
        if isinstance(event, TimerSet):
            pending.add(event.timer_id)
        elif isinstance(event, TimerFired):
            pending.discard(event.timer_id)


def next_event(run_id: str, at: int, rng: random.Random, pending: set[str]) -> Event:
    roll = rng.random()
    if roll < 0.2:
        return TimerSet(
            run_id=run_id,
            seq=at,
            ts=2.0,
            timer_id=f"t{at}",
            due_at=float(at),
            purpose="sleep",
            position=str(at),
        )
    if roll < 0.4 and pending:
        return TimerFired(run_id=run_id, seq=at, ts=3.0, timer_id=rng.choice(sorted(pending)))
    return TaskCompleted(
        run_id=run_id,
        seq=at,
        ts=2.0,
        position=str(at),
        name="step",
        input_digest="d",
        result="x" * rng.randint(0, 400),
    )


async def work(log: LmdbEventLog, run_id: str, rng: random.Random, out: int) -> None:
    events = await log.read(run_id)
    seq = len(events)
    pending: set[str] = set()
    track(pending, events)
    while True:
        batch: list[Event] = []
        if seq == 0:
            batch.append(
                RunStarted(
                    run_id=run_id,
                    seq=0,
                    ts=1.0,
                    target="crash",
                    kind="function",
                    input=None,
                    input_digest="d",
                )
            )
        planned = set(pending)
        for _ in range(rng.randint(1, 3)):
            event = next_event(run_id, seq + len(batch), rng, planned)
            track(planned, [event])
            batch.append(event)
        await log.append(run_id, seq, batch)
        seq += len(batch)
        pending = planned
        os.write(out, f"{run_id} {seq - 1}\n".encode())  # one write: never interleaved


async def appender(path: str, seed: int, runs: int, out: int) -> None:
    rng = random.Random(seed)
    log = LmdbEventLog(path)
    os.write(out, b"ready\n")
    await asyncio.gather(*(work(log, f"run-{n}", rng, out) for n in range(runs)))


def child(path: str, seed: int, runs: int, out_path: str) -> None:
    """In the forked child: never returns."""
    code = 0
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        asyncio.run(appender(path, seed, runs, out))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        command, *args = line.split()
        if command == "spawn":
            path, seed, runs, out = args
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                child(path, int(seed), int(runs), out)
            answer = pid
        elif command == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            answer = os.waitstatus_to_exitcode(status)
        else:
            raise SystemExit(f"unknown command {line!r}")
        sys.stdout.write(f"{answer}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
