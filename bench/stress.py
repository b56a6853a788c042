"""Stress: thousands of runs and 100 concurrent senders on one runtime over a real LMDB store.

Half the runs are functions (every tenth with an idempotency key, asked twice),
half are small workflows that pause on `interrupt()` and are resumed by the
senders. The runs go in two equal waves; after each, idle actors must be
evicted (``Runtime(idle_timeout=...)``) and the resident memory measured, so a
leak per run shows as growth between the waves. At the end every run's events
are counted against what its kind must have written (nothing lost, nothing
extra, sequence numbers without gaps).

    python bench/stress.py                        # 10,000 runs, 100 senders
    python bench/stress.py --runs 2000 --json     # what tests/reliability/test_load.py runs

The last line of output is a JSON object with the figures; exit status 1 if a
check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

from perdure import Runtime, entrypoint, function, interrupt, task

PAGE = os.sysconf("SC_PAGE_SIZE")
#: Events each kind of run writes when nothing goes wrong (checked against a first run).
EXPECTED_EVENTS = {"fn": 4, "wf": 8}


@function(name="stress_double", retries=1)
def stress_double(x: int) -> int:
    return 2 * x


@task(name="stress_draft")
async def stress_draft(n: int) -> int:
    return n + 1


@task(name="stress_publish")
async def stress_publish(n: int, verdict: str) -> str:
    return f"{n}:{verdict}"


@entrypoint(name="stress_review")
async def stress_review(n: int) -> str:
    draft = await stress_draft(n)
    verdict = interrupt({"draft": draft})
    return await stress_publish(draft, verdict)


def rss_bytes() -> tuple[int, int]:
    """Current resident set size of this process, and its part not backed by files.

    The store is memory-mapped, so reading a bigger store raises the first
    figure without any leak; the second (resident minus shared) is the heap.
    """
    with open("/proc/self/statm") as file:
        fields = file.read().split()
    return int(fields[1]) * PAGE, (int(fields[1]) - int(fields[2])) * PAGE


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _one(rt: Runtime, i: int) -> None:
    """Drive run `i` to completion as a client would, and check its result."""
    if i % 2 == 0:
        key = f"stress-key-{i}" if i % 20 == 0 else None
        result = await rt.run(stress_double, {"x": i}, run_id=f"fn-{i}", idempotency_key=key)
        if key is not None:  # a second caller with the same key gets the same run's result
            again = await rt.run(stress_double, {"x": i}, idempotency_key=key)
            assert again == result, (again, result)
        assert result == 2 * i, (i, result)
        return
    run_id = f"wf-{i}"
    await rt.start(stress_review, i, run_id=run_id)
    paused = await rt.wait(run_id)
    assert paused.status == "waiting", (run_id, paused)
    await rt.resume(run_id, "ok")
    done = await rt.wait(run_id)
    assert done.status == "completed" and done.result == f"{i + 1}:ok", (run_id, done)


async def _sender(rt: Runtime, queue: asyncio.Queue[int]) -> None:
    while True:
        try:
            i = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        await _one(rt, i)


async def _settle(rt: Runtime, timeout: float) -> float:
    """Wait until every idle actor is evicted; return the seconds it took."""
    start = time.monotonic()
    while rt.statistics().live_actors and time.monotonic() - start < timeout:  # noqa: ASYNC110 - polls a counter
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _sampler(rt: Runtime, peak: dict[str, int]) -> None:
    while True:
        peak["live_actors"] = max(peak["live_actors"], rt.statistics().live_actors)
        await asyncio.sleep(0.05)


async def stress(
    store: str, runs: int, senders: int, idle_timeout: float, durability: str
) -> dict[str, Any]:
    figures: dict[str, Any] = {"runs": runs, "senders": senders, "durability": durability}
    peak = {"live_actors": 0}
    started = time.monotonic()
    async with Runtime(path=store, idle_timeout=idle_timeout, durability=durability) as rt:  # type: ignore[arg-type]
        sampler = asyncio.ensure_future(_sampler(rt, peak))
        half = runs // 2
        for wave, ids in enumerate((range(half), range(half, runs))):
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in ids:
                queue.put_nowait(i)
            t0 = time.monotonic()
            await asyncio.gather(*(_sender(rt, queue) for _ in range(senders)))
            figures[f"wave{wave}_seconds"] = round(time.monotonic() - t0, 2)
            figures[f"wave{wave}_live_actors_at_end"] = rt.statistics().live_actors
            figures[f"wave{wave}_evicted_in_s"] = round(await _settle(rt, 10 * idle_timeout + 5), 2)
            figures[f"wave{wave}_live_actors_after_idle"] = rt.statistics().live_actors
            rss, anon = rss_bytes()
            figures[f"wave{wave}_rss_mb"] = round(rss / 2**20, 1)
            figures[f"wave{wave}_heap_mb"] = round(anon / 2**20, 1)
        sampler.cancel()
        stats = rt.statistics()
        figures["evicted"] = stats.evicted
        figures["restarts"] = stats.restarts
        figures["parked"] = stats.parked
        figures["seconds"] = round(time.monotonic() - started, 2)
        figures.update(await _count_events(rt, runs))
        log_stats = await rt.log.statistics()
        figures["commits"] = log_stats.batches
    figures["peak_live_actors"] = peak["live_actors"]
    figures["peak_rss_mb"] = round(peak_rss_bytes() / 2**20, 1)
    figures["rss_growth_wave1_mb"] = round(figures["wave1_rss_mb"] - figures["wave0_rss_mb"], 1)
    figures["heap_growth_wave1_mb"] = round(figures["wave1_heap_mb"] - figures["wave0_heap_mb"], 1)
    figures["runs_per_s"] = round(runs / (figures["wave0_seconds"] + figures["wave1_seconds"]), 1)
    return figures


async def _count_events(rt: Runtime, runs: int) -> dict[str, Any]:
    """Every run holds exactly the events its kind writes, seq 0..n-1, and is completed."""
    infos = await rt.list_runs()
    wrong: list[str] = []
    events = 0
    for info in infos:
        stream = await rt.log.read(info.run_id)
        events += len(stream)
        kind = info.run_id.split("-")[0]
        if [e.seq for e in stream] != list(range(len(stream))) or info.next_seq != len(stream):
            wrong.append(f"{info.run_id}: seqs")
        elif len(stream) != EXPECTED_EVENTS.get(kind, -1):
            wrong.append(f"{info.run_id}: {len(stream)} events")
        elif info.status != "completed":
            wrong.append(f"{info.run_id}: {info.status}")
    if len(infos) != runs:
        wrong.append(f"{len(infos)} runs stored, {runs} started")
    return {"events": events, "wrong_runs": wrong[:20], "wrong_count": len(wrong)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--idle-timeout", type=float, default=0.2)
    parser.add_argument("--durability", choices=("fsync", "process"), default="fsync")
    parser.add_argument("--store", help="store directory (default: a fresh temporary one)")
    parser.add_argument("--json", action="store_true", help="print only the JSON figures")
    args = parser.parse_args(argv)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory(prefix="perdure-stress-") as tmp:
        store = args.store or os.path.join(tmp, "store")
        figures = asyncio.run(
            stress(store, args.runs, args.senders, args.idle_timeout, args.durability)
        )
    ok = (
        figures["wrong_count"] == 0
        and figures["wave1_live_actors_after_idle"] == 0
        and figures["parked"] == 0
    )
    figures["ok"] = ok
    if not args.json:
        for key, value in figures.items():
            print(f"{key:>32}: {value}")
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
