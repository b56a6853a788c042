"""The statistics page's data: runs by status per hour, and step latency of recent runs.

Neither reads the whole store. On the LMDB store, runs by status per hour come
from counters the writer keeps next to the runs index (one key per hour and
status, see `perdure.eventlog._lmdb_search`): a request reads one key per
hour and status of the window. On other logs they are counted from the newest
runs of the window, at most `SAMPLE_RUNS` of them (the answer says so).
Step latency is measured on the events of the newest `LATENCY_RUNS` runs of
the window: an attempt's time from ``task_attempt_started`` to the event that
ends it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from perdure.eventlog import RUN_STATUSES, EventLog, LmdbEventLog
from perdure.eventlog.lmdb_tools import HOUR, is_ready, status_counts
from perdure.serve._paging import list_page, uses_index

__all__ = ["LATENCY_RUNS", "SAMPLE_RUNS", "history"]

#: Runs whose events are read for step latency (the newest of the window).
LATENCY_RUNS = 200
#: Runs counted per request on a log without the hourly counters.
SAMPLE_RUNS = 5000
_ENDS = ("task_completed", "task_attempt_failed", "task_failed", "task_suspended")


def _hour(ts: float) -> float:
    return (ts // HOUR) * HOUR


async def _counted(log: LmdbEventLog, since: float) -> list[tuple[float, str, int]] | None:
    """(hour, status, runs) from the store's counters, or None if it has none."""
    shared = log._open_env()
    await shared.caught_up()
    dbs = shared.dbs
    search = dbs.search
    if search is None:
        return None

    def collect(txn: Any) -> list[tuple[float, str, int]] | None:
        if not is_ready(txn, dbs.meta):
            return None
        return list(status_counts(txn, search, since))

    found: list[tuple[float, str, int]] | None = shared.read(collect)
    return found


async def _sampled(log: EventLog, since: float) -> tuple[list[tuple[float, str, int]], bool]:
    counts: dict[tuple[float, str], int] = defaultdict(int)
    page, more = await list_page(
        log, status=None, target=None, text=None, limit=SAMPLE_RUNS, cursor=None, since=since
    )
    for info in page:
        counts[(_hour(info.created_at), info.status)] += 1
    return [(h, s, n) for (h, s), n in sorted(counts.items())], more is not None


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latency(log: EventLog, since: float) -> tuple[list[dict[str, Any]], int]:
    page, _ = await list_page(
        log, status=None, target=None, text=None, limit=LATENCY_RUNS, cursor=None, since=since
    )
    took: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    for info in page:
        started: dict[tuple[str, int], float] = {}
        for event in await log.read(info.run_id):
            kind = type(event).WIRE_NAME
            if kind == "task_attempt_started":
                started[(event.position, event.attempt)] = event.ts  # type: ignore[attr-defined]
            elif kind in _ENDS:
                position: str = event.position  # type: ignore[attr-defined]
                begun = [k for k in started if k[0] == position]
                if not begun:
                    continue
                key = max(begun, key=lambda k: k[1])
                name: str = event.name  # type: ignore[attr-defined]
                took[name].append(event.ts - started.pop(key))
                if kind != "task_completed":
                    failed[name] += 1
    steps = []
    for name, values in sorted(took.items()):
        values.sort()
        steps.append(
            {
                "name": name,
                "attempts": len(values),
                "failed": failed.get(name, 0),
                "p50_ms": round(_quantile(values, 0.5) * 1000, 3),
                "p95_ms": round(_quantile(values, 0.95) * 1000, 3),
                "max_ms": round(values[-1] * 1000, 3),
            }
        )
    return steps, len(page)


async def history(log: EventLog, hours: int, now: float | None = None) -> dict[str, Any]:
    """The statistics page's data for the last `hours` hours (see the module's doc)."""
    now = time.time() if now is None else now
    since = _hour(now) - (hours - 1) * HOUR
    counted = None
    if uses_index(log):
        assert isinstance(log, LmdbEventLog)
        counted = await _counted(log, since)
    sampled = counted is None
    partial = False
    if counted is None:
        counted, partial = await _sampled(log, since)
    buckets: dict[float, dict[str, int]] = {
        since + i * HOUR: dict.fromkeys(RUN_STATUSES, 0) for i in range(hours)
    }
    for hour, status, runs in counted:
        if hour in buckets and status in buckets[hour]:
            buckets[hour][status] += runs
    steps, measured = await _latency(log, since)
    return {
        "since": since,
        "hour_seconds": HOUR,
        "runs_by_hour": [{"hour": h, "counts": c} for h, c in sorted(buckets.items())],
        "counted_from": "sample" if sampled else "counters",
        "partial": partial,
        "steps": steps,
        "latency_runs": measured,
    }
