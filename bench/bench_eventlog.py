"""Event log benchmarks (issue 2): LmdbEventLog against the raw LMDB commit limit.

Measured in one run, each workload on a fresh store, median of the repeats:

- raw: py-lmdb, one put + fsync'd commit per transaction (sync=True, metasync=True).
  This is the physical limit of one durable commit on this disk.
- sequential: one run appending one event at a time through `LmdbEventLog`
  (durability="fsync"); every append waits for its own durable commit.
  sequential-process: the same with durability="process" (no fsync), for the trade.
- concurrent-100 / concurrent-1000: that many appenders, each on its own run,
  each appending one event at a time; group commit shares each fsync.
- loop lag: the worst lateness of ``asyncio.sleep(0.001)`` in a ticker task,
  both on the loop running the appenders and on an otherwise idle loop while
  another thread's loop appends (the writer thread's own cost to a loop).

Targets: sequential within 1.5x of the raw commit time; concurrent-1000 at least
10x the sequential events/s; loop lag under 5 ms.

    python bench/bench_eventlog.py            # full sizes, 3 repeats
    python bench/bench_eventlog.py --quick    # tiny sizes, 1 repeat (CI smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import lmdb
from _common import machine, median, table

from perdure.eventlog import Durability, LmdbEventLog, RunStarted, TaskCompleted

PAYLOAD = "r" * 120  # a small task result; events are ~250 bytes encoded


def event(run_id: str, seq: int) -> TaskCompleted:
    return TaskCompleted(
        run_id=run_id,
        seq=seq,
        ts=time.time(),
        position=str(seq),
        name="step",
        input_digest="d",
        result=PAYLOAD,
    )


def start(run_id: str) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        seq=0,
        ts=time.time(),
        target="bench",
        kind="function",
        input=None,
        input_digest="d",
    )


def raw_commits(path: str, count: int) -> float:
    """Seconds per fsync'd single-put commit with plain py-lmdb."""
    env = lmdb.open(path, map_size=1 << 30, max_dbs=4, sync=True, metasync=True)
    db = env.open_db(b"events")
    value = b"v" * 250
    began = time.perf_counter()
    for n in range(count):
        with env.begin(write=True) as txn:
            if not txn.put(b"run\x00" + struct.pack(">Q", n), value, db=db, overwrite=False):
                raise RuntimeError("put refused")
    took = time.perf_counter() - began
    env.close()
    return took / count


class Ticker:
    """Measures how late `asyncio.sleep(0.001)` wakes up on the loop it runs on."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - began - 0.001)

    def stop(self) -> None:
        self._stop = True


async def start_runs(log: LmdbEventLog, writers: int) -> None:
    """Set-up, not measured: the runs' RunStarted events."""
    await asyncio.gather(*(log.append(f"run-{n}", 0, [start(f"run-{n}")]) for n in range(writers)))


async def appenders(log: LmdbEventLog, writers: int, appends: int) -> None:
    """`writers` started runs, each appending `appends` single events one after the other."""

    async def one(n: int) -> None:
        run_id = f"run-{n}"
        for seq in range(1, appends + 1):
            await log.append(run_id, seq, [event(run_id, seq)])

    await asyncio.gather(*(one(n) for n in range(writers)))


