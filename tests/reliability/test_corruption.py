"""Corruption drill: flip random bits in a copy of a real store; perdure must name every damage.

LMDB keeps no checksums of values; perdure's envelope carries a CRC32 over the
run id, sequence number and JSON. Flipping bits in stored event values must
make exactly those events fail with their run and sequence number, leave every
other run readable and unchanged, and never crash a runtime opened on the
damaged store (it keeps serving the healthy runs).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from perdure import (
    CorruptEventError,
    LmdbEventLog,
    RunParkedError,
    Runtime,
    SchemaVersionError,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.eventlog import encode
from perdure.testing import MockClock
from tests.support.damage import damage_row, flip_a_digit

ROUNDS = 50
FIGURES = {"rounds": 0, "events_flipped": 0, "detected": 0, "as_schema_version": 0}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\ncorruption drill: {FIGURES}")


@function(name="corrupt_double")
def corrupt_double(x: int) -> int:
    return 2 * x


@task(name="corrupt_step")
def corrupt_step(x: int) -> int:
    return x + 1


@entrypoint(name="corrupt_flow")
def corrupt_flow(x: int) -> dict[str, Any]:
    values = [corrupt_step(x + i).result() for i in range(3)]
    if x % 2:
        values.append(interrupt({"check": values}))
    return {"values": values}


#: While True, `corrupt_slow` never finishes: the filling process closes with it running.
HANG = {"on": False}


@task(name="corrupt_slow")
async def corrupt_slow(x: int) -> int:
    if HANG["on"]:
        await asyncio.Event().wait()  # never set: the filling process stops with this running
    return x * 10


@entrypoint(name="corrupt_busy")
async def corrupt_busy(x: int) -> int:
    return await corrupt_slow(await corrupt_step(x))


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed store with 14 runs: finished functions and workflows, paused workflows, and
    two workflows that were still running when their process stopped (resumed on open)."""
    store = tmp_path_factory.mktemp("original") / "store"

    async def fill() -> None:
        async with Runtime(path=store, clock=MockClock()) as rt:
            for i in range(6):
                await rt.run(corrupt_double, {"x": i}, run_id=f"fn-{i}")
                await rt.start(corrupt_flow, i, run_id=f"wf-{i}")
                await rt.wait(f"wf-{i}")
            for i in range(2):
                await rt.start(corrupt_busy, i, run_id=f"busy-{i}")
            for i in range(2):  # until the slow task's attempt is on record
                while (info := await rt.get_run(f"busy-{i}")) is None or info.next_seq < 4:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)

    HANG["on"] = True
    try:
        asyncio.run(fill())
    finally:
        HANG["on"] = False
    return store


def _raw_events(store: Path) -> dict[tuple[str, int], bytes]:
    env = lmdb.open(str(store), readonly=True, max_dbs=16)
    try:
        db = env.open_db(b"events", create=False)
        with env.begin(db=db) as txn:
            return {
                (key[:-9].decode(), int.from_bytes(key[-8:], "big")): value
                for key, value in txn.cursor()
            }
    finally:
        env.close()


