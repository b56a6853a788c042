"""Start-up time of perdure in a fresh process, next to LangGraph's import (issues 17, 18).

Targets: `import perdure` under 120 ms in process (issue 17, as an installed wheel
with its bytecode cached) and ``perdure --help`` / ``--version`` under 0.3 s
(issue 18). Measured per interpreter (the checkout's, an installed wheel's, a
baseline wheel built from an older commit), medians over fresh processes, all
subjects interleaved in each round so load drift hits them alike:

- ``import perdure`` and the realistic ``from perdure import entrypoint, task``:
  in-process (``time.perf_counter()`` around the statement alone), its CPU, and
  wall minus a bare ``python -c pass``;
- ``perdure --help`` and ``--version``: the whole command's wall
  (``python -m perdure``; the console script is the same code behind a stub).

``--top N`` adds the N slowest modules from ``python -X importtime``
(cumulative µs), which is where to look when the figure grows.

The children run without ``PYTHONDONTWRITEBYTECODE``, after one warm-up
import: an installed package has its bytecode cached (pip compiles a wheel at
install), and an editable checkout would otherwise recompile every module on
every import (~40 ms here), which no user sees.

    python bench/bench_import.py --wheel /tmp/pwheel --baseline-wheel /tmp/pbase \
        --baseline-ref main --langgraph-python /tmp/venv-lg/bin/python
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also as `python -m bench.X`
from _common import machine, median, python_works, spread, table

PERDURE_IMPORT = "import perdure"
#: What a program written with perdure starts with.
REALISTIC_IMPORT = "from perdure import entrypoint, task"
IMPORTS = (PERDURE_IMPORT, REALISTIC_IMPORT)
COMMANDS = ("--help", "--version")
#: The children's environment: bytecode caching on (see the module docstring).
_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
LANGGRAPH_IMPORT = "import langgraph.func, langgraph.checkpoint.sqlite"
IMPORT_TARGET_S = 0.120
CLI_TARGET_S = 0.3


def wall(python: str, code: str) -> float:
    return wall_of([python, "-c", code])


def wall_of(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=_ENV)
    return time.perf_counter() - start


def in_process(python: str, statement: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the import statement alone, measured inside a fresh process."""
    code = (
        "import time; t, c = time.perf_counter(), time.process_time(); "
        f"{statement}; print(time.perf_counter() - t, time.process_time() - c)"
    )
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, env=_ENV)
    wall_s, cpu_s = out.stdout.strip().splitlines()[-1].split()
    return float(wall_s), float(cpu_s)


def importtime_top(python: str, statement: str, top: int) -> list[tuple[int, str]]:
    """The `top` modules with the largest cumulative import time (µs), from -X importtime."""

    def parse(code: str) -> list[tuple[int, str]]:
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env=_ENV,
        )
        rows = []
        for line in proc.stderr.splitlines():
            if line.startswith("import time:") and "cumulative" not in line:
                _self_us, cumulative, name = line.removeprefix("import time:").split("|", 2)
                rows.append((int(cumulative), name.strip()))
        return rows

    at_startup = {name for _, name in parse("pass")}
    rows = [row for row in parse(statement) if row[1] not in at_startup]
    rows.sort(reverse=True)
    return rows[:top]


Subject = tuple[str, str, str]  # (label, python, statement or "perdure --FLAG")


def measure(subjects: list[Subject], runs: int) -> dict[Subject, dict[str, list[float]]]:
    """Per subject: in-process, CPU and wall-minus-bare seconds (a command: its wall only)."""
    for _, python, statement in subjects:  # warm-up: writes the bytecode caches
        run_once(python, statement)
    pythons = sorted({python for _, python, _ in subjects})
    bare: dict[str, list[float]] = {python: [] for python in pythons}
    raw: dict[Subject, dict[str, list[float]]] = {
        subject: {"wall": [], "in_process": [], "cpu": []} for subject in subjects
    }
    for _ in range(runs):  # interleaved, so drift hits all of them alike
        for python in pythons:
            bare[python].append(wall(python, "pass"))
        for subject in subjects:
            _, python, statement = subject
            raw[subject]["wall"].append(run_once(python, statement))
            if not statement.startswith("perdure "):
                inner_wall, inner_cpu = in_process(python, statement)
                raw[subject]["in_process"].append(inner_wall)
                raw[subject]["cpu"].append(inner_cpu)
    for subject, res in raw.items():
        res["bare"] = bare[subject[1]]
        if not subject[2].startswith("perdure "):
            base = median(bare[subject[1]])
            res["wall"] = [w - base for w in res["wall"]]
    return raw


def run_once(python: str, statement: str) -> float:
    """Wall seconds of `statement` in a fresh `python`: an import, or ``perdure --FLAG``."""
    if statement.startswith("perdure "):
        return wall_of([python, "-m", "perdure", *statement.split()[1:]])
    return wall(python, statement)