async def timed(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(seconds, worst loop lag) of `work` with a ticker on the same loop."""
    ticker = Ticker()
    tick = asyncio.create_task(ticker.run())
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    await work()
    took = time.perf_counter() - began
    ticker.stop()
    await tick
    return took, ticker.worst


async def perdure_workload(
    path: str, writers: int, appends: int, durability: Durability = "fsync"
) -> dict[str, float]:
    log = LmdbEventLog(path, durability=durability)
    try:
        await start_runs(log, writers)
        before = await log.statistics()
        took, lag = await timed(lambda: appenders(log, writers, appends))
        after = await log.statistics()
    finally:
        await log.close()
    events = writers * appends
    return {
        "seconds": took,
        "events_per_s": events / took,
        "us_per_append": took / appends * 1e6,
        "lag_ms": lag * 1e3,
        "events_per_commit": (after.appends - before.appends) / (after.batches - before.batches),
    }


async def idle_loop_lag(path: str, writers: int, appends: int) -> float:
    """Worst lag of an idle loop while another thread's loop appends through the writer."""
    log = LmdbEventLog(path)
    await start_runs(log, writers)
    ticker = Ticker()
    tick = asyncio.create_task(ticker.run())
    thread = threading.Thread(target=asyncio.run, args=(appenders(log, writers, appends),))
    thread.start()
    await asyncio.to_thread(thread.join)
    ticker.stop()
    await tick
    await log.close()
    return ticker.worst * 1e3


def fresh(fn: Callable[[str], Any]) -> Any:
    tmp = tempfile.mkdtemp(prefix="perdure-bench-")
    try:
        return fn(f"{tmp}/store")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    raw_n, seq_n = (100, 100) if args.quick else (2000, 2000)
    shapes = {"concurrent-100": (100, 5 if args.quick else 100)}
    shapes["concurrent-1000"] = (1000, 2 if args.quick else 20)

    names = ("sequential", "sequential-process", *shapes)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    raw: list[float] = []
    idle_lag: list[float] = []
    for _ in range(repeats):
        raw.append(fresh(lambda p: raw_commits(p, raw_n)))
        results["sequential"].append(fresh(lambda p: asyncio.run(perdure_workload(p, 1, seq_n))))
        results["sequential-process"].append(
            fresh(lambda p: asyncio.run(perdure_workload(p, 1, seq_n, "process")))
        )
        for name, (writers, appends) in shapes.items():
            results[name].append(
                fresh(lambda p, w=writers, a=appends: asyncio.run(perdure_workload(p, w, a)))
            )
        idle_lag.append(fresh(lambda p: asyncio.run(idle_loop_lag(p, *shapes["concurrent-100"]))))

    raw_us = median(raw) * 1e6
    single = median([r["events_per_s"] for r in results["sequential"]])
    rows = [["raw py-lmdb put+commit (fsync)", f"{raw_n}", f"{raw_us:.0f}", f"{1e6 / raw_us:,.0f}",
             "1.00x", "-", "1", "-"]]  # fmt: skip
    for name, runs in results.items():
        sequential = name.startswith("sequential")
        writers = 1 if sequential else shapes[name][0]
        us = median([r["us_per_append"] for r in runs])
        eps = median([r["events_per_s"] for r in runs])
        events = writers * (seq_n if sequential else shapes[name][1])
        rows.append(
            [
                f"perdure {name} ({writers} appender{'s' if writers > 1 else ''})",
                f"{events}",
                f"{us:.0f}",
                f"{eps:,.0f}",
                f"{us / raw_us:.2f}x",
                f"{eps / single:.1f}x",
                f"{median([r['events_per_commit'] for r in runs]):.1f}",
                f"{median([r['lag_ms'] for r in runs]):.2f}",
            ]
        )
    print(f"Event log benchmark ({machine()}), median of {repeats}:\n")
    print(
        table(
            [
                "workload",
                "events",
                "us per append (latency)",
                "events/s",
                "latency vs raw commit",
                "events/s vs sequential",
                "events per commit",
                "max loop lag ms",
            ],
            rows,
        )
    )
    seq_ratio = median([r["us_per_append"] for r in results["sequential"]]) / raw_us
    fan_ratio = median([r["events_per_s"] for r in results["concurrent-1000"]]) / single
    worst_lag = max(median([r["lag_ms"] for r in runs]) for runs in results.values())
    print(f"\nidle loop's max lag while another loop appends (100 appenders): "
          f"{median(idle_lag):.2f} ms")  # fmt: skip
    print("\ntargets:")
    print(f"  sequential latency within 1.5x of a raw commit: {seq_ratio:.2f}x "
          f"{'ok' if seq_ratio <= 1.5 else 'MISSED'}")  # fmt: skip
    print(f"  1,000 appenders >= 10x sequential events/s: {fan_ratio:.1f}x "
          f"{'ok' if fan_ratio >= 10 else 'MISSED'}")  # fmt: skip
    print(f"  loop lag < 5 ms: worst {max(worst_lag, median(idle_lag)):.2f} ms "
          f"{'ok' if max(worst_lag, median(idle_lag)) < 5 else 'MISSED'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
