"""LMDB specifics: locking, read-only opens, sharing, map growth, corruption, group commit."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from perdure.eventlog import (
    CorruptEventError,
    IdempotencyKeyTakenError,
    LmdbEventLog,
    ReadOnlyStoreError,
    SchemaVersionError,
    SequenceConflictError,
    StorageError,
    StorePathError,
)
from perdure.eventlog import _lmdb_writer as lmdb_writer
from perdure.eventlog._lmdb_journal import PAGE, Journal
from perdure.testing.events import done, started, steps, timer


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def log(store: Path) -> AsyncIterator[LmdbEventLog]:
    opened = LmdbEventLog(store)
    yield opened
    await opened.close()


def raw_env(store: Path) -> lmdb.Environment:
    """The store opened with plain py-lmdb, to damage it on purpose (store must be closed)."""
    return lmdb.open(str(store), max_dbs=16)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def child(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# -- one writer per store ------------------------------------------------------------------

OPEN_FOR_WRITING = """
import sys
from perdure.eventlog import LmdbEventLog, StoreLockedError
try:
    log = LmdbEventLog(sys.argv[1])
except StoreLockedError as exc:
    print("locked", exc.path == sys.argv[1], exc)
else:
    print("opened")
"""


async def test_a_second_process_cannot_open_the_store_for_writing(
    log: LmdbEventLog, store: Path
) -> None:
    await log.append("r", 0, [started("r")])
    out, err = child(OPEN_FOR_WRITING, str(store)).communicate(timeout=60)
    assert out.startswith("locked True"), err
    assert f"pid {os.getpid()}" in out and "read_only=True" in out
    await log.close()
    out, err = child(OPEN_FOR_WRITING, str(store)).communicate(timeout=60)
    assert out.strip() == "opened", err


READ_ONLY_READER = """
import asyncio, sys
from perdure.eventlog import LmdbEventLog, ReadOnlyStoreError
from perdure.eventlog import TaskCompleted
log = LmdbEventLog(sys.argv[1], read_only=True, map_size=64 * 1024)
print("ready", len(asyncio.run(log.read("r"))), flush=True)
for line in sys.stdin:
    if line.strip() == "check":
        events = asyncio.run(log.read("r"))
        runs = asyncio.run(log.list_runs())
        print("events", len(events), [e.seq for e in events] == list(range(len(events))))
        print("runs", [r.run_id for r in runs])
    elif line.strip() == "write":
        event = TaskCompleted(run_id="r", seq=0, ts=1.0, position="0", name="x",
                              input_digest="d", result=None)
        try:
            asyncio.run(log.append("r", 0, [event]))
        except ReadOnlyStoreError as exc:
            print("refused", exc)
