"""What every system's worker shares: its command line, stopwatches and the JSON line it prints.

A worker module (perdure_w.py, langgraph_w.py, dbos_w.py) runs ONE workload in
its own fresh interpreter (each system has its own virtualenv) and prints one
JSON object as its last stdout line. It is started as a script, so it imports
this file as the top-level module ``_worker`` and nothing else from the repo.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

# Every workload, defined once: what it measures and how its figure is reported. Each
# system's worker (perdure_w.py, langgraph_w.py, dbos_w.py: the adapters) implements
# the ones its system has; the runner (_runner.py) runs and reports them from this table.
# key: (title, size option, unit, scale, per) where `per` divides the measured seconds
# into the reported figure ("step": by --n, "call": already per call, "": as measured).
WORKLOADS: dict[str, tuple[str, str, str, float, str]] = {
    "raw": ("raw O_DSYNC write of one 4 KiB frame (the disk's floor)", "steps", "µs", 1e6, "step"),
    "w1": (
        "W1 async: async entrypoint, N sequential async tasks, per step",
        "steps",
        "µs",
        1e6,
        "step",
    ),
    "w1s": (
        "W1 sync: sync entrypoint, N sequential sync tasks, per step",
        "steps",
        "µs",
        1e6,
        "step",
    ),
    "w2": ("W2 async: M 3-task workflows, ainvoke + gather", "workflows", "ms", 1e3, ""),
    "w2seq": (
        "W2 sequential: M 3-task sync workflows, invoke one after another",
        "workflows",
        "ms",
        1e3,
        "",
    ),
    "w2thr": (
        "W2 threads: M 3-task sync workflows, invoke from 8 threads",
        "workflows",
        "ms",
        1e3,
        "",
    ),
    "w3": (
        "W3: resume a paused run after N steps, fresh process, after import",
        "resume",
        "ms",
        1e3,
        "",
    ),
    "w4": (
        "W4 sync: call with a used idempotency key, served from the log",
        "calls",
        "µs",
        1e6,
        "call",
    ),
    "w4a": ("W4 async: the same from async code", "calls", "µs", 1e6, "call"),
    "w4inv": (
        "W4 invoke: invoke(None, cfg) on a finished thread, sync",
        "calls",
        "µs",
        1e6,
        "call",
    ),
}
THREADS = 8  # w2thr


class Stopwatch:
    """Wall-clock and process CPU time since creation (CPU time is steadier on a busy machine)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self, out: dict[str, Any], key: str = "seconds") -> None:
        out[key] = time.perf_counter() - self.wall
        out[key.replace("seconds", "cpu_s")] = time.process_time() - self.cpu


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker command line; the runner (``_runner.py``) builds it."""
    parser = argparse.ArgumentParser(description="run one peer-comparison workload")
    parser.add_argument("workload", choices=("version", "w3-setup", *WORKLOADS))
    parser.add_argument("--dir", default=".", help="directory for this run's store")
    parser.add_argument("--n", type=int, default=200, help="steps (w1, w3) or repeated calls (w4)")
    parser.add_argument("--workflows", type=int, default=1000, help="concurrent workflows (w2)")
    parser.add_argument("--variant", default="", help="system-specific configuration")
    parser.add_argument(
        "--spawn-time", type=float, default=0.0, help="time.time() when the runner spawned us"
    )
    return parser.parse_args(argv)


def per_call(out: dict[str, Any], n: int) -> None:
    """Turn the totals of `n` repeated calls into per-call figures."""
    out["seconds"] /= n
    out["cpu_s"] /= n


def in_threads(call: Any, count: int, threads: int = THREADS) -> list[Any]:
    """`call(i)` for i in range(count), spread over `threads` threads; results in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, range(count)))


def since_spawn(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Record the wall time from the runner's spawn of this process until now (w3's headline)."""
    if args.spawn_time:
        out["seconds_from_spawn"] = time.time() - args.spawn_time


def emit(out: dict[str, Any]) -> int:
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


def sqlite_settings(path: str) -> dict[str, Any]:
    """journal_mode and synchronous of a SQLite file as a fresh connection sees them.

    synchronous is per connection: this is the library default unless the peer
    sets it on its own connections (the workers say so where it does).
    """
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        conn.close()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {"journal_mode": journal, "synchronous": names.get(sync, str(sync))}
