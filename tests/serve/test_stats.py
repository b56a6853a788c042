"""The statistics page's data: hourly runs by status from the writer's counters, step latency."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from perdure import LmdbEventLog, MemoryEventLog, Runtime
from perdure.eventlog import RUN_STATUSES, EventLog, RunInfo
from perdure.serve._stats import history
from perdure.testing import MockClock

from . import serve_app  # noqa: F401 - registers the gw_* targets

HOUR = 3600.0


async def _fill(log: EventLog) -> MockClock:
    clock = MockClock()
    async with Runtime(log=log, clock=clock) as rt:
        for i in range(5):
            await rt.run("gw_add", {"a": i, "b": 0})
            await rt.run("gw_flaky", {"fail_times": 1})  # one failed attempt, then done
            with pytest.raises(Exception):  # noqa: B017 - a RunFailedError
                await rt.run("gw_broken")
            await rt.run("gw_review", f"topic {i}", run_id=f"review-{i}")  # waits
            if i % 2:
                await rt.resume(f"review-{i}", "yes")  # waiting -> running -> completed
                await rt.wait(f"review-{i}")
            clock.advance(HOUR * 0.7)
        await rt.start("gw_sleepy", 3600.0, run_id="sleepy")
        await rt.cancel("sleepy")
    return clock


def _by_hour(runs: list[RunInfo]) -> dict[float, dict[str, int]]:
    counts: dict[float, dict[str, int]] = collections.defaultdict(
        lambda: dict.fromkeys(RUN_STATUSES, 0)
    )
    for info in runs:
        counts[(info.created_at // HOUR) * HOUR][info.status] += 1
    return counts


@pytest.mark.parametrize("kind", ["lmdb", "memory"])
async def test_runs_by_hour_and_step_latency(tmp_path: Path, kind: str) -> None:
    log: EventLog = MemoryEventLog() if kind == "memory" else LmdbEventLog(tmp_path / "store")
    try:
        clock = await _fill(log)
        runs = await log.list_runs()
        data = await history(log, hours=6, now=clock.now())
        assert data["counted_from"] == ("counters" if kind == "lmdb" else "sample")
        expected = _by_hour(runs)
        got = {row["hour"]: row["counts"] for row in data["runs_by_hour"]}
        assert len(got) == 6
        for hour, counts in got.items():
            assert counts == expected.get(hour, dict.fromkeys(RUN_STATUSES, 0)), hour
        assert sum(sum(c.values()) for c in got.values()) == len(runs) == 21
        stats = await log.statistics()
        assert stats.runs_by_status == dict(collections.Counter(r.status for r in runs))
        steps = {s["name"]: s for s in data["steps"]}
        assert steps["gw_flaky"]["attempts"] == 10 and steps["gw_flaky"]["failed"] == 5
        assert steps["gw_broken"]["attempts"] == 15 and steps["gw_broken"]["failed"] == 15
        assert steps["gw_add"]["attempts"] == 5 and steps["gw_add"]["failed"] == 0
        for step in steps.values():
            assert 0 <= step["p50_ms"] <= step["p95_ms"] <= step["max_ms"]
        assert data["latency_runs"] == 21
        older = await history(log, hours=1, now=clock.now() + 10 * HOUR)
        assert all(sum(r["counts"].values()) == 0 for r in older["runs_by_hour"])
        assert older["steps"] == []
    finally:
        await log.close()