asyncio.run(log.close())
"""


async def test_a_read_only_process_sees_live_writes_and_refuses_to_write(store: Path) -> None:
    writer = LmdbEventLog(store, map_size=64 * 1024)
    try:
        await writer.append("r", 0, [started("r")])
        reader = child(READ_ONLY_READER, str(store))
        assert reader.stdout is not None
        ready = await asyncio.to_thread(reader.stdout.readline)
        assert ready.split() == ["ready", "1"]
        # Grow the store far beyond the reader's mapping: it must adopt the new map size.
        payload = "x" * 1000
        for seq in range(1, 2001, 50):
            await writer.append("r", seq, [done("r", s, payload) for s in range(seq, seq + 50)])
        await writer.append("s", 0, [started("s", ts=5.0)])
        # Another process sees a journaled batch once LMDB has caught up (within
        # milliseconds); a read in the writer's process waits for exactly that.
        assert await writer.get_run("s") is not None
        out, err = reader.communicate("check\nwrite\n", timeout=60)
        assert out.splitlines() == [
            "events 2001 True",
            "runs ['r', 's']",
            "refused the store at " + str(store) + " is open read-only",
        ], err
    finally:
        await writer.close()


async def test_read_only_in_the_same_process_shares_the_writer_env(
    log: LmdbEventLog, store: Path
) -> None:
    reader = LmdbEventLog(store, read_only=True)
    assert (reader.read_only, log.read_only) == (True, False)
    await log.append("r", 0, [started("r")])
    assert [e.seq for e in await reader.read("r")] == [0]
    with pytest.raises(ReadOnlyStoreError):
        await reader.append("r", 1, steps("r", 1, 1))
    with pytest.raises(ReadOnlyStoreError):
        await reader.append("new", 0, [started("new")])
    await reader.close()
    await log.append("r", 1, steps("r", 1, 1))  # the writer is unaffected
    assert len(await log.read("r")) == 2


async def test_read_only_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(StorePathError, match="no store"):
        LmdbEventLog(tmp_path / "nothing-here", read_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorePathError, match="no perdure store"):
        LmdbEventLog(tmp_path / "empty", read_only=True)
    assert not (tmp_path / "nothing-here").exists()


async def test_a_store_open_read_only_cannot_also_be_opened_for_writing(
    log: LmdbEventLog, store: Path
) -> None:
    await log.close()
    reader = LmdbEventLog(store, read_only=True)
    with pytest.raises(StorageError, match="already open read-only in this process"):
        LmdbEventLog(store)
    await reader.close()
    again = LmdbEventLog(store)
    await again.close()


# -- one environment per store per process -------------------------------------------------


async def test_the_same_store_opened_twice_shares_one_environment(
    log: LmdbEventLog, store: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(store)
    other = LmdbEventLog(link)
    assert other._shared is log._shared  # one env, one writer thread
    await log.append("r", 0, [started("r")])
    assert [e.seq for e in await other.read("r")] == [0]
    with pytest.raises(ValueError, match="durability='fsync'"):
        LmdbEventLog(store, durability="process")
    await log.close()  # the other handle keeps the store open
    await other.append("r", 1, steps("r", 1, 1))
    assert len(await other.read("r")) == 2
    await other.close()
    reopened = LmdbEventLog(store, durability="process")  # fully closed: a fresh env
    assert reopened.durability == "process"
    assert len(await reopened.read("r")) == 2
    await reopened.close()


async def test_durability_chooses_whether_commits_are_fsynced(store: Path, tmp_path: Path) -> None:
    fsynced = LmdbEventLog(store)
    relaxed = LmdbEventLog(tmp_path / "relaxed", durability="process")
    assert (fsynced.durability, relaxed.durability) == ("fsync", "process")
    # fsync: LMDB flushes its data pages per commit, the journal makes each batch durable
    assert fsynced._shared.env.flags()["sync"] and not fsynced._shared.env.flags()["metasync"]
    assert fsynced._shared.journal is not None
    assert not relaxed._shared.env.flags()["sync"]
    assert relaxed._shared.journal is None
    assert not fsynced._shared.env.flags()["writemap"]
    await relaxed.append("r", 0, [started("r")])
    await relaxed.close()
    await fsynced.close()
    with pytest.raises(ValueError, match="durability"):
        LmdbEventLog(store, durability="sometimes")  # type: ignore[arg-type]


async def test_appends_from_another_threads_event_loop(log: LmdbEventLog) -> None:
    async def appender(run_id: str) -> None:
        await log.append(run_id, 0, [started(run_id)])
        for seq in range(1, 101):
            await log.append(run_id, seq, [done(run_id, seq)])

    threads = [
        threading.Thread(target=asyncio.run, args=(appender(f"thread-{n}"),)) for n in range(3)
    ]
    for thread in threads:
        thread.start()
    await appender("main")
    for thread in threads:
        await asyncio.to_thread(thread.join, 60)
    for run_id in ("main", "thread-0", "thread-1", "thread-2"):
        assert [e.seq for e in await log.read(run_id)] == list(range(101))


async def test_close_finishes_appends_in_flight(store: Path) -> None:
    log = LmdbEventLog(store)
    tasks = [asyncio.create_task(log.append(f"r{n}", 0, [started(f"r{n}")])) for n in range(100)]
    await asyncio.sleep(0)  # every task has queued its append
    await log.close()
    assert all(task.done() and task.exception() is None for task in tasks)
    reopened = LmdbEventLog(store)
    assert len(await reopened.list_runs()) == 100
    await reopened.close()


# -- group commit --------------------------------------------------------------------------


class HeldWriter:
    """Holds the writer thread inside its next commit until released, so appends pile up."""

    def __init__(self, log: LmdbEventLog, monkeypatch: pytest.MonkeyPatch) -> None:
        writer = log._shared.writer
        assert writer is not None
        self.writer = writer
        self.entered = threading.Event()
        self.gate = threading.Event()
        original = writer._commit

        def held(appends: Any, acknowledge: Any) -> Any:
            self.entered.set()
            self.gate.wait(30)
            return original(appends, acknowledge)

        monkeypatch.setattr(writer, "_commit", held)

    async def hold(self, log: LmdbEventLog) -> asyncio.Task[None]:
        task = asyncio.create_task(log.append("warm-up", 0, [started("warm-up")]))
        assert await asyncio.to_thread(self.entered.wait, 10)
        return task

    def queued(self) -> int:
        return self.writer._queue.qsize()


async def test_one_failing_append_does_not_fail_the_rest_of_its_batch(
    log: LmdbEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    for run_id in ("ok1", "ok2", "stale", "owner"):
        await log.append(run_id, 0, [started(run_id, key="k" if run_id == "owner" else None)])
    before = await log.statistics()  # (a read waits for the writer: not while it is held)
    held = HeldWriter(log, monkeypatch)
    warm_up = await held.hold(log)
    calls = [
        log.append("ok1", 1, steps("ok1", 1, 2)),
        log.append("stale", 0, [started("stale")]),
        log.append("thief", 0, [started("thief", key="k")]),
        log.append("ghost", 0, [done("ghost", 0)]),
        log.append("ok2", 1, steps("ok2", 1, 1)),
        log.append("ok1", 3, steps("ok1", 3, 1)),  # sees the first ok1 append of its batch
    ]
    tasks = [asyncio.create_task(call) for call in calls]
    await asyncio.sleep(0)
    assert held.queued() == len(calls)
    held.gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await warm_up
    assert outcomes[0] is None and outcomes[4] is None and outcomes[5] is None
    assert isinstance(outcomes[1], SequenceConflictError)
    assert isinstance(outcomes[2], IdempotencyKeyTakenError)
    assert isinstance(outcomes[3], ValueError)
    after = await log.statistics()
    assert after.batches == before.batches + 2  # the warm-up, then all six in one commit
    assert after.last_batch_size == 4
    assert [e.seq for e in await log.read("ok1")] == [0, 1, 2, 3]
    assert [e.seq for e in await log.read("ok2")] == [0, 1]
    assert [e.seq for e in await log.read("stale")] == [0]
    assert await log.get_run("thief") is None and await log.get_run("ghost") is None
    assert (await log.lookup_idempotency("k")).run_id == "owner"  # type: ignore[union-attr]


async def test_a_large_batch_wakes_its_appenders_a_chunk_per_loop_iteration(
    log: LmdbEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(log, monkeypatch)
    warm_up = await held.hold(log)
    tasks = [asyncio.create_task(log.append(f"r{n}", 0, [started(f"r{n}")])) for n in range(300)]
    iteration = 0
    finished_in: set[int] = set()
    for task in tasks:
        task.add_done_callback(lambda _: finished_in.add(iteration))

    async def count_iterations() -> None:
        nonlocal iteration
        while not all(task.done() for task in tasks):
            iteration += 1
            await asyncio.sleep(0)

    await asyncio.sleep(0)
    assert held.queued() == 300
    before = await log.statistics()
    held.gate.set()
    await warm_up
    await asyncio.gather(count_iterations(), *tasks)
    after = await log.statistics()
    assert (after.batches - before.batches, after.last_batch_size) == (2, 300)  # warm-up, all
    assert len(finished_in) >= 300 // 64  # not all 300 resumed in one iteration


async def test_an_append_failing_halfway_is_rolled_back_alone(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.append("s", 0, [started("s")])
    await log.close()
    stray = b"\x01\x00\x00\x00\x00stray"
    # An event key beyond the run's next seq: a damaged store.
    with raw_env(store) as env, env.begin(write=True, db=env.open_db(b"events")) as txn:
        assert txn.put(event_key("r", 2), stray)
    log = LmdbEventLog(store)
    held = HeldWriter(log, monkeypatch)
    warm_up = await held.hold(log)
    tasks = [
        asyncio.create_task(log.append("r", 1, steps("r", 1, 2))),  # seq 1 lands, seq 2 clashes
        asyncio.create_task(log.append("s", 1, steps("s", 1, 2))),
    ]
    await asyncio.sleep(0)
    assert held.queued() == 2
    held.gate.set()
    await warm_up
    failed, succeeded = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(failed, StorageError) and "r#2 is already stored" in str(failed)
    assert succeeded is None
    assert (await log.get_run("r")).next_seq == 1  # type: ignore[union-attr]
    with pytest.raises(CorruptEventError, match="r#1 is missing"):
        await log.read("r")  # the planted stray event is damage, and reading says so
    assert [e.seq for e in await log.read("s")] == [0, 1, 2]
    await log.close()
    with raw_env(store) as env, env.begin(db=env.open_db(b"events")) as txn:
        assert txn.get(event_key("r", 1)) is None  # the first half was rolled back
        assert txn.get(event_key("r", 2)) == stray  # and the stray key was not overwritten


@pytest.fixture(params=["fsync", "process"])
async def either(request: pytest.FixtureRequest, store: Path) -> AsyncIterator[LmdbEventLog]:
    opened = LmdbEventLog(store, durability=request.param)
    yield opened
    await opened.close()


def fail_durable_step(log: LmdbEventLog, monkeypatch: pytest.MonkeyPatch, calls: set[int]) -> None:
    """Make the write that makes a batch durable fail on the given calls (counted from 1).

    That write is the journal frame with fsync, the LMDB commit with process.
    """
    writer = log._shared.writer
    assert writer is not None
    name = "_write_journal" if log.durability == "fsync" else "_commit_txn"
    original = getattr(writer, name)
    count = 0

    def failing(arg: Any) -> None:
        nonlocal count
        count += 1
        if count in calls:
            if name == "_write_journal":
                raise OSError(5, "injected EIO")
            raise lmdb.DiskError("injected EIO")
        original(arg)

    monkeypatch.setattr(writer, name, failing)


async def test_a_failed_durable_write_raises_storage_error_and_the_store_stays_usable(
    either: LmdbEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = either
    await log.append("r", 0, [started("r")])
    fail_durable_step(log, monkeypatch, {1})
    with pytest.raises(StorageError, match=r"injected EIO.*nothing of this append"):
        await log.append("r", 1, steps("r", 1, 2))
    assert [e.seq for e in await log.read("r")] == [0]
    assert (await log.get_run("r")).next_seq == 1  # type: ignore[union-attr]
    with pytest.raises(SequenceConflictError, match="the run is at 1"):
        await log.append("r", 3, steps("r", 3, 1))  # the writer forgot the failed batch too
    await log.append("r", 1, steps("r", 1, 2))  # usable afterwards, the same seqs are free
    assert [e.seq for e in await log.read("r")] == [0, 1, 2]


async def test_a_failed_durable_write_acknowledges_nothing_of_a_grouped_batch(
    either: LmdbEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = either
    held = HeldWriter(log, monkeypatch)
    warm_up = await held.hold(log)
    fail_durable_step(log, monkeypatch, {2})
    tasks = [asyncio.create_task(log.append(f"r{n}", 0, [started(f"r{n}")])) for n in range(5)]
    await asyncio.sleep(0)
    assert held.queued() == 5
    held.gate.set()
    await warm_up
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, StorageError) for o in outcomes), outcomes
    assert [r.run_id for r in await log.list_runs()] == ["warm-up"]
    assert (await log.statistics()).events == 1
    await log.append("r0", 0, [started("r0")])
    assert [e.seq for e in await log.read("r0")] == [0]


# -- the journal (durability="fsync") ------------------------------------------------------


def fail_lmdb_commits(log: LmdbEventLog, monkeypatch: pytest.MonkeyPatch, times: int) -> None:
    writer = log._shared.writer
    assert writer is not None
    original = writer._commit_txn
    left = times

    def failing(txn: Any) -> None:
        nonlocal left
        if left:
            left -= 1
            raise lmdb.DiskError("injected EIO")
        original(txn)

    monkeypatch.setattr(writer, "_commit_txn", failing)


async def test_an_lmdb_commit_failing_after_the_journal_is_redone_from_the_frame(
    log: LmdbEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    await log.append("r", 0, [started("r")])
    fail_lmdb_commits(log, monkeypatch, 1)
    await log.append("r", 1, steps("r", 1, 2))  # durable in the journal: acknowledged
    assert [e.seq for e in await log.read("r")] == [0, 1, 2]
    await log.append("r", 3, steps("r", 3, 1))
    assert (await log.get_run("r")).next_seq == 4  # type: ignore[union-attr]


async def test_lmdb_refusing_a_journaled_batch_stops_writes_and_a_reopen_recovers_it(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    fail_lmdb_commits(log, monkeypatch, 1_000)
    await log.append("r", 1, steps("r", 1, 2))  # acknowledged: it is in the journal
    with pytest.raises(StorageError, match=r"refuses further appends.*reopen"):
        await log.read("r")  # a read cannot see the acknowledged batch, and says why
    with pytest.raises(StorageError, match="refuses further appends"):
        await log.append("r", 3, steps("r", 3, 1))
    await log.close()
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2]
    await reopened.append("r", 3, steps("r", 3, 1))
    await reopened.close()


def journal_frames(store: Path) -> list[int]:
    journal = Journal(str(store))
    try:
        return [number for number, _ in journal.frames()]
    finally:
        journal.close()


async def test_the_journal_restores_commits_lmdb_lost(store: Path, tmp_path: Path) -> None:
    """Power loss, simulated: LMDB loses its last commits, the journal still has them."""
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.append("s", 0, [started("s", key="k")])
    earlier = tmp_path / "earlier"
    await log.copy(earlier)  # LMDB as it was after two batches
    await log.append("r", 1, steps("r", 1, 3))
    await log.append("r", 4, [timer("r", 4, "t1", due=5.0)])
    await log.append("s", 1, [done("s", 1)], status="completed")
    await log.close()
    frames = journal_frames(store)
    assert len(frames) == 5 and frames == list(range(frames[0], frames[0] + 5))
    os.replace(earlier / "data.mdb", store / "data.mdb")
    (store / "lock.mdb").unlink()
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2, 3, 4]
    assert [(r.run_id, r.status) for r in await reopened.list_runs(status="completed")] == [
        ("s", "completed")
    ]
    assert [t.timer_id for t in await reopened.due_timers(10.0)] == ["t1"]
    assert (await reopened.lookup_idempotency("k")).run_id == "s"  # type: ignore[union-attr]
    # the search index's counters were journaled with the rest
    assert (await reopened.statistics()).runs_by_status == {"running": 1, "completed": 1}
    await reopened.append("r", 5, steps("r", 5, 1))  # and it carries on
    await reopened.close()


async def lmdb_loses_its_last_commit(store: Path, tmp_path: Path) -> None:
    """Run "r" gets seqs 0-2 in two batches; then LMDB is rolled back to the first
    (as a power loss can), while the journal still holds the second."""
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    earlier = tmp_path / "earlier"
    await log.copy(earlier)
    await log.append("r", 1, steps("r", 1, 2))
    await log.close()
    os.replace(earlier / "data.mdb", store / "data.mdb")


async def test_a_read_only_open_after_a_crash_applies_the_journal_first(
    store: Path, tmp_path: Path
) -> None:
    await lmdb_loses_its_last_commit(store, tmp_path)
    reader = LmdbEventLog(store, read_only=True)
    assert [e.seq for e in await reader.read("r")] == [0, 1, 2]
    await reader.close()


async def test_a_torn_or_stale_journal_tail_is_ignored(store: Path) -> None:
    log = LmdbEventLog(store)
    for seq in range(4):
        await log.append("r", seq, [started("r")] if seq == 0 else steps("r", seq, 1))
    await log.close()
    frames = journal_frames(store)
    torn = store / "journal.wal"  # tear the last frame's payload
    data = bytearray(torn.read_bytes())
    data[PAGE * len(frames) + 40] ^= 0xFF  # page 0 is the header
    torn.write_bytes(bytes(data))
    assert journal_frames(store) == frames[:-1]
    reopened = LmdbEventLog(store)  # LMDB has everything (clean close): nothing to redo
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2, 3]
    await reopened.append("r", 4, steps("r", 4, 1))  # written over the old frames from the start
    await reopened.close()
    assert len(journal_frames(store)) == 1  # the frames after it are from before: not followed


async def test_a_reopened_store_continues_the_journal_and_a_power_loss_after_recovers(
    store: Path, tmp_path: Path
) -> None:
    """A writable open that finds LMDB holding exactly the journal's chain continues it
    (no new generation: one device flush less per open); the frames written before and
    after the reopen still restore what LMDB loses."""
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.append("r", 1, steps("r", 1, 2))
    await log.close()
    before = journal_frames(store)
    header = (store / "journal.wal").read_bytes()[:PAGE]
    reopened = LmdbEventLog(store)
    earlier = tmp_path / "earlier"
    await reopened.copy(earlier)  # LMDB as the reopen found it
    await reopened.append("r", 3, steps("r", 3, 1))
    await reopened.close()
    assert journal_frames(store) == [*before, before[-1] + 1]
    assert (store / "journal.wal").read_bytes()[:PAGE] == header  # the same generation
    os.replace(earlier / "data.mdb", store / "data.mdb")
    (store / "lock.mdb").unlink()
    again = LmdbEventLog(store)
    assert [e.seq for e in await again.read("r")] == [0, 1, 2, 3]
    await again.append("r", 4, steps("r", 4, 1))
    await again.close()
    reader = LmdbEventLog(store, read_only=True)
    assert [e.seq for e in await reader.read("r")] == [0, 1, 2, 3, 4]
    await reader.close()


class _FlushSpy:
    """An LMDB environment that notes its flushes into `order` (the rest passes through)."""

    def __init__(self, env: lmdb.Environment, order: list[str]) -> None:
        self._env, self._order = env, order

    def sync(self, force: bool = False) -> None:
        self._order.append("flush")
        self._env.sync(force)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class _FailingFlush(_FlushSpy):
    def sync(self, force: bool = False) -> None:
        self._order.append("flush")
        raise lmdb.Error("the device refused the flush")


@pytest.mark.parametrize("flush_fails", [False, True])
async def test_a_continued_journal_gets_no_frame_before_lmdb_is_flushed(
    store: Path, monkeypatch: pytest.MonkeyPatch, flush_fails: bool
) -> None:
    """The writer that continues the chain flushes LMDB before its first frame (what a
    `durability="process"` session left may not be durable); if it cannot, no append is
    acknowledged. The opening process does not wait for that flush."""
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    order: list[str] = []
    plain_init = lmdb_writer.Writer.__init__
    plain_write = lmdb_writer.Writer._write_journal

    def spying_init(self: lmdb_writer.Writer, env: lmdb.Environment, *a: Any, **k: Any) -> None:
        spy = (_FailingFlush if flush_fails else _FlushSpy)(env, order)
        plain_init(self, spy, *a, **k)  # type: ignore[arg-type]

    def noting_write(self: lmdb_writer.Writer, frame: bytes) -> None:
        order.append("frame")
        plain_write(self, frame)

    monkeypatch.setattr(lmdb_writer.Writer, "__init__", spying_init)
    monkeypatch.setattr(lmdb_writer.Writer, "_write_journal", noting_write)
    reopened = LmdbEventLog(store)
    if flush_fails:
        with pytest.raises(StorageError, match="flush"):
            await reopened.append("r", 1, steps("r", 1, 1))
        assert "frame" not in order
    else:
        await reopened.append("r", 1, steps("r", 1, 1))
        assert order[:2] == ["flush", "frame"], order
    await reopened.close()


async def test_the_journal_wraps_after_a_checkpoint_and_huge_batches_bypass_it(
    store: Path, tmp_path: Path
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    payload = "p" * 1500
    seq = 1
    for _ in range(40):  # ~40 pages per batch: wraps the 2 MiB journal more than once
        await log.append("r", seq, [done("r", seq + i, result=payload) for i in range(100)])
        seq += 100
    huge = [done("r", seq + i, result=payload) for i in range(1500)]  # more than the journal
    await log.append("r", seq, huge)
    seq += 1500
    await log.append("r", seq, steps("r", seq, 1))
    seq += 1
    earlier = tmp_path / "earlier"
    await log.copy(earlier)
    await log.append("r", seq, steps("r", seq, 2))
    await log.close()
    os.replace(earlier / "data.mdb", store / "data.mdb")
    reopened = LmdbEventLog(store)
    events = await reopened.read("r")
    assert [e.seq for e in events] == list(range(seq + 2))
    await reopened.close()


# -- map growth ----------------------------------------------------------------------------


async def test_the_map_grows_when_full_and_nothing_is_lost(store: Path) -> None:
    log = LmdbEventLog(store, map_size=64 * 1024)
    payload = "p" * 1500

    async def fill(run_id: str) -> None:
        await log.append(run_id, 0, [started(run_id)])
        for seq in range(1, 201, 10):
            await log.append(run_id, seq, [done(run_id, s, payload) for s in range(seq, seq + 10)])

    await asyncio.gather(*(fill(f"r{n}") for n in range(10)))
    stats = await log.statistics()
    assert stats.events == 10 * 201
    assert stats.size_bytes > 2 * 1024 * 1024
    for n in range(10):
        events = await log.read(f"r{n}")
        assert [e.seq for e in events] == list(range(201))
    await log.close()
    reopened = LmdbEventLog(store, map_size=64 * 1024)  # a smaller map than the file is fine
    assert (await reopened.statistics()).events == 2010
    await reopened.append("r0", 201, [done("r0", 201, payload)])
    await reopened.close()


# -- corruption ----------------------------------------------------------------------------


def event_key(run_id: str, seq: int) -> bytes:
    return run_id.encode() + b"\x00" + struct.pack(">Q", seq)


async def test_a_corrupt_event_names_its_run_and_seq_and_spares_other_runs(store: Path) -> None:
    log = LmdbEventLog(store)
    for run_id in ("a", "b"):
        await log.append(run_id, 0, [started(run_id), *steps(run_id, 1, 3)])
    await log.close()
    with raw_env(store) as env:
        events = env.open_db(b"events")
        with env.begin(write=True, db=events) as txn:
            record = bytearray(txn.get(event_key("b", 1)))  # type: ignore[arg-type]
            record[-3] ^= 0x04  # one bit, inside the JSON body
            txn.put(event_key("b", 1), bytes(record))
    log = LmdbEventLog(store)
    with pytest.raises(CorruptEventError) as caught:
        await log.read("b")
    assert (caught.value.run_id, caught.value.seq) == ("b", 1)
    assert "b#1" in str(caught.value)
    assert [e.seq for e in await log.read("b", 2)] == [2, 3]
    assert [e.seq for e in await log.read("a")] == [0, 1, 2, 3]
    assert len(await log.list_runs()) == 2
    await log.append("b", 4, steps("b", 4, 1))  # the run can still be appended to
    await log.close()


async def test_a_missing_event_is_reported_with_its_seq(store: Path) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r"), *steps("r", 1, 3)])
    await log.close()
    with raw_env(store) as env:
        events = env.open_db(b"events")
        with env.begin(write=True, db=events) as txn:
            assert txn.delete(event_key("r", 1))
            assert txn.delete(event_key("r", 3))
    log = LmdbEventLog(store)
    with pytest.raises(CorruptEventError, match="r#1 is missing") as caught:
        await log.read("r")
    assert caught.value.seq == 1
    with pytest.raises(CorruptEventError, match="r#3 is missing"):
        await log.read("r", 2)
    await log.close()


# -- paths, permissions, schema ------------------------------------------------------------


async def test_a_store_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_text("not a store")
    with pytest.raises(StorePathError, match="is a file, not a directory") as caught:
        LmdbEventLog(path)
    assert isinstance(caught.value, StorageError)
    assert caught.value.path == str(path) and str(path) in str(caught.value)
    with pytest.raises(StorePathError, match="cannot create the store directory"):
        LmdbEventLog(path / "inside")
    with pytest.raises(StorePathError, match="cannot create the store directory"):
        LmdbEventLog("/proc/perdure-cannot-live-here")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
async def test_an_unwritable_store_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locked-down"
    path.mkdir(mode=0o500)
    with pytest.raises(StorePathError, match="not writable"):
        LmdbEventLog(path)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("open_umask")
async def test_the_store_is_owner_only(store: Path) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    assert mode_of(store) == 0o700
    for name in ("data.mdb", "lock.mdb", "perdure.lock"):
        assert mode_of(store / name) == 0o600, name


async def test_a_store_with_a_newer_schema_is_refused(store: Path) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()

    def set_schema(version: bytes) -> None:
        with raw_env(store) as env:
            meta = env.open_db(b"meta")
            with env.begin(write=True, db=meta) as txn:
                txn.put(b"schema_version", version)

    set_schema(b"99")
    for read_only in (False, True):
        with pytest.raises(SchemaVersionError, match=r"schema version 99.*upgrade perdure"):
            LmdbEventLog(store, read_only=read_only)
    set_schema(b"1")  # the refused opens left nothing open or locked
    (store / "journal.wal").unlink()  # as a store written by schema-1 perdure has none
    log = LmdbEventLog(store)
    assert [e.seq for e in await log.read("r")] == [0]
    await log.append("r", 1, steps("r", 1, 1))
    await log.close()
    with raw_env(store) as env, env.begin(db=env.open_db(b"meta")) as txn:
        # Upgraded in place: a perdure that knows no journal now refuses this store.
        assert txn.get(b"schema_version") == b"2"


# -- limits, backup, fork ------------------------------------------------------------------


async def test_keys_that_cannot_fit_lmdb_are_refused_before_writing(log: LmdbEventLog) -> None:
    long_id = "r" * 401
    with pytest.raises(ValueError, match="at most 400"):
        await log.append(long_id, 0, [started(long_id)])
    assert await log.read(long_id) == [] and await log.get_run(long_id) is None
    with pytest.raises(ValueError, match="idempotency key"):
        await log.append("r", 0, [started("r", key="k" * 600)])
    with pytest.raises(ValueError, match="timer id"):
        await log.append("r", 0, [started("r"), timer("r", 1, "t" * 600, 1.0)])
    assert await log.lookup_idempotency("k" * 600) is None
    assert await log.list_runs() == []
    await log.append("é-ü", 0, [started("é-ü", key="ключ")])  # non-ASCII is fine
    assert (await log.lookup_idempotency("ключ")).run_id == "é-ü"  # type: ignore[union-attr]


async def test_a_hot_copy_is_a_complete_store(log: LmdbEventLog, tmp_path: Path) -> None:
    await log.append("r", 0, [started("r", key="k"), timer("r", 1, "t", 5.0)])
    backup = tmp_path / "backup"
    await log.copy(backup)
    await log.append("r", 2, steps("r", 2, 1))  # after the copy: not in it
    copied = LmdbEventLog(backup)
    assert [e.seq for e in await copied.read("r")] == [0, 1]
    assert len(await copied.due_timers(10.0)) == 1
    await copied.close()
    assert mode_of(backup / "data.mdb") == 0o600
    with pytest.raises(StorePathError, match="new or empty directory"):
        await log.copy(backup)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
async def test_a_log_inherited_through_fork_refuses_to_work(log: LmdbEventLog) -> None:
    await log.append("r", 0, [started("r")])
    with warnings.catch_warnings():  # Python >= 3.12 warns about fork() beside threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: any use must fail clearly, never touch the parent's env
        code = 1
        try:
            asyncio.new_event_loop().run_until_complete(log.get_run("r"))
        except StorageError as exc:
            code = 0 if "fork" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (await log.get_run("r")) is not None  # the parent is unaffected


async def test_a_damaged_runs_index_entry_is_reported_not_hiding_events(store: Path) -> None:
    """An index entry that claims fewer events than the run has must not hide the rest."""
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.append("r", 1, steps("r", 1, 2))
    await log.close()
    with raw_env(store) as env, env.begin(write=True, db=env.open_db(b"runs")) as txn:
        entry = json.loads(txn.get(b"r")[5:])  # after the checksum: 01 + CRC32
        entry["next_seq"] = 1  # a flipped bit in an (unchecksummed, older) row: 3 becomes 1
        assert txn.put(b"r", json.dumps(entry).encode())
    log = LmdbEventLog(store)
    with pytest.raises(CorruptEventError, match="index entry is corrupt") as caught:
        await log.read("r")
    assert (caught.value.run_id, caught.value.seq) == ("r", 1)
    await log.close()


@pytest.mark.parametrize("how", ["no O_DIRECT", "O_DIRECT refused at write"])
async def test_the_journal_falls_back_to_buffered_synchronous_writes(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "no O_DIRECT":
        monkeypatch.delattr(os, "O_DIRECT", raising=False)
    else:
        real_pwrite = os.pwrite

        def pwrite(fd: int, data: Any, offset: int) -> int:
            if isinstance(data, memoryview):  # the aligned direct-write buffer
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    earlier = tmp_path / "earlier"
    await log.copy(earlier)
    await log.append("r", 1, steps("r", 1, 2))
    journal = log._shared.journal
    assert journal is not None and journal._view is None  # buffered O_DSYNC writes
    await log.close()
    os.replace(earlier / "data.mdb", store / "data.mdb")
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2]  # the frames were written
    await reopened.close()


async def two_batches_lmdb_lacks(store: Path, monkeypatch: pytest.MonkeyPatch) -> LmdbEventLog:
    """A log whose two acknowledged batches (r#0, r#1-2) are journaled but not in LMDB yet."""
    monkeypatch.setattr(lmdb_writer, "IDLE_COMMIT", 30.0)  # LMDB commits only when asked
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.append("r", 1, steps("r", 1, 2))
    writer = log._shared.writer
    assert writer is not None and len(writer._pending) == 2
    return log


async def the_failed_batch_left_no_trace(log: LmdbEventLog, store: Path) -> None:
    """After a failed r#3: r holds 0-2, takes r#3-4, and a reopen sees exactly that."""
    assert [e.seq for e in await log.read("r")] == [0, 1, 2]
    await log.append("r", 3, steps("r", 3, 2))
    await log.close()
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2, 3, 4]
    await reopened.close()


