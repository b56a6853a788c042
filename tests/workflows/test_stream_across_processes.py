"""stream/astream of a thread whose earlier invocations ran in another process (issue 12, item 1).

Each step runs in a fresh process on one LMDB store: the stream must yield the
new invocation's progress, not return at once on the previous invocation's end
(nor on the pause a resume is about to answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CHILD = Path(__file__).with_name("_stream_child.py")


def run_step(store: Path, step: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PERDURE_PATH"] = os.fspath(store)
    done = subprocess.run(
        [sys.executable, os.fspath(CHILD), os.fspath(store), step],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, f"step {step} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    lines = [line[4:] for line in done.stdout.splitlines() if line.startswith("OUT ")]
    return dict(map(json.loads, lines))


def expected(n: int) -> list[Any]:
    result = n * n + 1
    return [
        [{"square": n * n}, {"xp_flow": result}],  # updates
        [result],  # values
        [{"n": n}],  # custom
        [
            ["custom", {"n": n}],
            ["updates", {"square": n * n}],
            ["updates", {"xp_flow": result}],
            ["values", result],
        ],
    ]


@pytest.mark.parametrize("step", ["sync", "async"])
def test_every_stream_mode_streams_a_new_invocation_of_a_thread_run_by_an_earlier_process(
    tmp_path: Path, step: str
) -> None:
    store = tmp_path / "store"
    first = run_step(store, "first")
    assert first["sync-0"] == 2 and first["sync-ask"] == [{"square": 9}]
    got = run_step(store, step)
    for i in range(4):
        assert got[f"{step}-{i}"] == expected(10 + i)[i], (step, i)
    assert got[f"{step}-ask"] == [{"xp_ask": {"square": 9, "answer": "yes"}}]
