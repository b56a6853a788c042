"""Event log benchmarks (issue 2): LmdbEventLog against the raw LMDB commit limit.

Measured in one run, each workload on a fresh store, median of the repeats:

- raw: py-lmdb, one put + fsync'd commit per transaction (sync=True, metasync=True).
  This is the physical limit of one durable commit on this disk. A second raw row
  makes the same writes as a perdure append of one event (the event, the run's
  index row, a child transaction): the limit for an indexed log.
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
import functools
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import lmdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
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


def raw_commits(path: str, count: int, *, with_index: bool = False) -> list[float]:
    """Seconds of each fsync'd commit with plain py-lmdb: one put, or (`with_index`)
    the writes perdure makes for one event (event put + runs row, in a child txn)."""
    env = lmdb.open(path, map_size=1 << 30, max_dbs=4, sync=True, metasync=True)
    db, runs = env.open_db(b"events"), env.open_db(b"runs")
    value, row = b"v" * 250, b"r" * 150
    took = []
    for n in range(count):
        began = time.perf_counter()
        with env.begin(write=True) as txn:
            child = env.begin(write=True, parent=txn) if with_index else txn
            if with_index:
                child.get(b"run", db=runs)
                if not child.put(b"run", row, db=runs):
                    raise RuntimeError("put refused")
            if not child.put(b"run\x00" + struct.pack(">Q", n), value, db=db, overwrite=False):
                raise RuntimeError("put refused")
            if with_index:
                child.commit()
        took.append(time.perf_counter() - began)
    env.close()
    return took


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


async def appenders(
    log: LmdbEventLog, writers: int, appends: int, latencies: list[float] | None = None
) -> None:
    """`writers` started runs, each appending `appends` single events one after the other."""

    async def one(n: int) -> None:
        run_id = f"run-{n}"
        for seq in range(1, appends + 1):
            began = time.perf_counter()
            await log.append(run_id, seq, [event(run_id, seq)])
            if latencies is not None:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(one(n) for n in range(writers)))


async def timed(work: Callable[[], Awaitable[None]], *, tick: bool) -> tuple[float, float]:
    """(seconds, worst loop lag or 0) of `work`, with a lag ticker on the same loop if `tick`."""
    ticker = Ticker()
    task = asyncio.create_task(ticker.run()) if tick else None
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    await work()
    took = time.perf_counter() - began
    ticker.stop()
    if task is not None:
        await task
    return took, ticker.worst


async def perdure_workload(
    path: str, writers: int, appends: int, durability: Durability = "fsync"
) -> dict[str, float]:
    """Latency and throughput (measured alone), then loop lag (on a second store, with the
    ticker: its wake-ups every millisecond would otherwise add to the latency)."""
    figures = {}
    for tick in (False, True):
        log = LmdbEventLog(f"{path}-{tick}", durability=durability)
        try:
            await start_runs(log, writers)
            before = await log.statistics()
            latencies: list[float] = []
            work = functools.partial(appenders, log, writers, appends, latencies)
            took, lag = await timed(work, tick=tick)
            after = await log.statistics()
        finally:
            await log.close()
        if tick:
            figures["lag_ms"] = lag * 1e3
            continue
        figures.update(
            events_per_s=writers * appends / took,
            us_per_append=took / appends * 1e6,
            p50_us=median(latencies) * 1e6,
            events_per_commit=(after.appends - before.appends) / (after.batches - before.batches),
        )
    return figures


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
    raw: list[list[float]] = []
    raw_index: list[list[float]] = []
    idle_lag: list[float] = []
    for _ in range(repeats):  # interleaved, so drift in the machine's load hits all alike
        raw.append(fresh(lambda p: raw_commits(p, raw_n)))
        raw_index.append(fresh(lambda p: raw_commits(p, raw_n, with_index=True)))
        results["sequential"].append(fresh(lambda p: asyncio.run(perdure_workload(p, 1, seq_n))))
        results["sequential-process"].append(
            fresh(lambda p: asyncio.run(perdure_workload(p, 1, seq_n, "process")))
        )
        for name, (writers, appends) in shapes.items():
            results[name].append(
                fresh(lambda p, w=writers, a=appends: asyncio.run(perdure_workload(p, w, a)))
            )
        idle_lag.append(fresh(lambda p: asyncio.run(idle_loop_lag(p, *shapes["concurrent-100"]))))

    raw_p50 = median([median(r) for r in raw]) * 1e6
    raw_mean = median([sum(r) / len(r) for r in raw]) * 1e6
    single = median([r["events_per_s"] for r in results["sequential"]])
    index_p50 = median([median(r) for r in raw_index]) * 1e6
    index_mean = median([sum(r) / len(r) for r in raw_index]) * 1e6
    raw_row = ["raw py-lmdb put+commit (fsync)", f"{raw_n}", f"{raw_p50:.0f}", f"{raw_mean:.0f}"]
    raw_row += [f"{1e6 / raw_mean:,.0f}", "1.00x", "-", "1", "-"]
    index_row = ["raw py-lmdb, perdure's writes (+runs row)", f"{raw_n}", f"{index_p50:.0f}"]
    index_row += [f"{index_mean:.0f}", f"{1e6 / index_mean:,.0f}", f"{index_p50 / raw_p50:.2f}x"]
    index_row += ["-", "1", "-"]
    rows = [raw_row, index_row]
    for name, runs in results.items():
        sequential = name.startswith("sequential")
        writers = 1 if sequential else shapes[name][0]
        p50 = median([r["p50_us"] for r in runs])
        eps = median([r["events_per_s"] for r in runs])
        events = writers * (seq_n if sequential else shapes[name][1])
        rows.append(
            [
                f"perdure {name} ({writers} appender{'s' if writers > 1 else ''})",
                f"{events}",
                f"{p50:.0f}",
                f"{median([r['us_per_append'] for r in runs]):.0f}",
                f"{eps:,.0f}",
                f"{p50 / raw_p50:.2f}x",
                f"{eps / single:.1f}x",
                f"{median([r['events_per_commit'] for r in runs]):.1f}",
                f"{median([r['lag_ms'] for r in runs]):.2f}",
            ]
        )
    print(f"Event log benchmark ({machine()}), median of {repeats}:\n")
    headers = [
        "workload",
        "events",
        "p50 latency us",
        "mean latency us",
        "events/s",
        "p50 vs raw commit",
        "events/s vs sequential",
        "events per commit",
        "max loop lag ms",
    ]
    print(table(headers, rows))
    seq_ratio = median([r["p50_us"] for r in results["sequential"]]) / raw_p50
    fan_ratio = median([r["events_per_s"] for r in results["concurrent-1000"]]) / single
    worst_lag = max(median([r["lag_ms"] for r in runs]) for runs in results.values())
    idle = median(idle_lag)
    same_writes = seq_ratio * raw_p50 / index_p50

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(f"\nidle loop's max lag while another loop appends (100 appenders): {idle:.2f} ms")
    print("\ntargets:")
    print(
        f"  sequential p50 latency within 1.5x of a raw commit: {seq_ratio:.2f}x "
        f"{verdict(seq_ratio <= 1.5)} ({same_writes:.2f}x of a raw commit of the same writes)"
    )
    print(
        f"  1,000 appenders >= 10x sequential events/s: {fan_ratio:.1f}x {verdict(fan_ratio >= 10)}"
    )
    print(
        f"  loop lag < 5 ms (idle loop beside the writer): {idle:.2f} ms {verdict(idle < 5)}; "
        f"worst on the appenders' own loop: {worst_lag:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