async def test_a_failed_journal_write_keeps_the_batches_lmdb_has_not_committed_yet(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await two_batches_lmdb_lacks(store, monkeypatch)
    fail_durable_step(log, monkeypatch, {1})
    with pytest.raises(StorageError, match="nothing of this append"):
        await log.append("r", 3, steps("r", 3, 1))
    await the_failed_batch_left_no_trace(log, store)


class _RefusingMerge:
    """An LMDB environment whose next child transaction fails to merge into its parent,
    leaving part of its changes there (a stray event record)."""

    def __init__(self, env: lmdb.Environment, events: Any, stray: bytes) -> None:
        self._env = env
        self._events = events
        self._stray = stray
        self.refusals = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, **kwargs: Any) -> Any:
        txn = self._env.begin(**kwargs)
        parent = kwargs.get("parent")
        if parent is None or not self.refusals:
            return txn
        self.refusals -= 1
        return _RefusingCommit(txn, parent, self._events, self._stray)


class _RefusingCommit:
    def __init__(self, txn: Any, parent: Any, events: Any, stray: bytes) -> None:
        self._txn = txn
        self._parent = parent
        self._events = events
        self._stray = stray

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def commit(self) -> None:
        self._txn.abort()
        self._parent.put(self._stray, b"half-merged", db=self._events)
        raise lmdb.Error("injected: the child transaction did not merge")


