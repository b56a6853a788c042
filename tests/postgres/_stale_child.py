"""The "other process" of test_pg_stale_actor: drives the run on, then leaves.

    python _stale_child.py URL T0

On a mock clock at T0 + 61 it takes the run (its lease was left to expire), fires its
first nap (the second nap's timer is then set), and exits once that is in the log.
"""

from __future__ import annotations

import asyncio
import sys

from perdure import Runtime
from perdure.eventlog import TimerFired, TimerSet
from perdure.testing import MockClock
from tests.postgres.test_pg_stale_actor import REG


async def main(url: str, t0: float) -> None:
    clock = MockClock(start=t0 + 61, autojump=False)
    async with Runtime(url, registry=REG, clock=clock, lease_ttl=0.3) as rt:
        for _ in range(2_000):
            events = await rt.log.read("naps")
            if (
                sum(isinstance(e, TimerSet) for e in events) == 2
                and sum(isinstance(e, TimerFired) for e in events) == 1
            ):
                print("second nap set", flush=True)
                return
            await asyncio.sleep(0.01)
        print("the second nap was never set:", [type(e).__name__ for e in events], flush=True)
    sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
