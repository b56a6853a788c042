"""Workflow benchmarks (issue 4): perdure vs LangGraph's functional API, measured in the same run.

Workloads, each run in a fresh process per repeat, medians reported:

- seq: one workflow of N sequential no-op tasks (default 200) -> per-task overhead.
  In perdure every task result is durable (fsync) before the next task starts.
- fanout: W concurrent workflows of 3 sequential no-op tasks (default 1,000).
- resume: a workflow of N tasks (default 10,000) that then pauses on
  ``interrupt()``; a fresh process imports, opens the runtime and answers with
  ``Command(resume=True)``; the time from after import until the result is the
  figure (import time is bench_import.py's job). The recorded run is built once
  per variant and copied for each repeat.

The LangGraph side (bench/langgraph_peer.py) runs under another interpreter::

    python bench/bench_workflows.py --langgraph-python /tmp/venv-lg/bin/python

Without a working one it is skipped with a message and only perdure runs.
``--quick`` uses tiny sizes and one repeat (the CI smoke step).

Variants (system/style/durability): perdure with async or sync workflow code,
``durability="fsync"`` (default) or ``"process"``; LangGraph with sync code on
``SqliteSaver`` or async code on ``AsyncSqliteSaver``, with its default
``durability="async"`` or ``"sync"``. Ratios use the best LangGraph variant.
perdure's info logs are filtered out (``--info-logs`` keeps them). Each figure
comes with the process CPU time, which is steadier than wall time on a shared
machine. ``--worker ... --profile OUT.pstats`` profiles one perdure workload.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from _common import (
    BENCH_DIR,
    machine,
    median,
    python_works,
    quiet_logs,
    run_json,
    spread,
    table,
)
from _worker import Stopwatch

EXECUTED = [0]  # task bodies run in this (worker) process


# (system, style, durability). LangGraph's durability is its own knob ("async"
# = its default, checkpoints written in the background while the next step runs).
PERDURE_VARIANTS = [
    ("perdure", "async", "fsync"),
    ("perdure", "sync", "fsync"),
    ("perdure", "async", "process"),
]
LANGGRAPH_VARIANTS = [
    ("langgraph", "sync", "async"),
    ("langgraph", "async", "async"),
    ("langgraph", "sync", "sync"),
]
# Resume: LangGraph's durability knob does not change how it loads a thread.
RESUME_LANGGRAPH_VARIANTS = LANGGRAPH_VARIANTS[:2]
RAW_COMMIT = ("lmdb", "raw-commit", "fsync")  # LMDB's own durable commit, see raw_commits()
RAW_FLUSH = ("disk", "raw-flush", "fsync")  # the disk's floor, see raw_flushes()
RESUME_PERDURE_VARIANTS = [("perdure", "async", "fsync"), ("perdure", "sync", "fsync")]

# -- the perdure worker (runs in a fresh process) -------------------------------------------


def _define(style: str) -> dict[str, Any]:
    """The benchmark workflows, in sync or async workflow code."""
    return _define_sync() if style == "sync" else _define_async()


def _define_sync() -> dict[str, Any]:
    from perdure import entrypoint, interrupt, task

    @task(name="bench_noop")
    def noop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @entrypoint(name="bench_seq")
    def seq(n: int) -> int:
        total = 0
        for i in range(n):
            total += noop(i).result()
        return total

    @entrypoint(name="bench_three")
    def three(n: int) -> int:
        return sum(noop(n + k).result() for k in range(3))

    @entrypoint(name="bench_paused")
    def paused(n: int) -> dict[str, Any]:
        total = 0
        for i in range(n):
            total += noop(i).result()
        answer = interrupt("continue?")
        return {"total": total, "answer": answer}

    return {"seq": seq, "three": three, "paused": paused}


def _define_async() -> dict[str, Any]:
    from perdure import entrypoint, interrupt, task

    @task(name="bench_noop")
    async def noop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @entrypoint(name="bench_seq")
    async def seq(n: int) -> int:
        total = 0
        for i in range(n):
            total += await noop(i)
        return total

    @entrypoint(name="bench_three")
    async def three(n: int) -> int:
        total = 0
        for k in range(3):
            total += await noop(n + k)
        return total

    @entrypoint(name="bench_paused")
    async def paused(n: int) -> dict[str, Any]:
        total = 0
        for i in range(n):
            total += await noop(i)
        answer = interrupt("continue?")
        return {"total": total, "answer": answer}

    return {"seq": seq, "three": three, "paused": paused}


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


async def _perdure_worker(args: argparse.Namespace, after_import: Stopwatch) -> dict[str, Any]:
    import perdure

    wf = _define(args.style)
    out: dict[str, Any] = {}
    async with perdure.Runtime(path=args.dir, durability=args.durability) as rt:
        del rt  # ainvoke finds the open runtime through a context variable
        if args.workload in ("seq", "fanout"):
            await wf["seq"].ainvoke(3, _cfg("warmup"))
        if args.workload == "seq":
            start = Stopwatch()
            total = await wf["seq"].ainvoke(args.n, _cfg("seq"))
            start.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "fanout":
            start = Stopwatch()
            results = await asyncio.gather(
                *(wf["three"].ainvoke(w, _cfg(f"wf-{w}")) for w in range(args.workflows))
            )
            start.stop(out)
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "resume-setup":
            start = Stopwatch()
            res = await wf["paused"].ainvoke(args.n, _cfg("paused"))
            start.stop(out)
            assert "__interrupt__" in res, res
        elif args.workload == "resume":
            res = await wf["paused"].ainvoke(perdure.Command(resume=True), _cfg("paused"))
            after_import.stop(out)
            assert res == {"total": args.n * (args.n - 1) // 2, "answer": True}, res
    if args.workload == "resume":
        after_import.stop(out, "seconds_incl_close")
    return out


def raw_commits(directory: str, n: int) -> dict[str, Any]:
    """`n` py-lmdb write transactions of one ~300-byte put, each fsync'd (sync + metasync).

    What one durable LMDB commit costs: two flushes (data pages, then the meta
    page). perdure no longer pays it per batch (its journal flushes once); the
    row shows what that saves.
    """
    import lmdb

    env = lmdb.open(directory, map_size=1 << 30, sync=True, metasync=True, writemap=False)
    value = b"r" * 300
    with env.begin(write=True) as txn:  # warm-up: create the file's first pages
        txn.put(b"warm", value)
    out: dict[str, Any] = {}
    start = Stopwatch()
    for i in range(n):
        with env.begin(write=True) as txn:
            txn.put(b"run\x00%016x" % i, value)
    start.stop(out)
    env.close()
    return out


def raw_flushes(directory: str, n: int) -> dict[str, Any]:
    """The disk's floor: `n` synchronous 4 KiB writes, as perdure's journal makes them.

    ``O_DSYNC`` (plus ``O_DIRECT`` where the filesystem has it) from an aligned
    buffer into a preallocated file: one device flush each. No durable task can
    be faster than one of these.
    """
    import mmap

    path = os.path.join(directory, "flush.bin")
    with open(path, "wb") as f:
        f.write(bytes(n * 4096))
        f.flush()
        os.fsync(f.fileno())
    flags = os.O_RDWR | os.O_DSYNC
    try:
        fd = os.open(path, flags | getattr(os, "O_DIRECT", 0))
    except OSError:
        fd = os.open(path, flags)
    buffer = mmap.mmap(-1, 4096)
    buffer.write(b"r" * 4096)
    out: dict[str, Any] = {}
    with memoryview(buffer) as page:
        start = Stopwatch()
        for i in range(n):
            os.pwrite(fd, page, i * 4096)
        start.stop(out)
    os.close(fd)
    buffer.close()
    return out


def worker_main(args: argparse.Namespace) -> int:
    if args.workload == "raw-commit":
        sys.stdout.write(json.dumps(raw_commits(args.dir, args.n)) + "\n")
        return 0
    if args.workload == "raw-flush":
        sys.stdout.write(json.dumps(raw_flushes(args.dir, args.n)) + "\n")
        return 0
    import_start = Stopwatch()
    import perdure  # noqa: F401

    after_import = Stopwatch()
    if not args.info_logs:
        quiet_logs()
    out: dict[str, Any] = {"import_s": after_import.wall - import_start.wall}
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        out.update(profiler.runcall(asyncio.run, _perdure_worker(args, after_import)))
        profiler.dump_stats(args.profile)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
    else:
        out.update(asyncio.run(_perdure_worker(args, after_import)))
    out["executed"] = EXECUTED[0]
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


# -- the orchestrator ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, lg_python: str | None) -> None:
        self.args = args
        self.lg_python = lg_python
        self.root = tempfile.mkdtemp(prefix="perdure-bench-wf-")
        self.results: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}

    def cmd(
        self, variant: tuple[str, str, str], workload: str, directory: str, n: int
    ) -> list[str]:
        system, style, durability = variant
        common = [
            workload,
            "--dir",
            directory,
            "--n",
            str(n),
            "--workflows",
            str(self.args.workflows),
            "--style",
            style,
            "--durability",
            durability,
        ]
        if system in ("perdure", "lmdb", "disk"):
            logs = ["--info-logs"] if self.args.info_logs else []
            return [sys.executable, os.path.abspath(__file__), "--worker", *logs, *common]
        assert self.lg_python is not None
        return [self.lg_python, os.path.join(BENCH_DIR, "langgraph_peer.py"), *common]

    def fresh_dir(self) -> str:
        return tempfile.mkdtemp(dir=self.root)

    def record(self, variant: tuple[str, str, str], workload: str, result: dict[str, Any]) -> None:
        self.results.setdefault((workload, *variant), []).append(result)

    def variants(self, resume: bool = False) -> list[tuple[str, str, str]]:
        ours = RESUME_PERDURE_VARIANTS if resume else PERDURE_VARIANTS
        theirs = (
            (RESUME_LANGGRAPH_VARIANTS if resume else LANGGRAPH_VARIANTS) if self.lg_python else []
        )
        if self.args.quick:
            ours = ours[:1]
            theirs = theirs[:1]
        return [*ours, *theirs]

    def run(self) -> None:
        args = self.args
        try:
            for r in range(args.repeats):
                log(f"[{r + 1}/{args.repeats}] raw flushes and LMDB commits")
                for floor, name in ((RAW_FLUSH, "raw-flush"), (RAW_COMMIT, "raw-commit")):
                    raw = self.cmd(floor, name, self.fresh_dir(), args.seq_tasks)
                    self.record(floor, "seq", run_json(raw))
                for variant in self.variants():
                    for workload, n in (("seq", args.seq_tasks), ("fanout", 3)):
                        log(f"[{r + 1}/{args.repeats}] {workload} {'/'.join(variant)}")
                        cmd = self.cmd(variant, workload, self.fresh_dir(), n)
                        res = run_json(cmd, timeout=300)  # seconds normally; a hang is a bug
                        self.record(variant, workload, res)
            for variant in self.variants(resume=True):
                base = self.fresh_dir()
                log(f"resume-setup ({args.resume_tasks} tasks) {'/'.join(variant)}")
                res = run_json(
                    self.cmd(variant, "resume-setup", base, args.resume_tasks), timeout=3600
                )
                self.record(variant, "resume-setup", res)
                for r in range(args.repeats):
                    copy = os.path.join(self.fresh_dir(), "store")
                    shutil.copytree(base, copy)
                    log(f"[{r + 1}/{args.repeats}] resume {'/'.join(variant)}")
                    res = run_json(
                        self.cmd(variant, "resume", copy, args.resume_tasks), timeout=3600
                    )
                    self.record(variant, "resume", res)
                    shutil.rmtree(copy, ignore_errors=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- reporting ----------------------------------------------------------------------------

    def seconds(self, workload: str, variant: tuple[str, str, str]) -> list[float]:
        return [r["seconds"] for r in self.results.get((workload, *variant), [])]

    def best_langgraph(self, workload: str) -> float | None:
        meds = [
            median(self.seconds(workload, v))
            for v in LANGGRAPH_VARIANTS
            if self.seconds(workload, v)
        ]
        return min(meds) if meds else None

    def report(self) -> str:
        args = self.args
        rows: list[list[str]] = []
        specs = [
            ("seq", f"{args.seq_tasks} sequential tasks, µs/task", 1e6 / args.seq_tasks, "{:.0f}"),
            ("fanout", f"{args.workflows} workflows x 3 tasks, s", 1.0, "{:.2f}"),
            (
                "resume-setup",
                f"record {args.resume_tasks} tasks, µs/task",
                1e6 / args.resume_tasks,
                "{:.0f}",
            ),
            ("resume", f"resume after {args.resume_tasks} tasks, s after import", 1.0, "{:.3f}"),
        ]
        for workload, label, scale, fmt in specs:
            lg = self.best_langgraph(workload)
            for variant in [RAW_FLUSH, RAW_COMMIT, *PERDURE_VARIANTS, *LANGGRAPH_VARIANTS]:
                values = self.seconds(workload, variant)
                if not values:
                    continue
                raw_row = variant in (RAW_FLUSH, RAW_COMMIT)
                ratio = f"{lg / median(values):.1f}x" if lg and not raw_row else "-"
                extra = ""
                if variant == RAW_FLUSH:
                    extra = "floor: one synchronous 4 KiB write (a journal frame)"
                if variant == RAW_COMMIT:
                    extra = "one fsync'd LMDB commit (two flushes), for reference"
                if workload == "fanout":
                    extra = f"{args.workflows / median(values):,.0f} wf/s"
                if workload == "resume":
                    again = [
                        r.get("reexecuted", r.get("executed", 0))
                        for r in self.results[(workload, *variant)]
                    ]
                    extra = f"task bodies re-run: {max(again)}"
                cpu = [r["cpu_s"] for r in self.results[(workload, *variant)]]
                rows.append(
                    [
                        label,
                        "/".join(variant),
                        spread(values, scale, fmt),
                        ratio,
                        f"{median(cpu) * scale:{fmt[2:-1]}}",
                        extra,
                    ]
                )
        lines = [
            f"bench_workflows — {machine()}; medians of {args.repeats} run(s) (min-max)",
            "variant = system/style/durability; "
            "speedup = best LangGraph variant's median / this median; "
            "CPU = process CPU time (all threads), same unit, median",
            "",
            table(["workload", "variant", "median (min-max)", "speedup", "CPU", "note"], rows),
            "",
            self.targets(),
        ]
        if args.quick:
            lines.append(
                "(--quick: tiny sizes, a smoke test; the verdicts above mean nothing here)"
            )
        return "\n".join(lines)

    def targets(self) -> str:
        ours = PERDURE_VARIANTS[0]
        seq = self.seconds("seq", ours)
        fan = self.seconds("fanout", ours)
        res = self.seconds("resume", ours)
        lg_seq, lg_fan = self.best_langgraph("seq"), self.best_langgraph("fanout")
        out = [f"Targets ({'/'.join(ours)} vs the best LangGraph variant):"]
        raw = self.seconds("seq", RAW_FLUSH)
        if seq and lg_seq:
            ratio = median(seq) / lg_seq
            out.append(
                f"- per-task overhead {ratio:.2f} of LangGraph's (target <= 0.33): "
                f"{_ok(ratio <= 1 / 3)}"
            )
            if raw:
                floor, above = median(raw), median(seq) - median(raw)
                n = self.args.seq_tasks
                out.append(
                    f"  (of which the disk's flush {floor / n * 1e6:.0f} µs, perdure's "
                    f"own {above / n * 1e6:.0f} µs = {above / lg_seq:.2f} of LangGraph's per-task)"
                )
        if fan and lg_fan:
            ratio = lg_fan / median(fan)
            out.append(
                f"- {self.args.workflows}-workflow throughput {ratio:.1f}x LangGraph's "
                f"(target >= 10x): {_ok(ratio >= 10)}"
            )
        if res:
            m = median(res)
            out.append(
                f"- {self.args.resume_tasks}-task resume {m:.3f} s after import "
                f"(target < 0.3 s): {_ok(m < 0.3)}"
            )
        return "\n".join(out)


def _ok(flag: bool) -> str:
    return "MET" if flag else "MISSED"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="perdure vs LangGraph workflow benchmarks")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("workload", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--style", default="async", help=argparse.SUPPRESS)
    parser.add_argument("--durability", default="fsync", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="OUT.pstats",
        help="with --worker: run the workload under cProfile, save the stats, print the top 25",
    )
    parser.add_argument(
        "--info-logs", action="store_true", help="keep structlog's default info output (stdout)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq-tasks", type=int, default=200)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--resume-tasks", type=int, default=10_000)
    parser.add_argument(
        "--langgraph-python",
        default=os.environ.get("LANGGRAPH_PYTHON", "/tmp/venv-lg/bin/python"),
        help="interpreter with langgraph + langgraph-checkpoint-sqlite installed",
    )
    parser.add_argument("--no-langgraph", action="store_true", help="measure perdure only")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.repeats, args.seq_tasks, args.workflows, args.resume_tasks = 1, 20, 20, 200

    lg_python: str | None = None
    if not args.no_langgraph:
        why = python_works(args.langgraph_python, "langgraph.func, langgraph.checkpoint.sqlite")
        if why is None:
            lg_python = args.langgraph_python
            version = run_json(
                [args.langgraph_python, os.path.join(BENCH_DIR, "langgraph_peer.py"), "version"]
            )
            log(
                f"LangGraph side: langgraph {version['langgraph']}, "
                f"langgraph-checkpoint-sqlite {version['langgraph-checkpoint-sqlite']}"
            )
        else:
            log(f"LangGraph side SKIPPED ({why}); pass --langgraph-python PATH to compare")
    bench = Bench(args, lg_python)
    bench.run()
    report = bench.report()
    print(report)
    if args.json:
        raw = {"|".join(k): v for k, v in bench.results.items()}
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": raw}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
