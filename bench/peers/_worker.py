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

WORKLOADS = ("version", "w1", "w2", "w3-setup", "w3", "w4")


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
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--dir", default=".", help="directory for this run's store")
    parser.add_argument("--n", type=int, default=200, help="steps (w1, w3) or repeated calls (w4)")
    parser.add_argument("--workflows", type=int, default=1000, help="concurrent workflows (w2)")
    parser.add_argument("--variant", default="", help="system-specific configuration")
    parser.add_argument(
        "--spawn-time", type=float, default=0.0, help="time.time() when the runner spawned us"
    )
    return parser.parse_args(argv)


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