def wheel_python(venv: str, ref: str | None = None) -> str:
    """The interpreter of `venv`, where perdure is installed from a wheel of this checkout
    (of commit `ref` if given: its tree, exported with ``git archive``)."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        dist = os.path.join(venv, "dist")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        if ref is not None:
            source = os.path.join(venv, "src")
            os.makedirs(source)
            archive = subprocess.run(
                ["git", "-C", repo, "archive", ref], check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", source], input=archive, check=True)
            repo = source
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, repo], check=True
        )
        wheels = [os.path.join(dist, f) for f in os.listdir(dist) if f.endswith(".whl")]
        subprocess.run([python, "-m", "pip", "install", "-q", *wheels], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start-up time of perdure vs LangGraph")
    parser.add_argument("--quick", action="store_true", help="3 runs (CI smoke)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=0, help="show the N slowest modules")
    parser.add_argument(
        "--langgraph-python",
        default=os.environ.get("LANGGRAPH_PYTHON", "/tmp/venv-lg/bin/python"),
    )
    parser.add_argument("--no-langgraph", action="store_true")
    parser.add_argument(
        "--wheel",
        metavar="VENV",
        help="also measure perdure installed as a wheel in VENV (built and installed there "
        "with pip, with its dependencies, if VENV does not exist yet)",
    )
    parser.add_argument(
        "--baseline-wheel",
        metavar="VENV",
        help="also measure a wheel of --baseline-ref installed in VENV (an A/B in one run)",
    )
    parser.add_argument("--baseline-ref", default="main", help="the baseline's commit")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 3

    pythons = [("checkout", sys.executable)]
    if args.wheel:
        pythons.append(("wheel", wheel_python(args.wheel)))
    if args.baseline_wheel:
        pythons.append(
            (f"{args.baseline_ref} wheel", wheel_python(args.baseline_wheel, args.baseline_ref))
        )
    subjects: list[Subject] = [
        (label, python, statement)
        for label, python in pythons
        for statement in (*IMPORTS, *(f"perdure {flag}" for flag in COMMANDS))
    ]
    if not args.no_langgraph:
        why = python_works(args.langgraph_python, "langgraph.func, langgraph.checkpoint.sqlite")
        if why is None:
            subjects.append(("langgraph", args.langgraph_python, LANGGRAPH_IMPORT))
        else:
            print(f"LangGraph side SKIPPED ({why})", file=sys.stderr)

    results = measure(subjects, args.runs)
    graph = [res for (label, _, _), res in results.items() if label == "langgraph"]
    rows = []
    for subject, res in results.items():
        label, _, statement = subject
        if statement.startswith("perdure "):
            rows.append([label, f"`{statement}`", "", "", spread(res["wall"], 1e3, "{:.0f}"), ""])
            continue
        ratio = (
            f"{median(graph[0]['in_process']) / median(res['in_process']):.1f}x" if graph else ""
        )
        rows.append(
            [
                label,
                f"`{statement}`",
                spread(res["in_process"], 1e3, "{:.0f}"),
                spread(res["cpu"], 1e3, "{:.0f}"),
                spread(res["wall"], 1e3, "{:.0f}"),
                ratio,
            ]
        )
    print(f"bench_import — {machine()}; medians of {args.runs} fresh processes (min-max), ms")
    print(
        f"(bare interpreter start: {median(results[subjects[0]]['bare']) * 1e3:.0f} ms, "
        "subtracted from an import's wall; a command's wall is the whole command)"
    )
    print()
    headers = ["python", "statement", "in-process ms", "CPU ms", "wall ms", "LangGraph / this"]
    print(table(headers, rows))
    judged = "wheel" if args.wheel else "checkout"
    by = {(label, statement): res for (label, _, statement), res in results.items()}
    ours = median(by[(judged, PERDURE_IMPORT)]["in_process"])
    verdict = "MET" if ours < IMPORT_TARGET_S else "MISSED"
    print(
        f"\nTarget: `import perdure` < {IMPORT_TARGET_S * 1e3:.0f} ms in process ({judged}): "
        f"{ours * 1e3:.0f} ms -> {verdict}"
    )
    for flag in COMMANDS:
        took = median(by[(judged, f"perdure {flag}")]["wall"])
        verdict = "MET" if took < CLI_TARGET_S else "MISSED"
        print(
            f"Target: `perdure {flag}` < {CLI_TARGET_S:.1f} s ({judged}): {took:.3f} s -> {verdict}"
        )
    if args.top:
        for label, python, statement in subjects:
            if statement.startswith("perdure "):
                continue
            print(f"\nslowest modules under `{statement}` ({label}; -X importtime, cumulative ms):")
            for cumulative, module in importtime_top(python, statement, args.top):
                print(f"  {cumulative / 1e3:7.1f}  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
