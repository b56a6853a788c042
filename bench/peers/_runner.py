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

from bench.peers._worker import WORKLOADS

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS_MD = os.path.join(HERE, "results.md")
CHART_PNG = os.path.join(REPO, "docs", "assets", "peers.png")


@dataclass(frozen=True)
class System:
    label: str  # as shown in the table
    module: str  # worker script (the system's adapter) in this directory
    check: str  # what its interpreter must import
    variant: str
    workloads: tuple[str, ...]


ALL = ("w1", "w1s", "w2", "w2seq", "w2thr", "w3", "w4", "w4a", "w4inv")
SYSTEMS = (
    System("disk", "disk_w.py", "os", "", ("raw",)),
    System("perdure (fsync)", "perdure_w.py", "perdure", "fsync", ALL),
    System("perdure (process)", "perdure_w.py", "perdure", "process", ("w1", "w1s", "w2")),
    System(
        "LangGraph (durability=sync)",
        "langgraph_w.py",
        "langgraph.func",
        "sync",
        ("w1", "w1s", "w2", "w2seq", "w2thr", "w3", "w4", "w4inv"),
    ),
    System(
        "LangGraph (durability=async)",
        "langgraph_w.py",
        "langgraph.func",
        "async",
        ("w1", "w1s", "w2", "w2seq"),
    ),
    System("DBOS", "dbos_w.py", "dbos", "", ("w1", "w1s", "w2", "w2seq", "w2thr", "w3", "w4")),
)
BASELINE = SYSTEMS[1].label
DISK = SYSTEMS[0].label


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
            "os": [sys.executable],
            "perdure": [sys.executable],
            "langgraph.func": (
                [self.args.langgraph_python, sys.executable] if self.args.langgraph_python else []
            ),
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

    def size(self, workload: str) -> dict[str, int]:
        a = self.args
        option = WORKLOADS[workload][1]
        if option == "steps":
            return {"n": a.steps}
        if option == "workflows":
            return {"workflows": a.workflows}
        return {"n": a.calls}

    def run(self) -> None:
        """Repeat-major, systems interleaved inside each repeat: noise hits them alike."""
        a = self.args
        order = [w for w in WORKLOADS if w != "w3"]
        try:
            for r in range(a.repeats):
                for workload in order:
                    for system in self.active():
                        if workload not in system.workloads or workload not in a.only:
                            continue
                        py = self.pythons[system.check]
                        log(f"[{r + 1}/{a.repeats}] {system.label} {workload}")
                        res = run_worker(
                            py, system, workload, dir=self.fresh(), **self.size(workload)
                        )
                        self.record(workload, system, res)
            if "w3" in a.only:
                self.resume()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def resume(self) -> None:
        """W3: each system records its paused run once per size, then resumes copies of it."""
        a = self.args
        for n in a.resume:
            bases: dict[str, str] = {}
            systems = [
                s
                for s in self.active()
                if "w3" in s.workloads
                and (
                    s.check == "perdure"
                    or n <= (a.resume_dbos_max if s.check == "dbos" else a.resume_peers_max)
                )
            ]
            for system in systems:
                bases[system.label] = self.fresh()
                log(f"{system.label} W3 setup: {n} steps")
                py = self.pythons[system.check]
                run_worker(py, system, "w3-setup", dir=bases[system.label], n=n)
            for r in range(a.repeats):
                for system in systems:
                    log(f"[{r + 1}/{a.repeats}] {system.label} W3 resume after {n} steps")
                    copy = os.path.join(self.fresh(), "store")
                    shutil.copytree(bases[system.label], copy)
                    py = self.pythons[system.check]
                    res = run_worker(py, system, "w3", dir=copy, n=n)
                    self.record(f"w3 {n}", system, res)
                    shutil.rmtree(copy, ignore_errors=True)
            for base in bases.values():
                shutil.rmtree(base, ignore_errors=True)

    # -- reporting --------------------------------------------------------------------------

    def values(self, row: str, system: str, key: str = "seconds") -> list[float]:
        """The repeats' figures of `row` for `system`, in seconds per reported unit."""
        per = WORKLOADS[row.split(maxsplit=1)[0]][4]
        div = self.args.steps if per == "step" else 1
        return [float(r[key]) / div for r in self.results.get((row, system), []) if key in r]

    def rows(self) -> list[tuple[str, str, str, float, str]]:
        """(row key, result key, label, display scale, unit) for every table line."""
        a = self.args
        out = []
        for workload, (title, _, unit, scale, _) in WORKLOADS.items():
            label = title.replace("N ", f"{a.steps} ").replace("M ", f"{a.workflows:,} ")
            if workload != "w3":
                out.append((workload, "seconds", label, scale, unit))
                continue
            for n in a.resume:
                label = f"W3: resume a paused run after {n:,} steps"
                out.append((f"w3 {n}", "seconds", f"{label}, after import", 1e3, "ms"))
                out.append((f"w3 {n}", "seconds_from_spawn", f"{label}, from spawn", 1e3, "ms"))
        return out

    def raw(self) -> float | None:
        vals = self.values("raw", DISK)
        return statistics.median(vals) if vals else None

    def markdown(self) -> str:
        a = self.args
        lines = [
            "# perdure vs peers: measured figures",
            "",
            f"Generated by `python -m bench.peers{' --quick' if a.quick else ''}` on "
            f"{time.strftime('%Y-%m-%d %H:%M')}: Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"stores on the same disk ({a.scratch or tempfile.gettempdir()}). "
            f"{a.repeats} repetition(s) per figure, each in a fresh process, the systems "
            "interleaved within each repetition; median, with min in brackets. Versions: "
            + "; ".join(f"{v}" for v in self.versions.values())
            + ".",
            "",
            "Ratio = the system's median / perdure (fsync)'s median: above 1 perdure is faster, "
            "below 1 **that system is faster**. CPU = process CPU time (median), same unit. "
            "x raw = per-step figure / one raw O_DSYNC 4 KiB write measured in this run.",
            "",
            "| workload | system | median (min) | CPU | ratio vs perdure (fsync) | x raw | note |",
            "|---|---|---|---|---|---|---|",
        ]
        raw = self.raw()
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
                    if system.label == BASELINE or not base or system.label == DISK
                    else (f"{med / statistics.median(base):.2f}x")
                )
                per_step = WORKLOADS[row.split()[0]][4] == "step"
                xraw = f"{med / raw:.2f}" if raw and per_step and key == "seconds" else "-"
                note = ""
                if row.startswith("w3"):
                    again = max(r.get("reexecuted", 0) for r in self.results[(row, system.label)])
                    note = f"step bodies re-run: {again}"
                cpu_txt = f"{statistics.median(cpu) * scale:,.1f}" if cpu else "-"
                if key == "seconds_from_spawn":
                    cpu_txt = "-"
                lines.append(
                    f"| {label} | {system.label} | {med * scale:,.1f} {unit} "
                    f"({min(vals) * scale:,.1f}) | {cpu_txt} | {ratio} | {xraw} | {note} |"
                )
        lines += ["", *self.targets(), "", *self.verdict(), "", *GUARANTEES]
        for name, why in self.skipped.items():
            lines.append(f"- **{name.split('.')[0]} was skipped in this run**: {why}")
        if a.quick:
            lines += ["", "(--quick: tiny sizes, a smoke test of the harness; not figures.)"]
        return "\n".join(lines) + "\n"

    def med(self, row: str, system: str, key: str = "seconds") -> float | None:
        vals = self.values(row, system, key)
        return statistics.median(vals) if vals else None

    def targets(self) -> list[str]:
        """Issue 17's targets against this run's figures (MET / MISSED / not measured)."""
        a = self.args
        lg = "LangGraph (durability=sync)"
        lines = ["Issue 17's targets in this run:", ""]

        def line(text: str, value: float | None, ok: bool | None) -> None:
            verdict = "not measured" if value is None else ("MET" if ok else "MISSED")
            shown = "" if value is None else f" — {value:,.2f}"
            lines.append(f"- {text}{shown}: **{verdict}**")

        w1, w1s, raw = self.med("w1", BASELINE), self.med("w1s", BASELINE), self.raw()
        r = w1s / w1 if w1 and w1s else None
        line("sync W1 per step / async W1 per step ≤ 1.25", r, r is not None and r <= 1.25)
        for name, v in (("async", w1), ("sync", w1s)):
            r = v / raw if v and raw else None
            line(f"W1 {name} per step / raw write ≤ 2", r, r is not None and r <= 2)
        mine, theirs = self.med("w2seq", BASELINE), self.med("w2seq", lg)
        r = theirs / mine if mine and theirs else None
        line("sequential invoke: LangGraph's time / perdure's ≥ 4", r, r is not None and r >= 4)
        thr, gather = self.med("w2thr", BASELINE), self.med("w2", BASELINE)
        r = gather / thr if thr and gather else None
        line("8 threads' throughput / ainvoke+gather's ≥ 0.5", r, r is not None and r >= 0.5)
        for w in ("w4", "w4inv"):
            v = self.med(w, BASELINE)
            us = v * 1e6 if v else None
            line(f"{WORKLOADS[w][0]}, µs < 50", us, us is not None and us < 50)
        for n, limit in ((10_000, 0.15), (100_000, 1.0)):
            v = self.med(f"w3 {n}", BASELINE) if n in a.resume else None
            line(
                f"resume after {n:,} steps, s after import < {limit}",
                v,
                v is not None and v < limit,
            )
        small = min(a.resume)
        v, peer = self.med(f"w3 {small}", BASELINE), self.med(f"w3 {small}", lg)
        ms = v * 1e3 if v else None
        ok = ms is not None and ms < 10 and (peer is None or (v is not None and v < peer))
        line(
            f"resume a waiting run ({small} steps), ms after import < 10 and < LangGraph's", ms, ok
        )
        return lines

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
        """Draw the PNG with the first interpreter that has matplotlib; None if none has.

        One panel per workload; per system, how many times perdure (fsync) is faster
        (the peer's median / perdure's), written on each bar; missing ones marked.
        """
        panels = []
        for row, key, label, scale, unit in self.rows():
            if row == "raw" or key == "seconds_from_spawn":
                continue
            base = self.med(row, BASELINE, key)
            bars = []
            for s in self.active():
                if s.label in (BASELINE, DISK):
                    continue
                v = self.med(row, s.label, key)
                bars.append([s.label, v / base if v and base else None])
            mine = f"perdure: {base * scale:,.1f} {unit}" if base else "perdure: not measured"
            panels.append({"title": label, "perdure": mine, "bars": bars})
        data = {
            "panels": panels,
            "title": (
                f"how many times faster perdure (fsync) is than each peer — medians of "
                f"{self.args.repeats} fresh-process runs (below 1: the peer is faster)"
            ),
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
    "W4 sync is `Client(store=...).run(..., idempotency_key=key)` from plain sync code, W4 async "
    "`await Runtime.run(..., idempotency_key=key)`; DBOS: `SetWorkflowID(key)`. W4 invoke: "
    "`invoke(None, cfg)` on a finished thread (perdure and LangGraph return the stored value).",
    "- The sync workloads (W1 sync, W2 sequential/threads, W4 sync, W4 invoke) are plain "
    "synchronous code: perdure's `def` entrypoint with `def` tasks (`task(...).result()`) and "
    "`invoke` with the store as checkpointer (calls go to perdure's background runtime); "
    "LangGraph's `SqliteSaver`; DBOS's sync workflows and steps.",
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
    parser.add_argument(
        "--resume", type=int, nargs="+", default=[3, 10_000, 100_000], help="W3 sizes (steps)"
    )
    parser.add_argument(
        "--resume-peers-max",
        type=int,
        default=10_000,
        help="larger W3 sizes run for perdure only (LangGraph takes minutes per 10,000 steps)",
    )
    parser.add_argument(
        "--resume-dbos-max",
        type=int,
        default=1_000,
        help="larger W3 sizes skip DBOS (recording takes ~30 ms a step on SQLite here)",
    )
    parser.add_argument(
        "--only", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS), help="workloads"
    )
    parser.add_argument("--calls", type=int, default=200, help="W4 repeated calls, averaged")
    parser.add_argument(
        "--langgraph-python",
        default=os.environ.get("LANGGRAPH_PYTHON", "/tmp/venv-lg/bin/python"),
    )
    parser.add_argument(
        "--dbos-python", default=os.environ.get("DBOS_PYTHON", "/tmp/venv-dbos/bin/python")
    )
    parser.add_argument("--no-langgraph", action="store_true", help="skip LangGraph")
    parser.add_argument("--json", help="also write every raw result here")
    parser.add_argument("--scratch", help="directory for the stores (default: the temp dir)")
    parser.add_argument("--out", default=None, help=f"results file (default {RESULTS_MD})")
    parser.add_argument("--chart", default=None, help=f"PNG chart (default {CHART_PNG})")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.workflows, args.resume, args.calls = 1, 10, 10, [3, 30], 5
    if args.no_langgraph:
        args.langgraph_python = None
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
