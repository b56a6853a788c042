"""Memory: RSS of 1,000 concurrent workflows, and of a runtime over a store of many waiting runs.

    python -m bench.bench_memory                    # 1,000 concurrent; 100,000 waiting runs
    python -m bench.bench_memory --quick            # CI smoke sizes

Each figure comes from a fresh process (`--worker`), median (min-max) of
`--repeats`. RSS is the process's resident set (VmRSS of /proc/self/status,
peak from VmHWM), in MiB, next to the same process's RSS right after `import
perdure` and opening the runtime, so the table shows what the runs cost on top.

- **concurrent**: `--workflows` async workflows of 3 steps started at once
  (`ainvoke` + gather) on an fsync store; peak RSS while they run.
- **waiting**: `--waiting` runs each paused on `interrupt()` are recorded once
  (durability "process", in batches of 1,000, not measured); a fresh process
  opens a runtime on that store, and its RSS is read after opening, after
  resuming one of the runs, and after 1 s of idling (timers, recovery).
  Issue 17's targets: under 60 MiB for 1,000 concurrent workflows, under
  150 MiB for a runtime serving 100,000 waiting runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
from _common import machine, median, spread, table


def _status(field: str) -> float:
    """A VmRSS/VmHWM-style field of /proc/self/status, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _define() -> dict[str, Any]:
    from perdure import entrypoint, interrupt, task

    @task(name="mem_noop")
    async def noop(i: int) -> int:
        return i

    @entrypoint(name="mem_three")
    async def three(n: int) -> int:
        total = 0
        for k in range(3):
            total += await noop(n + k)
        return total

    @entrypoint(name="mem_waiting")
    async def waiting(n: int) -> dict[str, Any]:
        answer = interrupt(f"approve {n}?")
        return {"n": n, "answer": answer}

    return {"three": three, "waiting": waiting}


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    import structlog

    import perdure

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    wf = _define()
    out: dict[str, Any] = {"after_import_mib": _status("VmRSS")}
    if args.worker == "setup":
        async with perdure.Runtime(path=args.dir, durability="process"):
            for start in range(0, args.n, 1000):
                await asyncio.gather(
                    *(
                        wf["waiting"].ainvoke(i, _cfg(f"w-{i}"))
                        for i in range(start, min(args.n, start + 1000))
                    )
                )
        return out
    async with perdure.Runtime(path=args.dir) as rt:
        out["opened_mib"] = _status("VmRSS")
        if args.worker == "concurrent":
            await wf["three"].ainvoke(0, _cfg("warmup"))
            out["warm_mib"] = _status("VmRSS")
            results = await asyncio.gather(
                *(wf["three"].ainvoke(w, _cfg(f"wf-{w}")) for w in range(args.n))
            )
            assert results[-1] == 3 * (args.n - 1) + 3
            out["peak_mib"] = _status("VmHWM")
            out["after_mib"] = _status("VmRSS")
        else:
            res = await wf["waiting"].ainvoke(perdure.Command(resume=True), _cfg("w-0"))
            assert res == {"n": 0, "answer": True}, res
            out["after_one_resume_mib"] = _status("VmRSS")
            await asyncio.sleep(1.0)
            out["idle_1s_mib"] = _status("VmRSS")
            out["peak_mib"] = _status("VmHWM")
            del rt
    return out


def _run(python: str, worker: str, directory: str, n: int) -> dict[str, Any]:
    cmd = [python, os.path.abspath(__file__), "--worker", worker, "--dir", directory, "--n", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--worker", choices=("concurrent", "setup", "waiting"))
    parser.add_argument("--dir")
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(_worker(args))), flush=True)
        return 0
    if args.quick:
        args.repeats, args.workflows, args.waiting = 1, 50, 200
    root = tempfile.mkdtemp(prefix="perdure-mem-")
    rows = []
    try:
        conc = [
            _run(sys.executable, "concurrent", os.path.join(root, f"c{r}"), args.workflows)
            for r in range(args.repeats)
        ]
        base = os.path.join(root, "waiting")
        _run(sys.executable, "setup", base, args.waiting)
        waits = []
        for r in range(args.repeats):
            copy = os.path.join(root, f"w{r}")
            shutil.copytree(base, copy)
            waits.append(_run(sys.executable, "waiting", copy, args.waiting))
            shutil.rmtree(copy, ignore_errors=True)
        for label, results, keys in (
            (f"{args.workflows:,} concurrent workflows", conc, ("opened_mib", "peak_mib")),
            (
                f"runtime over {args.waiting:,} waiting runs",
                waits,
                ("opened_mib", "after_one_resume_mib", "idle_1s_mib", "peak_mib"),
            ),
        ):
            for key in ("after_import_mib", *keys):
                vals = [float(r[key]) for r in results]
                rows.append(
                    [
                        label,
                        key.removesuffix("_mib"),
                        f"{median(vals):.1f}",
                        spread(vals, 1, "{:.1f}"),
                    ]
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"bench_memory — {machine()}; RSS in MiB, median of {args.repeats} fresh process(es)\n")
    print(table(["workload", "RSS at", "MiB", "min-max"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
