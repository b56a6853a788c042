"""Run every bench script; with ``--quick`` (the CI smoke step) at tiny sizes, one repeat each.

Fails (exit 1) if any script fails, so a change that breaks a benchmark is seen
in CI even though the figures themselves are not checked there (CI machines are
too noisy for thresholds). ``--langgraph-python`` / ``--no-langgraph`` go to the
scripts that compare with LangGraph (they skip that side by themselves when the
interpreter is missing).

    python bench/run_all.py --quick
    python bench/run_all.py                 # full sizes: several minutes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
from _common import BENCH_DIR

# In order; bench_eventlog.py is another engineer's and may not exist yet.
SCRIPTS = (
    "bench_import.py",
    "bench_eventlog.py",
    "bench_functions.py",
    "bench_memory.py",
    "peers",  # the package bench/peers/: every workflow workload x every system
)
# Options not every script understands, forwarded only to those that do.
LANGGRAPH_AWARE = ("bench_import.py", "peers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    parser.add_argument("--langgraph-python", help="interpreter with langgraph installed")
    parser.add_argument("--no-langgraph", action="store_true", help="skip the LangGraph side")
    args = parser.parse_args(argv)

    failed = []
    for script in SCRIPTS:
        path = os.path.join(BENCH_DIR, script)
        if not os.path.exists(path):
            print(f"== {script}: not present, skipped", flush=True)
            continue
        cmd = [sys.executable, "-m", "bench.peers"] if script == "peers" else [sys.executable, path]
        if args.quick:
            cmd.append("--quick")
        if script in LANGGRAPH_AWARE:
            if args.no_langgraph:
                cmd.append("--no-langgraph")
            elif args.langgraph_python:
                cmd += ["--langgraph-python", args.langgraph_python]
        print(f"== {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        repo = os.path.dirname(BENCH_DIR)  # so that `-m bench.peers` resolves
        code = subprocess.run(cmd, check=False, cwd=repo).returncode
        took = time.perf_counter() - start
        print(
            f"== {script}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {took:.1f} s\n",
            flush=True,
        )
        if code != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
