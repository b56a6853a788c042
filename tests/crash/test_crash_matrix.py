"""Crash matrix: a mixed workload on a real LMDB store, SIGKILLed at seeded random moments.

The workload (crash_workload.py) has functions with retries and idempotency
keys, workflows with parallel tasks and durable sleeps, interrupts answered
from outside between processes, and a thread with two invocations. A parent
kills the child at random moments (seeded), restarts it, and repeats until
everything has finished; then the store is checked against an oracle run of
the same workload without kills (see `_crash_harness.check_invariants`).

One documented limit shows up under many kills: a step whose attempt dies
with its process more often than the lost-attempt cap allows fails for good
(error ``AttemptLost``), so a task that crashes its own process cannot loop
forever. Here the deaths are the
harness's kills, so the workload acts as an operator would and continues such
runs (``continue_run``); their final state must still match the oracle.

CI runs >= 100 kill points. ``PERDURE_LONG=1`` runs thousands;
``PERDURE_CRASH_SEED=N`` re-runs one seed (a seed fixes the kill schedule; the
interleaving inside the child still varies with timing).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.crash._crash_harness import (
    Drive,
    Figures,
    check_invariants,
    drive,
    read_store,
    summarize,
)

#: a campaign of SIGKILLs: minutes of real processes
pytestmark = pytest.mark.slow

LONG = os.environ.get("PERDURE_LONG") == "1"
ONE_SEED = os.environ.get("PERDURE_CRASH_SEED")
#: (chunks, kills per chunk): each chunk drives fresh stores until it reaches its kills.
CHUNKS, KILLS_PER_CHUNK = (40, 60) if LONG else (4, 26)
BASE_SEED = int(os.environ.get("PERDURE_CRASH_BASE_SEED", random.randrange(1 << 30)))
TOTALS: dict[str, int] = dict.fromkeys(
    (
        "kills",
        "kills_before_first_commit",
        "children",
        "stores",
        "reexecuted_after_kill",
        "attempts_lost",
        "continued",
    ),
    0,
)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\ncrash matrix (base seed {BASE_SEED}): {TOTALS}")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Figures]:
    """The workload run to completion without kills."""
    root = tmp_path_factory.mktemp("oracle")
    clean = drive(root / "store", root / "out", seed=None)
    runs, streams = asyncio.run(read_store(clean.store))
    figures = check_invariants(clean, runs, streams)
    return summarize(runs, streams), figures


def _check_store(run: Drive, expected: dict[str, Any]) -> Figures:
    runs, streams = asyncio.run(read_store(run.store))
    figures = check_invariants(run, runs, streams)
    got = summarize(runs, streams)
    differ = {
        name: (got.get(name), want) for name, want in expected.items() if got.get(name) != want
    }
    extra = set(got) - set(expected)
    assert not differ and not extra, (
        f"differs from the oracle: {differ} extra={extra}\n{run.fail_context()}"
    )
    return figures


def test_the_oracle_run_is_clean(oracle: tuple[dict[str, Any], Figures]) -> None:
    summary, figures = oracle
    assert figures.attempts_lost == 0 and figures.reexecuted_after_kill == 0
    assert figures.acked_events == figures.events  # every event was acknowledged to its writer
    statuses = {name: run["status"] for name, run in summary.items()}
    assert statuses["reject-0"] == "failed"
    assert all(status == "completed" for name, status in statuses.items() if name != "reject-0")
    assert len(summary["counter-0"]["invocations"]) == 2
    assert summary["counter-0"]["invocations"][1]["result"]["count"] == 3  # 1, then 1 + 2
    assert [
        len(run["invocations"][0]["answers"]) for n, run in summary.items() if "approval" in n
    ] == [2] * 3


@pytest.mark.timeout(3600 if LONG else 110)
@pytest.mark.parametrize("chunk", range(1 if ONE_SEED else CHUNKS))
def test_sigkill_at_random_points_loses_nothing(
    chunk: int, oracle: tuple[dict[str, Any], Figures], tmp_path: Path
) -> None:
    expected, _ = oracle
    kills = 0
    store = 0
    while kills < KILLS_PER_CHUNK:
        seed = int(ONE_SEED) if ONE_SEED else BASE_SEED + chunk * 1000 + store
        where = tmp_path / f"seed-{seed}"
        run = drive(where / "store", where / "out", seed=seed)
        figures = _check_store(run, expected)
        kills += run.kills
        store += 1
        TOTALS["kills"] += run.kills
        TOTALS["children"] += run.children
        TOTALS["stores"] += 1
        TOTALS["reexecuted_after_kill"] += figures.reexecuted_after_kill
        TOTALS["attempts_lost"] += figures.attempts_lost
        TOTALS["continued"] += figures.continued_after_lost_attempts
        TOTALS["kills_before_first_commit"] += figures.kills_before_first_commit
        if ONE_SEED:
            break
    assert ONE_SEED or kills >= KILLS_PER_CHUNK


def test_the_checks_catch_a_store_that_acknowledges_before_it_commits(
    oracle: tuple[dict[str, Any], Figures], tmp_path: Path
) -> None:
    """Harness self-test: a lying store (ack first, commit 20 ms later) must be caught."""
    expected, _ = oracle
    for attempt in range(8):
        seed = BASE_SEED + 999_000 + attempt
        where = tmp_path / f"mutant-{seed}"
        run = drive(where / "store", where / "out", seed=seed, mutant="early-ack")
        try:
            _check_store(run, expected)
        except AssertionError as exc:
            assert "acknowledged event lost" in str(exc) or "acked event changed" in str(exc)
            return
    pytest.fail("a store that acknowledges before committing went unnoticed in 8 stores")
