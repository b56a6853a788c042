"""Helpers shared by the bench scripts: medians, fresh-process workers, plain-text tables.

Benchmarks here run each measured workload in a fresh process (so no run's
warm caches or registered names leak into the next) and repeat it; the report
is the median of the repeats, with the spread shown as min-max.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Sequence
from typing import Any

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    """'median (min-max)' of `values` times `scale`."""
    if not values:
        return "-"
    m = median(values) * scale
    if len(values) == 1:
        return fmt.format(m)
    lo, hi = min(values) * scale, max(values) * scale
    return f"{fmt.format(m)} ({fmt.format(lo)}-{fmt.format(hi)})"


def run_json(
    cmd: list[str], *, timeout: float = 900.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `cmd` in a fresh process; its last stdout line is a JSON object (else raise)."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed nothing:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def python_works(python: str | None, module_check: str) -> str | None:
    """None if `python` can import `module_check`, else the reason it cannot."""
    if not python:
        return "no interpreter given"
    if not os.path.exists(python):
        return f"{python} does not exist"
    proc = subprocess.run(
        [python, "-c", f"import {module_check}"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return f"{python} cannot import {module_check}: {proc.stderr.strip().splitlines()[-1:]}"
    return None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, readable both in a terminal and in bench/README.md."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def machine() -> str:
    """One line about where the figures were taken."""
    import platform

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average now {load}"
    )


def quiet_logs() -> None:
    """Drop perdure's info logs (two lines per run) as a production service would configure.

    structlog's default configuration prints every info event to stdout; that
    costs more than the runtime itself on these workloads (see README.md).
    """
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
