"""Where the time of one workflow step goes, sync against async (issue 17's profile).

One workflow of N sequential no-op steps (W1), with timestamps taken at six
points of every step, in the threads where they happen:

- ``call``: the body calls the task (body thread: the body's pool thread for a
  sync body, the event loop for an async one);
- ``task``: the task's code starts (a task-pool thread, the body's own thread
  for a sync task run inline, the loop for an async task);
- ``handled``: the run's actor takes the attempt's outcome (loop);
- ``append``: the actor hands the batch to the store (loop);
- ``durable``: the store reports it durable (loop; the writer thread did the
  work in between);
- ``back``: the body has the result (body thread).

Each interval is reported as the median over the steps (mean in brackets: a
loaded machine adds long tails). The points are monkeypatched wrappers around
internal methods, so this script is tied to perdure's internals; it measures
the code it runs (``PYTHON`` of another checkout gives the before figures).

    python bench/bench_sync_path.py --steps 2000 --durability process
    /path/to/other/checkout/.venv/bin/python bench/bench_sync_path.py   # before
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
from _common import machine, quiet_logs, table

POINTS = ("call", "task", "handled", "append", "durable", "back")


def _instrument(marks: dict[str, list[int]], recording: list[bool]) -> Callable[[str], None]:
    """Wrap the internal methods at the points above; return the body's `mark`."""
    from perdure import LmdbEventLog
    from perdure.actors import _execution
    from perdure.runtime import _host

    now = time.perf_counter_ns

    def mark(point: str) -> None:
        if recording[0]:
            marks[point].append(now())

    on_done = _execution.Execution.on_attempt_done

    def handled(self: Any, message: Any) -> None:
        mark("handled")
        on_done(self, message)

    committed = _host.RunHost.committed

    def durable(self: Any, actor: Any, events: list[Any]) -> None:
        if events:
            mark("durable")
        committed(self, actor, events)

    append = LmdbEventLog.append

    async def appended(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("append")
        return await append(self, *args, **kwargs)

    _execution.Execution.on_attempt_done = handled  # type: ignore[method-assign]
    _host.RunHost.committed = durable  # type: ignore[method-assign]
    LmdbEventLog.append = appended  # type: ignore[method-assign]
    return mark


def measure(mode: str, steps: int, durability: str) -> dict[str, Any]:
    import perdure
    from perdure import entrypoint, task

    marks: dict[str, list[int]] = {point: [] for point in POINTS}
    recording = [False]
    mark = _instrument(marks, recording)
    folder = tempfile.mkdtemp(prefix="perdure-sync-path-")
    log = perdure.LmdbEventLog(folder, durability=durability)  # type: ignore[arg-type]

    @task(name="path_snoop")
    def snoop(i: int) -> int:
        mark("task")
        return i

    @task(name="path_anoop")
    async def anoop(i: int) -> int:
        mark("task")
        return i

    @entrypoint(name="path_sync", checkpointer=log)
    def sync_body(n: int) -> int:
        total = 0
        for i in range(n):
            mark("call")
            total += snoop(i).result()
            mark("back")
        return total

    @entrypoint(name="path_async")
    async def async_body(n: int) -> int:
        total = 0
        for i in range(n):
            mark("call")
            total += await anoop(i)
            mark("back")
        return total

    def cfg(thread: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread}}

    span = [0, 0, 0.0]
    if mode == "sync":
        sync_body.invoke(3, cfg("warm-up"))
        recording[0] = True
        span[0], span[2] = time.perf_counter_ns(), time.process_time()
        sync_body.invoke(steps, cfg("measured"))
        span[1] = time.perf_counter_ns()
    else:

        async def main() -> None:
            async with perdure.Runtime(log=log):
                await async_body.ainvoke(3, cfg("warm-up"))
                recording[0] = True
                span[0], span[2] = time.perf_counter_ns(), time.process_time()
                await async_body.ainvoke(steps, cfg("measured"))
                span[1] = time.perf_counter_ns()

        asyncio.run(main())
    recording[0] = False
    cpu = time.process_time() - span[2]
    shutil.rmtree(folder, ignore_errors=True)
    # One of each point per step (the run's last commit, RunCompleted, adds an append
    # and a durable after the last step: ignored).
    rows = list(zip(*(marks[point][:steps] for point in POINTS), strict=True))
    intervals = {
        f"{a} -> {b}": [row[j + 1] - row[j] for row in rows]
        for j, (a, b) in enumerate(itertools.pairwise(POINTS))
    }
    intervals["step (call -> back)"] = [row[-1] - row[0] for row in rows]
    return {
        "per_step_us": (span[1] - span[0]) / steps / 1e3,
        "cpu_per_step_us": cpu / steps * 1e6,
        "intervals": {
            name: (statistics.median(v) / 1e3, statistics.mean(v) / 1e3)
            for name, v in intervals.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--durability", default="process", choices=("process", "fsync"))
    parser.add_argument("--mode", default="both", choices=("sync", "async", "both"))
    args = parser.parse_args(argv)
    quiet_logs()
    modes = ("sync", "async") if args.mode == "both" else (args.mode,)
    results = {mode: measure(mode, args.steps, args.durability) for mode in modes}
    print(f"{machine()}; {args.steps} steps, durability={args.durability}\n")
    names = list(next(iter(results.values()))["intervals"])
    rows = [
        [name]
        + [
            f"{r['intervals'][name][0]:.1f} ({r['intervals'][name][1]:.1f})"
            for r in results.values()
        ]
        for name in names
    ]
    rows.append(
        ["wall per step (whole run)"] + [f"{r['per_step_us']:.1f}" for r in results.values()]
    )
    rows.append(
        ["CPU per step (process)"] + [f"{r['cpu_per_step_us']:.1f}" for r in results.values()]
    )
    print(table(["µs, median (mean)", *modes], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