def _flip(store: Path, rng: random.Random, count: int) -> set[tuple[str, int]]:
    """Flip 1-3 random bits in each of `count` random event values; return the damaged events."""
    events = _raw_events(store)
    damaged = set(rng.sample(sorted(events), count))
    env = lmdb.open(str(store), max_dbs=16)
    try:
        db = env.open_db(b"events", create=False)
        with env.begin(db=db, write=True) as txn:
            for run, seq in damaged:
                value = bytearray(events[(run, seq)])
                for bit in rng.sample(range(len(value) * 8), rng.randint(1, 3)):
                    value[bit // 8] ^= 1 << (bit % 8)
                assert txn.put(run.encode() + b"\0" + seq.to_bytes(8, "big"), bytes(value))
    finally:
        env.close()
    return damaged


async def _scan(log: LmdbEventLog, run_id: str, next_seq: int) -> tuple[list[Any], set[int]]:
    """Read a run, stepping past each damaged record; return the last readable tail and the
    damaged sequence numbers (each read stops at the first damaged record it meets)."""
    bad: set[int] = set()
    seq = 0
    while seq < next_seq:
        try:
            return await log.read(run_id, seq), bad
        except CorruptEventError as exc:
            assert exc.run_id == run_id and exc.seq >= seq and f"{run_id}#{exc.seq}" in str(exc)
            found = exc.seq
        except SchemaVersionError as exc:
            # A flipped envelope-version byte reads as "written by a newer perdure" (the
            # version byte is outside the CRC); it still names the run and seq.
            assert exc.run_id == run_id and exc.seq is not None and exc.seq >= seq
            found = exc.seq
            FIGURES["as_schema_version"] += 1
        bad.add(found)
        seq = found + 1
    return [], bad


@pytest.mark.parametrize("round_", range(ROUNDS))
async def test_flipped_bits_are_reported_with_run_and_seq_and_nothing_else_breaks(
    round_: int, original: Path, tmp_path: Path
) -> None:
    rng = random.Random(round_)
    store = tmp_path / "copy"
    shutil.copytree(original, store)  # the original is closed: a plain copy is consistent
    before = _raw_events(original)
    damaged = _flip(store, rng, rng.randint(1, 6))

    log = LmdbEventLog(store, read_only=True)
    try:
        runs = await log.list_runs()
        assert len(runs) == 14
        reported: set[tuple[str, int]] = set()
        for info in runs:
            tail, bad = await _scan(log, info.run_id, info.next_seq)
            reported |= {(info.run_id, seq) for seq in bad}
            assert [e.seq for e in tail] == list(range(max(bad, default=-1) + 1, info.next_seq))
            assert [encode(e) for e in tail] == [before[(info.run_id, e.seq)] for e in tail]
    finally:
        await log.close()
    assert reported == damaged, f"round {round_}: reported {reported}, damaged {damaged}"
    FIGURES["rounds"] += 1
    FIGURES["events_flipped"] += len(damaged)
    FIGURES["detected"] += len(reported)

    # A runtime on the damaged store starts, recovers what it can, and serves healthy runs.
    sick = {run for run, _ in damaged}
    async with Runtime(path=store, clock=MockClock(), max_restarts=1) as rt:
        for info in await rt.list_runs():
            if info.run_id in sick:
                with pytest.raises((CorruptEventError, SchemaVersionError), match=info.run_id):
                    await rt.wait(info.run_id)
                continue
            outcome = await asyncio.wait_for(rt.wait(info.run_id), 10)
            if info.run_id.startswith("fn-"):
                assert outcome.result == 2 * int(info.run_id[3:])
            elif info.run_id.startswith("busy-"):
                assert outcome.result == 10 * (int(info.run_id[5:]) + 1)
            elif outcome.status == "waiting":
                await rt.resume(info.run_id, "fine")
                assert (await asyncio.wait_for(rt.wait(info.run_id), 10)).status == "completed"
        for run_id in sick:
            with pytest.raises((CorruptEventError, SchemaVersionError, RunParkedError)):
                await asyncio.wait_for(rt.cancel(run_id), 10)
        assert await rt.run(corrupt_double, {"x": 21}) == 42


async def test_a_damaged_runs_index_row_does_not_stop_the_recovery_of_the_others(
    original: Path, tmp_path: Path, logs: Any
) -> None:
    """Recovery lists the unfinished runs: the unreadable row is skipped and logged with its
    run id; every other unfinished run resumes, and `list_runs` shows the rest."""
    store = tmp_path / "copy"
    shutil.copytree(original, store)
    damage_row(store, "busy-0", flip_a_digit)  # still valid JSON: only its checksum tells
    async with Runtime(path=store, clock=MockClock(), max_restarts=1) as rt:
        outcome = await asyncio.wait_for(rt.wait("busy-1"), 10)  # resumed by the recovery
        assert outcome.result == 20
        listed = {info.run_id for info in await rt.list_runs()}
        assert len(listed) == 13 and "busy-0" not in listed
    skipped = logs.find("skipped a run whose runs-index row cannot be read")
    assert skipped and {entry["run_id"] for entry in skipped} == {"busy-0"}


TRUNCATED_READ = """
import asyncio, sys
from perdure import LmdbEventLog, StorageError
try:
    log = LmdbEventLog(sys.argv[1], read_only=True)
    print("read", len(asyncio.run(log.list_runs())))
except StorageError as exc:
    print(type(exc).__name__, exc)
"""


def test_a_truncated_data_file_is_refused_clearly_never_a_crash(
    original: Path, tmp_path: Path
) -> None:
    """A data file cut short (copied while written, a full disk): a clear refusal, not SIGBUS."""
    import subprocess
    import sys

    store = tmp_path / "copy"
    shutil.copytree(original, store)
    data = store / "data.mdb"
    rng = random.Random(6)
    for _ in range(3):
        size = data.stat().st_size
        data.write_bytes(data.read_bytes()[: rng.randrange(3 * 4096, size - 4096)])
        out = subprocess.run(
            [sys.executable, "-c", TRUNCATED_READ, str(store)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, f"the reader died ({out.returncode}): {out.stderr}"
        assert out.stdout.startswith("StorageError") and "truncated" in out.stdout, out.stdout


@pytest.mark.parametrize("seed", range(5))
async def test_frame_like_noise_in_the_journal_is_never_replayed_or_fatal(
    seed: int, original: Path, tmp_path: Path
) -> None:
    """Random pages past the journal's live chain, many of them starting with a frame
    header (either format, valid CRCs, any number): the store opens and is unchanged."""
    import struct
    import zlib

    rng = random.Random(seed)
    store = tmp_path / "copy"
    shutil.copytree(original, store)
    before = _raw_events(store)
    journal = bytearray((store / "journal.wal").read_bytes())
    for page in range(2, len(journal) // 4096):
        if rng.random() < 0.5:
            continue
        noise = rng.randbytes(4096)
        number = rng.choice([1, 2, 3, 2**40, rng.getrandbits(63)])
        payload = rng.randbytes(rng.randrange(0, 64))
        if rng.random() < 0.5:  # the current format, a made-up salt
            salt = rng.randbytes(16)
            crc = zlib.crc32(payload, zlib.crc32(struct.pack(">16sQI", salt, number, len(payload))))
            head = struct.pack(">4s16sQII", b"PDJ2", salt, number, len(payload), crc)
        else:  # the format before the salt
            crc = zlib.crc32(payload, zlib.crc32(struct.pack(">QI", number, len(payload))))
            head = struct.pack(">4sQII", b"PDJ1", number, len(payload), crc)
        frame = head + payload
        journal[page * 4096 : (page + 1) * 4096] = frame + noise[len(frame) :]
    (store / "journal.wal").write_bytes(bytes(journal))
    log = LmdbEventLog(store)
    try:
        assert len(await log.list_runs()) == 14
    finally:
        await log.close()
    assert _raw_events(store) == before
