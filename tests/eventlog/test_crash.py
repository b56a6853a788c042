"""SIGKILL loop: no acknowledged event is ever lost, and the store stays consistent.

A child (`_crash_child.py`) appends to several runs through `LmdbEventLog` and
prints every acknowledged (run, seq); the parent kills it at a random moment,
checks the store, and starts the next child on the same store. Set
PERDURE_CRASH_SEED to replay a failing seed (timing still varies a little).

SIGKILL cannot tell fsync from no fsync (the page cache survives the process);
this proves process-crash durability of the real write path, including
commits interrupted at any point.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perdure.eventlog import Event, LmdbEventLog, TimerEntry, TimerFired, TimerSet

CHILD = Path(__file__).with_name("_crash_child.py")
KILLS = 50
RUNS = 8


class ForkServer:
    """Drives `_crash_child.py`: spawns appenders, and reaps them after the kill."""

    def __init__(self, errors: Path) -> None:
        with errors.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self.errors = errors

    def ask(self, line: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            pytest.fail(f"the fork server died: {self.errors.read_text()}")
        return int(answer)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()


def wait_for_lines(out: Path, count: int, server: ForkServer, context: str) -> None:
    """Wait until the child wrote `count` lines (``ready`` is the first)."""
    deadline = time.monotonic() + 20
    while not (out.exists() and out.read_bytes().count(b"\n") >= count):
        if time.monotonic() > deadline:
            pytest.fail(f"{context}: the child stalled: {server.errors.read_text()}")
        time.sleep(0.0005)


def acknowledged(out: Path) -> dict[str, int]:
    """Highest acknowledged seq per run; a line cut by the kill is ignored."""
    acked: dict[str, int] = {}
    for line in out.read_bytes().split(b"\n")[:-1]:
        if line != b"ready":
            run_id, seq = line.decode().split()
            acked[run_id] = max(acked.get(run_id, -1), int(seq))
    return acked


def pending_timers(run_id: str, events: list[Event]) -> list[TimerEntry]:
    pending: dict[str, float] = {}
    for event in events:
        if isinstance(event, TimerSet):
            pending[event.timer_id] = event.due_at
        elif isinstance(event, TimerFired):
            pending.pop(event.timer_id, None)
    return [TimerEntry(due_at=d, run_id=run_id, timer_id=t) for t, d in pending.items()]


async def check_store(store: Path, acked: dict[str, int], context: str) -> int:
    """Every acknowledged event is there; streams are contiguous, decode, and match the indexes."""
    log = LmdbEventLog(store, read_only=True)
    try:
        stored = {r.run_id for r in await log.list_runs()}
        assert stored >= set(acked), f"{context}: runs missing: {set(acked) - stored}"
        total = 0
        timers: list[TimerEntry] = []
        for run_id in sorted(stored):
            events = await log.read(run_id)  # CorruptEventError on a bad checksum or a gap
            assert [e.seq for e in events] == list(range(len(events))), context
            last = acked.get(run_id, -1)
            assert len(events) > last, f"{context}: {run_id} lost acknowledged seq {last}"
            info = await log.get_run(run_id)
            assert info is not None and info.next_seq == len(events), context
            timers += pending_timers(run_id, events)
            total += len(events)
        assert sorted(timers) == await log.due_timers(float("inf"), limit=10_000), context
        assert (await log.statistics()).events == total, context
        return total
    finally:
        await log.close()


def test_sigkill_at_random_moments_loses_no_acknowledged_event(tmp_path: Path) -> None:
    seed = int(os.environ.get("PERDURE_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    store = tmp_path / "store"
    acked: dict[str, int] = {}
    kills_with_acks = 0
    server = ForkServer(tmp_path / "errors.txt")
    try:
        for kill in range(KILLS):
            context = f"PERDURE_CRASH_SEED={seed}, kill {kill}"
            out = tmp_path / f"out-{kill}"
            pid = server.ask(f"spawn {store} {rng.randrange(2**32)} {RUNS} {out}")
            # A fifth of the kills land during start-up; the rest while appends are
            # flowing (after a random number of acknowledgements, at a random instant).
            acks = 0 if rng.random() < 0.2 else rng.randint(1, 60)
            wait_for_lines(out, 1 + acks, server, context)
            time.sleep(rng.uniform(0.0, 0.005))
            os.kill(pid, signal.SIGKILL)
            code = server.ask(f"reap {pid}")
            assert code == -signal.SIGKILL, (
                f"{context}: exited by itself: {server.errors.read_text()}"
            )
            this_time = acknowledged(out)
            kills_with_acks += bool(this_time)
            for run_id, seq in this_time.items():
                acked[run_id] = max(acked.get(run_id, -1), seq)
            asyncio.run(check_store(store, acked, context))
    finally:
        server.close()
    assert kills_with_acks >= KILLS // 2, f"seed {seed}: most children were killed too early"
    assert sum(acked.values()) > 1000, f"seed {seed}: too little work was acknowledged"
    assert len(acked) == RUNS, f"seed {seed}: some runs never got an acknowledged append"
