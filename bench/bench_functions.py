"""Durable-function benchmarks (issue 3): the cost of `runtime.run` on a no-op async function.

- per call: N sequential ``await runtime.run(noop)`` vs N direct ``await noop()``
  -> µs per call and the ratio;
- throughput: C concurrent calls (``asyncio.gather`` of ``runtime.run``) -> calls/s.

Each store is measured in fresh processes (one per repeat), medians reported:
`LmdbEventLog` with ``durability="fsync"`` (the default: a run's result is on
disk before `run` returns) and ``durability="process"`` (survives a process
crash, not a power loss), in a temporary directory, plus `MemoryEventLog` as
the floor set by the runtime's own Python code.

    python bench/bench_functions.py            # full: 2,000 sequential, 1,000 concurrent, 5 repeats
    python bench/bench_functions.py --quick    # CI smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Literal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
from _common import machine, median, quiet_logs, run_json, spread, table

STORES = ("lmdb-fsync", "lmdb-process", "memory")


async def _measure(store: str, directory: str, calls: int, concurrent: int) -> dict[str, Any]:
    import perdure

    @perdure.function(name="bench_fn_noop")
    async def noop() -> None:
        return None

    direct_fn = noop.__wrapped__  # the plain coroutine function
    out: dict[str, Any] = {}

    start = time.perf_counter()
    for _ in range(calls):
        await direct_fn()
    out["direct_s"] = time.perf_counter() - start

    if store == "memory":
        runtime = perdure.Runtime(log=perdure.MemoryEventLog())
    else:
        durability: Literal["fsync", "process"] = "fsync" if store == "lmdb-fsync" else "process"
        runtime = perdure.Runtime(path=directory, durability=durability)
    async with runtime as rt:
        for _ in range(20):  # warm-up: first-call imports, thread pools, map growth
            await rt.run(noop)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            await rt.run(noop)
        out["sequential_s"] = time.perf_counter() - start
        out["sequential_cpu_s"] = time.process_time() - cpu

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(rt.run(noop) for _ in range(concurrent)))
        out["concurrent_s"] = time.perf_counter() - start
        out["concurrent_cpu_s"] = time.process_time() - cpu
    return out


def worker(args: argparse.Namespace) -> int:
    quiet_logs()
    result = asyncio.run(_measure(args.worker, args.dir, args.calls, args.concurrent))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="perdure durable-function overhead")
    parser.add_argument("--worker", choices=STORES, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per repeat")
    parser.add_argument("--concurrent", type=int, default=1000, help="concurrent calls per repeat")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.repeats, args.calls, args.concurrent = 1, 50, 50

    results: dict[str, list[dict[str, Any]]] = {store: [] for store in STORES}
    root = tempfile.mkdtemp(prefix="perdure-bench-fn-")
    try:
        for r in range(args.repeats):
            for store in STORES:
                print(f"[{r + 1}/{args.repeats}] {store}", file=sys.stderr, flush=True)
                directory = tempfile.mkdtemp(dir=root)
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    store,
                    "--dir",
                    directory,
                    "--calls",
                    str(args.calls),
                    "--concurrent",
                    str(args.concurrent),
                ]
                results[store].append(run_json(cmd))
                shutil.rmtree(directory, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    per_call = 1e6 / args.calls
    rows = []
    for store in STORES:
        runs = results[store]
        direct = [r["direct_s"] for r in runs]
        seq = [r["sequential_s"] for r in runs]
        seq_cpu = [r["sequential_cpu_s"] for r in runs]
        conc = [r["concurrent_s"] for r in runs]
        overhead = median(seq) / median(direct)
        throughput = [args.concurrent / c for c in conc]
        rows.append(
            [
                store,
                spread(direct, per_call, "{:.2f}"),
                spread(seq, per_call, "{:.0f}"),
                spread(seq_cpu, per_call, "{:.0f}"),
                f"{overhead:,.0f}x",
                spread(throughput, 1.0, "{:,.0f}"),
            ]
        )
    print(f"bench_functions — {machine()}; medians of {args.repeats} fresh process(es) (min-max)")
    print(
        f"{args.calls} sequential calls, {args.concurrent} concurrent calls; no-op async function"
    )
    print()
    print(
        table(
            [
                "store",
                "direct µs/call",
                "runtime.run µs/call",
                "CPU µs/call",
                "ratio",
                f"{args.concurrent} concurrent: calls/s",
            ],
            rows,
        )
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
