"""Group commit, measured: each commit costs one fsync, shared by every append queued meanwhile.

Runs a function 50 times one after the other, then 500 times at once, on a
store with durability="fsync", and counts the events written and the commits
(fsyncs) that wrote them, from the store's own statistics.
"""

import asyncio
import time

from perdure import Runtime, function


@function
async def record_visit(page: str) -> str:
    return page


async def measure(rt: Runtime, runs: int, *, at_once: bool) -> tuple[int, int, float]:
    """(events written, commits, seconds) for `runs` calls."""
    before = await rt.log.statistics()
    started = time.perf_counter()
    calls = [rt.run(record_visit, {"page": f"/p/{n}"}) for n in range(runs)]
    if at_once:
        await asyncio.gather(*calls)
    else:
        for call in calls:
            await call
    after = await rt.log.statistics()
    seconds = time.perf_counter() - started
    return after.appends - before.appends, after.batches - before.batches, seconds


async def main() -> None:
    async with Runtime(path="group-commit-store", durability="fsync") as rt:
        one_by_one = await measure(rt, 50, at_once=False)
        together = await measure(rt, 500, at_once=True)
    for label, (events, commits, seconds) in (
        ("50 one by one", one_by_one),
        ("500 at once", together),
    ):
        print(
            f"{label:14} {events:5} events in {commits:4} commits: "
            f"{events / commits:6.1f} events per fsync, {seconds:.2f} s"
        )
    # Sequential calls wait for each commit; concurrent ones share them.
    assert together[0] / together[1] > 2 * one_by_one[0] / one_by_one[1]


asyncio.run(main())
