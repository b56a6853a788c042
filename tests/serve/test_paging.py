"""Paging the run list: the LMDB index walk pages like a full listing sorted newest first."""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure import LmdbEventLog, MemoryEventLog, Runtime
from perdure.eventlog import EventLog, RunInfo
from perdure.serve import _paging as paging
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


def _finds(text: str, fields: tuple[str, ...]) -> bool:
    """The documented rule: a field, or a word in it, starts with the text (any case)."""
    words = [w for f in fields for w in [f, *re.split(r"[^0-9a-zA-Z]+", f)[1:]]]
    return any(w.lower().startswith(text.lower()) for w in words if w)


def _expected(
    runs: list[RunInfo], status: str | None, target: str | None, text: str | None
) -> list[str]:
    chosen = [
        r
        for r in runs
        if (status is None or r.status == status)
        and (target is None or r.target == target)
        and (text is None or _finds(text, (r.run_id, r.target, r.idempotency_key or "")))
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


@pytest.fixture
def pg_log(request: pytest.FixtureRequest) -> Iterator[EventLog]:
    """A `PostgresEventLog` on a fresh schema of the session's server (dropped after)."""
    import psycopg

    from perdure.eventlog import PostgresEventLog

    url: str = request.getfixturevalue("postgres_url")
    schema = f"t_{secrets.token_hex(6)}"
    yield PostgresEventLog(url, schema=schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.parametrize("kind", ["lmdb", "lmdb-dense", "memory", "postgres"])
async def test_pages_match_a_full_sorted_listing(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if kind == "lmdb-dense":  # every text filter takes the walk that checks runs in the index
        monkeypatch.setattr(paging, "DENSE", 0)
    if kind == "postgres":
        log: EventLog = request.getfixturevalue("pg_log")
        monkeypatch.setattr(paging, "SQL_CHUNK", 1)  # a text filter reads a page at a time
    else:
        log = MemoryEventLog() if kind == "memory" else LmdbEventLog(tmp_path / "store")
    try:
        await _fill(log)
        assert uses_index(log) is kind.startswith("lmdb")
        runs = await log.list_runs()
        assert len(runs) == 20
        combos = itertools.product(
            (None, "completed", "failed", "waiting", "cancelled"),
            (None, "gw_add", "gw_review"),
            (None, "review", "k2", "nothing", "0", "REV", "dd", "view", "gw_"),
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


async def test_the_lmdb_index_finds_a_failed_run_by_its_error(tmp_path: Path) -> None:
    log = LmdbEventLog(tmp_path / "store")
    try:
        await _fill(log)
        for text in ("the answer", "KeyError", "answer is", "NOT HERE"):
            page, _ = await list_page(
                log, status=None, target=None, text=text, limit=50, cursor=None
            )
            assert [r.run_id for r in page] == [f"broken-{i}" for i in (3, 2, 1, 0)], text
        page, _ = await list_page(
            log, status=None, target=None, text="nswer", limit=50, cursor=None
        )
        assert page == []  # inside a word: not a match
    finally:
        await log.close()


async def test_a_store_written_before_the_index_is_indexed_when_opened(tmp_path: Path) -> None:
    import lmdb

    log = LmdbEventLog(tmp_path / "store")
    await _fill(log)
    await log.close()
    env = lmdb.open(str(tmp_path / "store"), max_dbs=16, subdir=True)
    with env.begin(write=True) as txn:  # as an older perdure left it: no search database
        txn.drop(env.open_db(b"search", txn=txn), delete=True)
        txn.delete(b"search_ready", db=env.open_db(b"meta", txn=txn))
    env.close()
    reader = LmdbEventLog(tmp_path / "store", read_only=True)
    try:  # a reader does not build the index: it filters by walking, as before
        page, _ = await list_page(
            reader, status=None, target=None, text="k2", limit=50, cursor=None
        )
        assert [r.run_id for r in page] == ["review-2"]
        assert sum((await reader.statistics()).runs_by_status.values()) == 20
    finally:
        await reader.close()
    log = LmdbEventLog(tmp_path / "store")
    try:
        runs = await log.list_runs()
        for text in ("review", "k2", "the answer"):
            page, _ = await list_page(
                log, status=None, target=None, text=text, limit=50, cursor=None
            )
            want = _expected(runs, None, None, text) or [f"broken-{i}" for i in (3, 2, 1, 0)]
            assert [r.run_id for r in page] == want, text
    finally:
        await log.close()


async def test_building_the_index_grows_a_full_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lmdb

    from perdure.eventlog import _lmdb_env

    real = _lmdb_env.backfill
    calls: list[int] = []

    def full_once(txn: Any, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL")
        real(txn, *args)

    monkeypatch.setattr(_lmdb_env, "backfill", full_once)
    log = LmdbEventLog(tmp_path / "store")
    try:
        await _fill(log)
        page, _ = await list_page(log, status=None, target=None, text="k2", limit=5, cursor=None)
        assert [r.run_id for r in page] == ["review-2"]
        assert len(calls) == 2  # the map was grown and the build tried again
    finally:
        await log.close()


async def test_postgres_keeps_a_trigram_index_of_the_text_when_it_can(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from perdure.eventlog import PostgresEventLog
    from perdure.eventlog import _postgres as pg

    url: str = request.getfixturevalue("postgres_url")
    made = []
    try:
        for broken in (False, True):
            schema = f"t_{secrets.token_hex(6)}"
            made.append(schema)
            if broken:  # as on a server without pg_trgm: building the index fails at open
                monkeypatch.setattr(pg, "_RUN_TEXT", "no_such_function(run_id)")
            log = PostgresEventLog(url, schema=schema)
            try:
                await log.list_runs(limit=1)  # opens (and migrates) the store
                monkeypatch.undo()
                await _fill(log)  # the store works either way
                page, _ = await list_page(
                    log, status=None, target=None, text="k2", limit=5, cursor=None
                )
                assert [r.run_id for r in page] == ["review-2"]
            finally:
                await log.close()
            with psycopg.connect(url, autocommit=True) as conn:
                found = conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s "
                    "AND indexname = 'runs_text'",
                    (schema,),
                ).fetchall()
            assert found == ([] if broken else [("runs_text",)])
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for schema in made:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
