"""check_deploy.py: a deploy gate. Replays every run in flight against candidate code.

    python check_deploy.py --store /var/lib/shop/perdure orders_v2

Exits 0 when every running or waiting run still fits the candidate's code,
1 otherwise. It opens the store read-only, so it runs beside the service
that owns it (or on a copy taken with `await log.copy(dest)`).
"""

import argparse
import asyncio
import importlib
import os
import sys

from perdure import LmdbEventLog, Replayer
from perdure.runtime import ReplaySummary

IN_FLIGHT = ("running", "waiting")  # the runs the new code will re-execute


def check(store: str, module: str) -> ReplaySummary:
    importlib.import_module(module)  # registers the candidate's workflows in this process
    log = LmdbEventLog(store, read_only=True)
    try:
        return Replayer().replay_all(log, status=IN_FLIGHT)
    finally:
        asyncio.run(log.close())


def report(summary: ReplaySummary) -> bool:
    """Print what would break; True when nothing would."""
    for result in summary.failures:
        print(f"DIVERGED {result.run_id} ({result.target})")
        if result.divergence is not None:  # else the replay timed out: see result.notes
            print(f"    position {result.divergence.position}")
            print(f"    recorded:  {result.divergence.recorded}")
            print(f"    requested: {result.divergence.requested} at {result.location}")
    for run_id, target in summary.skipped:  # a workflow the candidate no longer has
        print(f"MISSING  {run_id}: workflow {target!r} is not in the candidate")
    for run_id, message in summary.errors:
        print(f"UNREADABLE {run_id}: {message}")
    ok = summary.ok and not summary.skipped
    print(f"{len(summary.results)} run(s) in flight replayed: {'safe' if ok else 'NOT safe'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("PERDURE_PATH", ".perdure"))
    parser.add_argument("module", help="the candidate code, e.g. orders_v2")
    args = parser.parse_args(argv)
    return 0 if report(check(args.store, args.module)) else 1


if __name__ == "__main__":
    sys.exit(main())
