"""Paging the run list: the LMDB index walk pages like a full listing sorted newest first."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from perdure import LmdbEventLog, MemoryEventLog, Runtime
from perdure.eventlog import EventLog, RunInfo
from perdure.serve._paging import PagingError, list_page, uses_index
from perdure.testing import MockClock

from . import serve_app  # noqa: F401 - registers the gw_* targets


async def _fill(log: EventLog) -> None:
    clock = MockClock()
    async with Runtime(log=log, clock=clock) as rt:
        for i in range(12):
            await rt.run("gw_add", {"a": i, "b": 0}, run_id=f"add-{i:02d}")
            if i % 3 == 0:
                clock.advance(1.0)  # some runs share a created_at: the run id breaks the tie
        for i in range(4):
            with pytest.raises(Exception):  # noqa: B017 - a RunFailedError
                await rt.run("gw_broken", run_id=f"broken-{i}")
            await rt.run("gw_review", f"topic {i}", run_id=f"review-{i}", idempotency_key=f"k{i}")
            clock.advance(0.5)


def _expected(
    runs: list[RunInfo], status: str | None, target: str | None, text: str | None
) -> list[str]:
    chosen = [
        r
        for r in runs
        if (status is None or r.status == status)
        and (target is None or r.target == target)
        and (text is None or any(text in f for f in (r.run_id, r.target, r.idempotency_key or "")))
    ]
    chosen.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
    return [r.run_id for r in chosen]


async def _walk(
    log: EventLog, status: str | None, target: str | None, text: str | None, limit: int
) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page, cursor = await list_page(
            log, status=status, target=target, text=text, limit=limit, cursor=cursor
        )
        assert len(page) <= limit
        seen += [r.run_id for r in page]
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("kind", ["lmdb", "memory"])
async def test_pages_match_a_full_sorted_listing(tmp_path: Path, kind: str) -> None:
    log: EventLog = LmdbEventLog(tmp_path / "store") if kind == "lmdb" else MemoryEventLog()
    try:
        await _fill(log)
        assert uses_index(log) is (kind == "lmdb")
        runs = await log.list_runs()
        assert len(runs) == 20
        combos = itertools.product(
            (None, "completed", "failed", "waiting", "cancelled"),
            (None, "gw_add", "gw_review"),
            (None, "review", "k2", "nothing"),
            (1, 3, 50),
        )
        for status, target, text, limit in combos:
            got = await _walk(log, status, target, text, limit)
            assert got == _expected(runs, status, target, text), (status, target, text, limit)
        newest = max(r.created_at for r in runs)
        for since in (newest, newest - 1.0, newest - 2.5, 0.0):
            page, _ = await list_page(
                log, status=None, target=None, text=None, limit=50, cursor=None, since=since
            )
            created = {r.run_id: r.created_at for r in runs}
            want = [i for i in _expected(runs, None, None, None) if created[i] >= since]
            assert [r.run_id for r in page] == want, since
            assert want, since
        with pytest.raises(PagingError):
            await list_page(log, status="done", target=None, text=None, limit=5, cursor=None)
        with pytest.raises(PagingError):
            await list_page(log, status=None, target=None, text=None, limit=5, cursor="x|y")
    finally:
        await log.close()
