"""Load: 10,000 runs and 100 concurrent senders on one runtime; all complete, memory stays bounded.

Runs bench/stress.py in a fresh process (so its memory figures are its own):
functions (some with idempotency keys, asked twice) and workflows paused on
`interrupt()` and resumed by the senders, in two waves. Checks: every run
completed with the right result and exactly the events its kind writes (no
event lost), idle actors are all evicted after each wave, the number of live
actors stays far below the number of runs, and the heap does not grow from
the first wave to the second (a per-run leak would).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = 10_000
SENDERS = 100


@pytest.mark.slow  # a stress campaign: tens of seconds
def test_ten_thousand_runs_and_a_hundred_senders_complete_in_bounded_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "stress.py"),
            f"--runs={RUNS}",
            f"--senders={SENDERS}",
            f"--store={tmp_path / 'store'}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nload: {figures}")
    assert done.returncode == 0 and figures["ok"], figures
    assert figures["wrong_count"] == 0, figures["wrong_runs"]
    assert figures["events"] == RUNS // 2 * 4 + RUNS // 2 * 8  # functions 4, workflows 8
    assert figures["restarts"] == 0 and figures["parked"] == 0
    for wave in (0, 1):
        assert figures[f"wave{wave}_live_actors_after_idle"] == 0
    assert figures["evicted"] >= RUNS
    assert figures["peak_live_actors"] < RUNS // 5
    assert figures["heap_growth_wave1_mb"] < 4, "the heap grew with the second 5,000 runs"
