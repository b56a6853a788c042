"""`import perdure` time in a fresh process (issue 4 target: under 150 ms), next to LangGraph's.

Two figures per package, medians over several fresh processes:

- wall: ``python -c "import X"`` minus ``python -c pass`` (what a CLI user waits);
- in-process: ``time.perf_counter()`` around the import statement alone.

``--top N`` adds the N slowest modules from ``python -X importtime``
(cumulative µs), which is where to look when the figure grows.

The children run without ``PYTHONDONTWRITEBYTECODE``, after one warm-up
import: an installed package has its bytecode cached (pip compiles a wheel at
install), and an editable checkout would otherwise recompile every module on
every import (~40 ms here), which no user sees.

    python bench/bench_import.py --langgraph-python /tmp/venv-lg/bin/python
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
#: The children's environment: bytecode caching on (see the module docstring).
_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
LANGGRAPH_IMPORT = "import langgraph.func, langgraph.checkpoint.sqlite"


def wall(python: str, code: str) -> float:
    start = time.perf_counter()
    subprocess.run([python, "-c", code], check=True, capture_output=True, env=_ENV)
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


def measure(python: str, statement: str, runs: int) -> dict[str, list[float]]:
    wall(python, statement)  # warm-up: writes the bytecode caches
    bare, walls, inner, cpu = [], [], [], []
    for _ in range(runs):  # interleaved, so drift hits all of them alike
        bare.append(wall(python, "pass"))
        walls.append(wall(python, statement))
        inner_wall, inner_cpu = in_process(python, statement)
        inner.append(inner_wall)
        cpu.append(inner_cpu)
    base = median(bare)
    return {"bare": bare, "wall": [w - base for w in walls], "in_process": inner, "cpu": cpu}


def wheel_python(venv: str) -> str:
    """The interpreter of `venv`, where perdure is installed from a wheel of this checkout."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        dist = os.path.join(venv, "dist")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, repo], check=True
        )
        wheels = [os.path.join(dist, f) for f in os.listdir(dist) if f.endswith(".whl")]
        subprocess.run([python, "-m", "pip", "install", "-q", *wheels], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="import time of perdure vs LangGraph")
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
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 3

    subjects = [("perdure", sys.executable, PERDURE_IMPORT)]
    if args.wheel:
        subjects.append(("perdure (wheel)", wheel_python(args.wheel), PERDURE_IMPORT))
    if not args.no_langgraph:
        why = python_works(args.langgraph_python, "langgraph.func, langgraph.checkpoint.sqlite")
        if why is None:
            subjects.append(("langgraph", args.langgraph_python, LANGGRAPH_IMPORT))
        else:
            print(f"LangGraph side SKIPPED ({why})", file=sys.stderr)

    results = {name: measure(python, statement, args.runs) for name, python, statement in subjects}
    rows = []
    ours = median(results["perdure"]["in_process"])
    for name, _, statement in subjects:
        res = results[name]
        ratio = median(res["in_process"]) / ours
        rows.append(
            [
                f"`{statement}`" + (" (installed wheel)" if name == "perdure (wheel)" else ""),
                spread(res["in_process"], 1e3, "{:.0f}"),
                spread(res["cpu"], 1e3, "{:.0f}"),
                spread(res["wall"], 1e3, "{:.0f}"),
                f"{ratio:.1f}x",
            ]
        )
    print(f"bench_import — {machine()}; medians of {args.runs} fresh processes (min-max), ms")
    print(
        f"(bare interpreter start: {median(results['perdure']['bare']) * 1e3:.0f} ms, "
        "subtracted from wall)"
    )
    print()
    print(table(["import", "in-process ms", "CPU ms", "wall - bare ms", "vs perdure"], rows))
    verdict = "MET" if ours < 0.150 else "MISSED"
    print(f"\nTarget: `import perdure` < 150 ms: {ours * 1e3:.0f} ms in-process -> {verdict}")
    if args.top:
        for _name, python, statement in subjects:
            print(f"\nslowest modules under `{statement}` (-X importtime, cumulative ms):")
            for cumulative, module in importtime_top(python, statement, args.top):
                print(f"  {cumulative / 1e3:7.1f}  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
