"""CPU per sequential step (W1), by thread: what a durable step costs perdure itself.

One workflow of N sequential no-op steps (an async body awaiting an async task,
or a sync body calling ``.result()`` on a sync task), after a 3-step warm-up, in
one process; `--reps` workflows in a row. Prints, for each, the process CPU and
the wall time per step, then the CPU of each thread over the last one (the
event loop, the LMDB writer, the body's pool thread, the watchdog; 10 ms clock
ticks, so a few µs per step of resolution).

CPU time is far less noisy than wall time on a loaded machine; compare two
versions with interleaved fresh processes, e.g. each checkout's code on
``PYTHONPATH`` (``git archive``), A B A B...:

    python bench/bench_step_cpu.py --mode sync --durability process --steps 2000
    python bench/bench_step_cpu.py --mode async --durability fsync --json
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
from _common import machine, quiet_logs


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Native thread id -> (Python thread name, CPU seconds so far), from /proc."""
    names = {t.native_id: t.name.split(":")[0].split("_")[0] for t in threading.enumerate()}
    out: dict[int, tuple[str, float]] = {}
    for folder in glob.glob("/proc/self/task/*"):
        tid = int(folder.rsplit("/", 1)[1])
        try:
            with open(folder + "/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        out[tid] = (names.get(tid, f"thread {tid}"), ticks / os.sysconf("SC_CLK_TCK"))
    return out


def measure(mode: str, steps: int, durability: str, reps: int) -> dict[str, Any]:
    import perdure
    from perdure import entrypoint, task

    folder = tempfile.mkdtemp(prefix="perdure-step-cpu-")
    log = perdure.LmdbEventLog(folder, durability=durability)  # type: ignore[arg-type]

    @task(name="cpu_snoop")
    def snoop(i: int) -> int:
        return i

    @task(name="cpu_anoop")
    async def anoop(i: int) -> int:
        return i

    @entrypoint(name="cpu_sync", checkpointer=log)
    def sync_body(n: int) -> int:
        return sum(snoop(i).result() for i in range(n))

    @entrypoint(name="cpu_async")
    async def async_body(n: int) -> int:
        total = 0
        for i in range(n):
            total += await anoop(i)
        return total

    def cfg(thread: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread}}

    cpu: list[float] = []
    wall: list[float] = []
    threads: list[dict[int, tuple[str, float]]] = [{}, {}]

    def timed(run: Callable[[], Any]) -> Any:
        threads[0] = thread_cpu()
        c0, w0 = time.process_time(), time.perf_counter()
        result = run()
        cpu.append((time.process_time() - c0) / steps * 1e6)
        wall.append((time.perf_counter() - w0) / steps * 1e6)
        threads[1] = thread_cpu()
        return result

    if mode == "sync":
        sync_body.invoke(3, cfg("warm-up"))
        for r in range(reps):
            timed(lambda r=r: sync_body.invoke(steps, cfg(f"m{r}")))  # type: ignore[misc]
    else:

        async def main() -> None:
            async with perdure.Runtime(log=log):
                await async_body.ainvoke(3, cfg("warm-up"))
                for r in range(reps):
                    threads[0] = thread_cpu()
                    c0, w0 = time.process_time(), time.perf_counter()
                    await async_body.ainvoke(steps, cfg(f"m{r}"))
                    cpu.append((time.process_time() - c0) / steps * 1e6)
                    wall.append((time.perf_counter() - w0) / steps * 1e6)
                    threads[1] = thread_cpu()

        asyncio.run(main())
    shutil.rmtree(folder, ignore_errors=True)
    by_thread: dict[str, float] = {}
    for tid, (name, seconds) in threads[1].items():
        before = threads[0].get(tid, (name, 0.0))[1]
        by_thread[name] = by_thread.get(name, 0.0) + (seconds - before) / steps * 1e6
    return {"cpu": cpu, "wall": wall, "threads": by_thread}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="async", choices=("sync", "async"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--durability", default="process", choices=("process", "fsync"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args(argv)
    quiet_logs()
    out = measure(args.mode, args.steps, args.durability, args.reps)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{machine()}; W1 {args.mode}, {args.steps} steps, durability={args.durability}")
    cpus = " ".join(f"{c:.0f}" for c in out["cpu"])
    print(f"CPU µs per step: {cpus} (min {min(out['cpu']):.0f})")
    print("wall µs per step:", " ".join(f"{w:.0f}" for w in out["wall"]))
    threads = ", ".join(f"{name} {us:.0f}" for name, us in sorted(out["threads"].items()) if us)
    print(f"CPU µs per step by thread (last workflow): {threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
