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
import sys
import time
from pathlib import Path

import pytest

from perdure.eventlog import Event, LmdbEventLog, TimerEntry, TimerFired, TimerSet
from tests.support.kill_loop import KILL, Forked, ForkServer, KillLoop, campaign_seed, wait_until

CHILD = Path(__file__).with_name("_crash_child.py")
KILLS = 50
RUNS = 8


def lines_written(out: Path) -> int:
    return out.read_bytes().count(b"\n") if out.exists() else 0


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


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_event(tmp_path: Path) -> None:
    loop = KillLoop(campaign_seed(), name="event log crash campaign")
    store = tmp_path / "store"
    acked: dict[str, int] = {}
    kills_with_acks = 0

    def out_of(child: Forked) -> Path:
        return tmp_path / f"out-{loop.children.index(child)}"

    def spawn(n: int) -> Forked:
        seed = str(loop.rng.randrange(2**32))
        return loop.adopt(server.spawn(str(store), seed, str(RUNS), str(tmp_path / f"out-{n}")))

    def moment(child: Forked) -> bool:
        # A fifth of the kills land during start-up; the rest while appends are
        # flowing (after a random number of acknowledgements, at a random instant).
        acks = 0 if loop.rng.random() < 0.2 else loop.rng.randint(1, 60)
        out = out_of(child)
        stalled = not wait_until(lambda: lines_written(out) >= 1 + acks, 20.0)
        assert not stalled, loop.report(f"kill {loop.kills}: the child stalled", child)
        time.sleep(loop.rng.uniform(0.0, 0.005))
        return KILL

    def exited(child: Forked, code: int) -> bool:
        raise AssertionError(loop.report(f"kill {loop.kills}: exited by itself ({code})", child))

    def check_after_kill(child: Forked) -> None:
        nonlocal kills_with_acks
        this_time = acknowledged(out_of(child))
        kills_with_acks += bool(this_time)
        for run_id, seq in this_time.items():
            acked[run_id] = max(acked.get(run_id, -1), seq)
        context = f"PERDURE_CRASH_SEED={loop.seed}, kill {loop.kills - 1}"
        asyncio.run(check_store(store, acked, context))

    with ForkServer([sys.executable, str(CHILD)], tmp_path / "errors.txt") as server:
        loop.run(
            spawn, moment, exited, budget=float("inf"), after_kill=check_after_kill, kills=KILLS
        )
    seed = loop.seed
    assert kills_with_acks >= KILLS // 2, f"seed {seed}: most children were killed too early"
    assert sum(acked.values()) > 1000, f"seed {seed}: too little work was acknowledged"
    assert len(acked) == RUNS, f"seed {seed}: some runs never got an acknowledged append"
