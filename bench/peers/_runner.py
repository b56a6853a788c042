"""Run every workload for every system, each in its own fresh interpreter, and write the results.

Systems live in different virtualenvs (perdure's dev venv, one with LangGraph,
one with DBOS); a system whose interpreter cannot import it is skipped with a
message. Every repeat of every workload is a new process on a new store in the
same scratch directory (same disk), and the systems alternate within a repeat,
so machine noise hits them alike. W3's recorded run is built once per system
and size and copied for each repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS_MD = os.path.join(HERE, "results.md")
CHART_PNG = os.path.join(REPO, "docs", "assets", "peers.png")


@dataclass(frozen=True)
class System:
    label: str  # as shown in the table
    module: str  # worker script in this directory
    check: str  # what its interpreter must import
    variant: str
    workloads: tuple[str, ...] = ("w1", "w2", "w3", "w4")


SYSTEMS = (
    System("perdure (fsync)", "perdure_w.py", "perdure", "fsync"),
    System("perdure (process)", "perdure_w.py", "perdure", "process", ("w1", "w2")),
    System("LangGraph (durability=sync)", "langgraph_w.py", "langgraph.func", "sync"),
    System(
        "LangGraph (durability=async)", "langgraph_w.py", "langgraph.func", "async", ("w1", "w2")
    ),
    System("DBOS", "dbos_w.py", "dbos", ""),
)
BASELINE = SYSTEMS[0].label


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def works(python: str | None, module: str) -> str | None:
    """None if `python` imports `module`, else why not."""
    if not python or not os.path.exists(python):
        return f"no interpreter ({python})"
    proc = subprocess.run(
        [python, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return f"{python} cannot import {module}: {last[0]}"
    return None


def run_worker(python: str, system: System, workload: str, **kw: Any) -> dict[str, Any]:
    """One workload in a fresh process; its last stdout line is the JSON result."""
    cmd = [python, os.path.join(HERE, system.module), workload, "--variant", system.variant]
    for key, value in kw.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    cmd += ["--spawn-time", repr(time.time())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pythons: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        # (row label, system label) -> results of the repeats
        self.results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.root = tempfile.mkdtemp(prefix="perdure-peers-", dir=args.scratch)

    def interpreters(self) -> None:
        candidates = {
            "perdure": [sys.executable],
            "langgraph.func": [self.args.langgraph_python, sys.executable],
            "dbos": [self.args.dbos_python, sys.executable],
        }
        for system in SYSTEMS:
            if system.check in self.pythons or system.check in self.skipped:
                continue
            reasons = []
            for python in candidates[system.check]:
                why = works(python, system.check)
                if why is None:
                    self.pythons[system.check] = python
                    version = run_worker(python, system, "version")["version"]
                    self.versions[system.check] = str(version)
                    break
                reasons.append(why)
            else:
                self.skipped[system.check] = "; ".join(reasons)
                log(f"SKIPPED {system.check.split('.')[0]}: {self.skipped[system.check]}")

    def active(self) -> list[System]:
        return [s for s in SYSTEMS if s.check in self.pythons]

    def fresh(self) -> str:
        return tempfile.mkdtemp(dir=self.root)

    def record(self, row: str, system: System, result: dict[str, Any]) -> None:
        self.results.setdefault((row, system.label), []).append(result)

    def run(self) -> None:
        a = self.args
        try:
            for r in range(a.repeats):
                for system in self.active():
                    py = self.pythons[system.check]
                    tag = f"[{r + 1}/{a.repeats}] {system.label}"
                    if "w1" in system.workloads:
                        log(f"{tag} W1")
                        res = run_worker(py, system, "w1", dir=self.fresh(), n=a.steps)
                        self.record("W1", system, res)
                    if "w2" in system.workloads:
                        log(f"{tag} W2")
                        res = run_worker(py, system, "w2", dir=self.fresh(), workflows=a.workflows)
                        self.record("W2", system, res)
                    if "w4" in system.workloads:
                        log(f"{tag} W4")
                        res = run_worker(py, system, "w4", dir=self.fresh(), n=a.calls)
                        self.record("W4", system, res)
            for n in a.resume:
                for system in self.active():
                    if "w3" not in system.workloads:
                        continue
                    py = self.pythons[system.check]
                    base = self.fresh()
                    log(f"{system.label} W3 setup: {n} steps")
                    run_worker(py, system, "w3-setup", dir=base, n=n)
                    for r in range(a.repeats):
                        log(f"[{r + 1}/{a.repeats}] {system.label} W3 resume after {n} steps")
                        copy = os.path.join(self.fresh(), "store")
                        shutil.copytree(base, copy)
                        res = run_worker(py, system, "w3", dir=copy, n=n)
                        self.record(f"W3 {n}", system, res)
                        shutil.rmtree(copy, ignore_errors=True)
                    shutil.rmtree(base, ignore_errors=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- reporting --------------------------------------------------------------------------

    def values(self, row: str, system: str, key: str = "seconds") -> list[float]:
        return [float(r[key]) for r in self.results.get((row, system), []) if key in r]

    def rows(self) -> list[tuple[str, str, str, float, str]]:
        """(row key, result key, label, display scale, unit) for every table line."""
        a = self.args
        out = [
            ("W1", "seconds", f"W1: 1 workflow x {a.steps} sequential steps", 1e3, "ms"),
            ("W2", "seconds", f"W2: {a.workflows} concurrent workflows x 3 steps", 1e3, "ms"),
        ]
        for n in a.resume:
            out.append(
                (
                    f"W3 {n}",
                    "seconds_from_spawn",
                    f"W3: resume after {n:,} steps, from process start",
                    1e3,
                    "ms",
                )
            )
            out.append(
                (f"W3 {n}", "seconds", f"W3: resume after {n:,} steps, after import", 1e3, "ms")
            )
        out.append(("W4", "seconds", "W4: idempotent call served from the log", 1e6, "µs"))
        return out

    def markdown(self) -> str:
        a = self.args
        lines = [
            "# perdure vs peers: measured figures",
            "",
            f"Generated by `python -m bench.peers{' --quick' if a.quick else ''}` on "
            f"{time.strftime('%Y-%m-%d')}: Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"stores on the same disk ({a.scratch or tempfile.gettempdir()}). "
            f"{a.repeats} repetition(s) per figure, each in a fresh process; "
            "median, with min in brackets. Versions: "
            + "; ".join(f"{v}" for v in self.versions.values())
            + ".",
            "",
            "Ratio = the peer's median / perdure (fsync)'s median: above 1 perdure is faster, "
            "below 1 **the peer is faster**. CPU = process CPU time (median), same unit.",
            "",
            "| workload | system | median (min) | CPU | ratio vs perdure (fsync) | note |",
            "|---|---|---|---|---|---|",
        ]
        for row, key, label, scale, unit in self.rows():
            base = self.values(row, BASELINE, key)
            for system in self.active():
                vals = self.values(row, system.label, key)
                if not vals:
                    continue
                med = statistics.median(vals)
                cpu = self.values(row, system.label, "cpu_s")
                ratio = (
                    "-"
                    if system.label == BASELINE or not base
                    else (f"{med / statistics.median(base):.2f}x")
                )
                note = ""
                if row.startswith("W3"):
                    again = max(r.get("reexecuted", 0) for r in self.results[(row, system.label)])
                    note = f"step bodies re-run: {again}"
                cpu_txt = f"{statistics.median(cpu) * scale:,.1f}" if cpu else "-"
                if key == "seconds_from_spawn":
                    cpu_txt = "-"
                lines.append(
                    f"| {label} | {system.label} | {med * scale:,.1f} {unit} "
                    f"({min(vals) * scale:,.1f}) | {cpu_txt} | {ratio} | {note} |"
                )
        lines += ["", *self.verdict(), "", *GUARANTEES]
        for name, why in self.skipped.items():
            lines.append(f"- **{name.split('.')[0]} was skipped in this run**: {why}")
        if a.quick:
            lines += ["", "(--quick: tiny sizes, a smoke test of the harness; not figures.)"]
        return "\n".join(lines) + "\n"

    def verdict(self) -> list[str]:
        """Where a peer beat perdure (fsync), plainly; and where wall time was mostly waiting."""
        wins, idle = [], []
        for row, key, label, _, _ in self.rows():
            base = self.values(row, BASELINE, key)
            for system in self.active():
                vals = self.values(row, system.label, key)
                if not base or not vals or system.check == "perdure":
                    continue
                ratio = statistics.median(vals) / statistics.median(base)
                if ratio < 1:
                    wins.append(f"{label}: {system.label} ({1 / ratio:.2f}x faster)")
                cpu = self.values(row, system.label, "cpu_s")
                if (
                    key == "seconds"
                    and cpu
                    and statistics.median(cpu) < statistics.median(vals) / 2
                ):
                    idle.append(f"{label}: {system.label}")
        out = ["Where a peer is faster than perdure (fsync) in this run:", ""]
        out += [f"- {w}" for w in wins] or ["- nowhere, on any of the workloads above."]
        if idle:
            out += [
                "",
                "Less than half of the wall time was CPU time (the process was mostly waiting: "
                "on fsync, on polling, or on a background thread) for:",
                "",
                *[f"- {i}" for i in idle],
            ]
        return out

    def chart(self, out: str) -> str | None:
        """Draw the PNG with the first interpreter that has matplotlib; None if none has."""
        labels = {
            row: label.split(",")[0] if row.startswith("W3") else label.split(":")[0]
            for row, _, label, _, _ in self.rows()
        }
        workloads, medians = [], {}
        for row, key, _, _, _ in self.rows():
            if key == "seconds" and row.startswith("W3"):
                continue  # the chart shows W3 from process start
            name = labels[row] if not row.startswith("W3") else f"W3 ({row[3:]} steps)"
            if row == "W4":
                name = "W4 (per call)"
            workloads.append(name)
            medians[name] = {
                s.label: statistics.median(v)
                for s in self.active()
                if (v := self.values(row, s.label, key))
            }
        data = {
            "workloads": workloads,
            "systems": [s.label for s in self.active()],
            "medians": medians,
            "title": f"median time per workload, {self.args.repeats} runs each (lower is better)",
        }
        for python in [sys.executable, self.args.dbos_python, self.args.langgraph_python]:
            if python and works(python, "matplotlib") is None:
                with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
                    json.dump(data, fh)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                cmd = [python, os.path.join(HERE, "_chart.py"), fh.name, out]
                subprocess.run(cmd, check=True)
                os.unlink(fh.name)
                return out
        return None


GUARANTEES = [
    "What each system guarantees in the configuration measured:",
    "",
    '- **perdure (fsync)**: `LmdbEventLog` with `durability="fsync"` (the default). A step\'s '
    "result is on disk (an O_DSYNC write of the store's journal; LMDB commits right behind "
    "it) before the workflow goes on (concurrent runs share each write); it survives power "
    "loss.",
    '- **perdure (process)**: `durability="process"`: commits reach the OS page cache, not '
    "the disk; they survive a crash of the process, not of the machine.",
    "- **LangGraph (durability=sync)**: `SqliteSaver` on a file DB (W2: `AsyncSqliteSaver`, "
    "since `SqliteSaver` cannot run workflows concurrently); LangGraph puts it in WAL mode, "
    "sqlite's default `synchronous=FULL` fsyncs the WAL at every commit; each step's "
    "checkpoint is written before the next step starts. Survives power loss.",
    "- **LangGraph (durability=async)**: LangGraph's default: a step's checkpoint is written "
    "in the background while the next step runs, so a crash can lose the last step; all "
    "is on disk when `invoke` returns.",
    "- **DBOS**: SQLite system database with DBOS's settings (rollback journal, "
    "`synchronous=FULL`): each step's output is committed (fsync'd) before the workflow "
    "goes on. Survives power loss. Its wait/poll intervals were lowered to 10 ms "
    "(default 1 s) so W3 does not measure polling; W3 on DBOS is recovery at launch "
    "followed by `send` to a workflow waiting in `recv`.",
    "- W4 on LangGraph: LangGraph has no idempotency key; the measured idiom uses the key as "
    "the thread id and returns the finished thread's stored value (`get_state`). perdure: "
    "`Runtime.run(..., idempotency_key=key)`; DBOS: `SetWorkflowID(key)`.",
    "",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description="perdure vs LangGraph and DBOS, same machine"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (CI smoke)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="W1 steps")
    parser.add_argument("--workflows", type=int, default=1000, help="W2 workflows")
    parser.add_argument("--resume", type=int, nargs="+", default=[1000, 10_000], help="W3 sizes")
    parser.add_argument("--calls", type=int, default=200, help="W4 repeated calls, averaged")
    parser.add_argument(
        "--langgraph-python",
        default=os.environ.get("LANGGRAPH_PYTHON", "/tmp/venv-lg/bin/python"),
    )
    parser.add_argument(
        "--dbos-python", default=os.environ.get("DBOS_PYTHON", "/tmp/venv-dbos/bin/python")
    )
    parser.add_argument("--json", help="also write every raw result here")
    parser.add_argument("--scratch", help="directory for the stores (default: the temp dir)")
    parser.add_argument("--out", default=None, help=f"results file (default {RESULTS_MD})")
    parser.add_argument("--chart", default=None, help=f"PNG chart (default {CHART_PNG})")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.workflows, args.resume, args.calls = 1, 10, 10, [30], 5
    bench = Bench(args)
    bench.interpreters()
    bench.run()
    if args.json:
        with open(args.json, "w") as fh:
            raw = {" | ".join(k): v for k, v in bench.results.items()}
            json.dump({"args": vars(args), "results": raw}, fh, indent=1)
    text = bench.markdown()
    print(text)
    # --quick must not overwrite the published figures unless asked to.
    out = args.out or (None if args.quick else RESULTS_MD)
    if out:
        with open(out, "w") as fh:
            fh.write(text)
        log(f"wrote {out}")
    chart = args.chart or (None if args.quick else CHART_PNG)
    if chart:
        drawn = bench.chart(chart)
        log(f"wrote {drawn}" if drawn else "no interpreter with matplotlib: chart not drawn")
    return 0
