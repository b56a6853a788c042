"""A process that lost a run's lease and takes the run back drives it from the log.

The failover campaign found it on a loaded machine: a worker stalled past its lease,
another drove the run on (it set a timer) and died, and the first worker took the run
back by claiming that due timer. Its actor, still alive from before, had never seen
the timer and ignored it; the worker renewed the lease for ever and the run never
finished. Here the same moves are made one at a time, in one process: a lease taken
away with SQL, a child process as the other process, mock clocks for the timers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from perdure import Runtime, entrypoint, sleep
from perdure.eventlog import PostgresEventLog, TimerFired, TimerSet
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.support.waiting import until

REG = Registry()
CHILD = Path(__file__).resolve().parent / "_stale_child.py"
ROOT = CHILD.parent.parent.parent  # the child imports this module as tests.postgres...
T0 = 1_000_000.0


@entrypoint(registry=REG, name="two_naps")
def two_naps(n: int) -> int:
    sleep(60)
    sleep(60)
    return n


async def _timers(log: PostgresEventLog, run_id: str) -> tuple[int, int]:
    events = await log.read(run_id)
    return (
        sum(isinstance(e, TimerSet) for e in events),
        sum(isinstance(e, TimerFired) for e in events),
    )


async def test_a_run_taken_back_after_its_lease_was_lost_is_rebuilt_and_fires(
    pg_store: str,
) -> None:
    here = MockClock(start=T0, autojump=False)
    async with Runtime(pg_store, registry=REG, clock=here, lease_ttl=0.3, idle_timeout=3600) as rt:
        log = rt.log
        assert isinstance(log, PostgresEventLog)
        await rt.start(two_naps, 7, run_id="naps")
        await until(lambda: _timers_are(log, "naps", (1, 0)), "the first nap")

        # This process stalls past its lease: a "ghost" takes the run (and dies).
        with psycopg.connect(pg_store, autocommit=True) as conn:
            conn.execute(
                "UPDATE perdure.runs SET owner = 'ghost', epoch = epoch + 1, "
                "lease_until = now() - interval '1 second' WHERE run_id = 'naps'"
            )
        await until(lambda: log.lease_losses("naps") == 1, "the renewal to find it lost")

        # Another process drives the run on: the first nap is over there, the second set.
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(CHILD), pg_store, str(T0)],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == 0 and "second nap set" in done.stdout, done
        # ...and has left. The second nap is due: this process claims it and takes the run
        # back, where its actor from before the loss is still alive.
        here.advance(200)
        await until(lambda: _status_is(rt, "naps", "completed"), "the second nap to fire here")
        assert (await rt.wait("naps", timeout=10)).result == 7
        assert await _timers(log, "naps") == (2, 2)


async def _timers_are(log: PostgresEventLog, run_id: str, counts: tuple[int, int]) -> bool:
    return await _timers(log, run_id) == counts


async def _status_is(rt: Runtime, run_id: str, status: str) -> bool:
    return await rt.status(run_id) == status