async def test_a_batch_that_cannot_merge_fails_alone_and_keeps_the_journaled_ones(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge into the open transaction happens before the journal write; if it fails,
    the open transaction may be half-merged, so it is dropped and the batches it held
    (acknowledged, in the journal) are redone."""
    log = await two_batches_lmdb_lacks(store, monkeypatch)
    writer = log._shared.writer
    assert writer is not None
    stray = event_key("r", 3)
    monkeypatch.setattr(writer, "_env", _RefusingMerge(writer._env, writer._dbs.events, stray))
    with pytest.raises(StorageError, match=r"did not merge.*nothing of this append"):
        await log.append("r", 3, steps("r", 3, 1))
    with pytest.raises(SequenceConflictError, match="the run is at 3"):
        await log.append("r", 4, steps("r", 4, 1))
    await the_failed_batch_left_no_trace(log, store)


async def test_a_read_waits_for_the_lmdb_commit_only_if_it_needs_an_uncommitted_batch(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lmdb_writer, "IDLE_COMMIT", 30.0)  # LMDB commits only when asked
    log = LmdbEventLog(store)
    writer = log._shared.writer
    assert writer is not None
    await log.append("a", 0, [started("a", key="ka")])
    assert len(writer._pending) == 1
    # Another run, another key: nothing uncommitted concerns them, no commit is forced.
    assert await log.read("b") == [] and await log.get_run("b") is None
    assert await log.lookup_idempotency("kb") is None
    assert len(writer._pending) == 1
    # The run itself (or its key): the read waits for LMDB and sees the batch.
    assert (await log.lookup_idempotency("ka")).run_id == "a"  # type: ignore[union-attr]
    assert writer._pending == []
    await log.append("a", 1, steps("a", 1, 1))
    assert [e.seq for e in await log.read("a")] == [0, 1]
    assert writer._pending == []
    await log.append("a", 2, steps("a", 2, 1))
    assert [r.run_id for r in await log.list_runs()] == ["a"]  # store-wide reads wait too
    assert writer._pending == []
    await log.close()


async def test_a_reader_that_cannot_write_reads_lmdb_as_it_is(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without write access the journal cannot be applied: the reader still opens."""
    await lmdb_loses_its_last_commit(store, tmp_path)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode)
    )
    reader = LmdbEventLog(store, read_only=True)
    assert [e.seq for e in await reader.read("r")] == [0]  # what LMDB holds
    await reader.close()
    monkeypatch.setattr(os, "access", real_access)
    writer = LmdbEventLog(store)  # a writer recovers the batch
    assert [e.seq for e in await writer.read("r")] == [0, 1, 2]
    await writer.close()


async def test_a_frame_damaged_before_intact_ones_is_reported_not_skipped(
    store: Path, tmp_path: Path
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    earlier = tmp_path / "earlier"
    await log.copy(earlier)
    for seq in range(1, 4):
        await log.append("r", seq, steps("r", seq, 1))
    await log.close()
    frames = journal_frames(store)
    os.replace(earlier / "data.mdb", store / "data.mdb")  # LMDB needs the last three frames
    journal = store / "journal.wal"
    data = bytearray(journal.read_bytes())
    data[PAGE * (len(frames) - 1) + 40] ^= 0xFF  # the middle one of them
    journal.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"journal .* is damaged .* removing journal\.wal"):
        LmdbEventLog(store)
    journal.unlink()  # the way out the message names: the store without those batches
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0]
    await reopened.close()
