"""A damaged or hostile store must not take the store down (issue 13, store-level items).

Crafted ids and values that look like journal frames, damaged runs-index rows,
a truncated data file, a deleted lock file, readers racing a starting writer,
symlinked store files, and the messages for a full disk or a folder the user
cannot enter.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from perdure.eventlog import LmdbEventLog, StorageError, StorePathError
from perdure.eventlog import _lmdb_env as lmdb_env
from perdure.eventlog._lmdb_journal import PAGE, Journal
from perdure.testing.events import done, started, steps
from tests.support.damage import damage_row, flip_a_digit

#: "PDJ1" + 8 bytes whose CRC works out: with the event key's 0x00 separator and
#: sequence number after it, a valid, empty format-1 frame numbered 6.5e18.
CRAFTED_ID = "PDJ1ZJPLsG3-"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def journal_bytes(store: Path) -> bytes:
    return (store / "journal.wal").read_bytes()


def page_offsets(data: bytes, needle: bytes) -> list[int]:
    return [o for o in range(0, len(data), PAGE) if data[o : o + len(needle)] == needle]


async def put_on_a_page_boundary(log: LmdbEventLog, store: Path, run_id: str, seq: int) -> int:
    """Append two-event batches to `run_id` until the key of an event starts a journal page.

    An event key is ``run id ‖ 0x00 ‖ seq``; the first event's result is sized so
    that the second event's key lands exactly on a page boundary. Returns the next seq.
    """
    needle = run_id.encode() + b"\x00"
    size = 100
    for _ in range(4):
        await log.append(run_id, seq, [done(run_id, seq, "x" * size), done(run_id, seq + 1)])
        seq += 2
        data = journal_bytes(store)
        key = needle + struct.pack(">Q", seq - 1)
        where = data.rfind(key)
        assert where >= 0
        if where % PAGE == 0:
            return seq
        size += PAGE - where % PAGE
    raise AssertionError("could not put the key on a page boundary")


async def test_a_crafted_id_on_a_page_boundary_does_not_brick_the_store(store: Path) -> None:
    log = LmdbEventLog(store)
    await log.append(CRAFTED_ID, 0, [started(CRAFTED_ID)])
    seq = await put_on_a_page_boundary(log, store, CRAFTED_ID, 1)
    await log.close()
    for round_ in range(3):  # each open starts the journal over, below the crafted page
        reopened = LmdbEventLog(store)
        assert len(await reopened.read(CRAFTED_ID)) == seq + round_
        await reopened.append(CRAFTED_ID, seq + round_, steps(CRAFTED_ID, seq + round_, 1))
        await reopened.close()
    reader = LmdbEventLog(store, read_only=True)
    assert len(await reader.read(CRAFTED_ID)) == seq + 3
    await reader.close()


def forged_frame(number: int, salt: bytes, payload: bytes = b"") -> bytes:
    """A frame of the current layout, but of a generation the store never had."""
    crc = zlib.crc32(payload, zlib.crc32(struct.pack(">16sQI", salt, number, len(payload))))
    return struct.pack(">4s16sQII", b"PDJ2", salt, number, len(payload), crc) + payload


def v1_frame(number: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(struct.pack(">QI", number, len(payload))))
    frame = struct.pack(">4sQII", b"PDJ1", number, len(payload), crc) + payload
    return frame + bytes(-len(frame) % PAGE)


async def test_frame_like_headers_in_the_journal_are_never_taken_for_frames(
    store: Path, tmp_path: Path
) -> None:
    """Frame headers in random data, anywhere past the live chain, with any salt but the
    journal's own: recovery neither applies them nor refuses the store over them."""
    rng = random.Random(13)
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    earlier = tmp_path / "earlier"
    await log.copy(earlier)
    await log.append("r", 1, steps("r", 1, 2))  # LMDB will lack this batch: frame 2
    await log.close()
    data = bytearray(journal_bytes(store))
    chain_end = 3 * PAGE  # header page, then two frames
    for page in range(chain_end // PAGE, len(data) // PAGE):
        noise = rng.randbytes(PAGE)
        if page % 3 == 0:  # a well-formed frame numbered "next" or far above, foreign salt
            number = rng.choice([3, 4, 2**40])
            frame = forged_frame(number, rng.randbytes(16), rng.randbytes(rng.randrange(64)))
            noise = frame + noise[len(frame) :]
        elif page % 3 == 1:  # an old-format frame, valid and numbered next
            noise = v1_frame(3, b"")[:PAGE]
        data[page * PAGE : (page + 1) * PAGE] = noise
    (store / "journal.wal").write_bytes(bytes(data))
    os.replace(earlier / "data.mdb", store / "data.mdb")
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2]  # the real frame, only
    await reopened.append("r", 3, steps("r", 3, 1))
    await reopened.close()
    again = LmdbEventLog(store)
    assert [e.seq for e in await again.read("r")] == [0, 1, 2, 3]
    await again.close()


async def test_a_format_1_journal_is_replayed_once_then_rewritten(
    store: Path, tmp_path: Path
) -> None:
    """A store last written by a perdure without the salt: its journal's missing frames
    are applied, and the journal is rewritten in the current format."""
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    earlier = tmp_path / "earlier"
    await log.copy(earlier)
    await log.append("r", 1, steps("r", 1, 2))
    await log.append("r", 3, steps("r", 3, 1))
    await log.close()
    journal = Journal(str(store), read_only=True)
    try:
        frames = list(journal.frames())
    finally:
        journal.close()
    assert [n for n, _ in frames] == [1, 2, 3]
    old = b"".join(v1_frame(number, payload) for number, payload in frames)
    old += v1_frame(2**62, b"")  # format 1 cannot tell this from data: not searched for
    size = len(journal_bytes(store))
    (store / "journal.wal").write_bytes(old + bytes(size - len(old)))
    os.replace(earlier / "data.mdb", store / "data.mdb")
    reopened = LmdbEventLog(store)
    assert [e.seq for e in await reopened.read("r")] == [0, 1, 2, 3]
    await reopened.close()
    assert journal_bytes(store)[:4] == b"PDJH"  # the current format from now on


# -- locks: a deleted lock file, readers beside a starting writer --------------------------


def run_child(code: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


OPEN_AND_APPEND = """
import asyncio, sys
from perdure.eventlog import LmdbEventLog, RunStarted, StorageError
try:
    log = LmdbEventLog(sys.argv[1])
except StorageError as exc:
    print(type(exc).__name__, exc)
    raise SystemExit(0)
event = RunStarted(run_id="second", seq=0, ts=1.0, target="t", kind="function", input=None,
                   input_digest="d", idempotency_key=None)
asyncio.run(log.append("second", 0, [event]))
print("wrote")
"""


async def test_deleting_the_lock_file_does_not_admit_a_second_writer(store: Path) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    (store / "perdure.lock").unlink()  # as a cleaner of stray files would
    out = run_child(OPEN_AND_APPEND, str(store))
    assert out.stdout.startswith("StoreLockedError"), out.stdout + out.stderr
    assert await log.get_run("second") is None
    await log.append("r", 1, steps("r", 1, 1))  # the first writer carries on
    await log.close()


async def test_a_read_only_open_of_a_cleanly_closed_store_takes_no_lock(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    taken: list[str] = []
    real_lock = lmdb_env._lock
    monkeypatch.setattr(
        lmdb_env, "_lock", lambda path, **kw: taken.append(path) or real_lock(path, **kw)
    )
    reader = LmdbEventLog(store, read_only=True)
    assert [e.seq for e in await reader.read("r")] == [0]
    await reader.close()
    assert taken == []


async def test_a_writer_starting_while_a_reader_replays_the_journal_waits_for_it(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    reader_lock = lmdb_env._lock(log.path, reader=True)  # a reader mid-replay
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the writer's first wait: the reader finishes
        waits.append(seconds)
        reader_lock.release()

    monkeypatch.setattr(lmdb_env.time, "sleep", wait)
    writer = LmdbEventLog(store)
    await writer.append("r", 1, steps("r", 1, 1))
    await writer.close()
    assert len(waits) == 1


# -- files: symbolic links, ownership, permissions -----------------------------------------


@pytest.mark.parametrize("name", ["perdure.lock", "journal.wal", "lock.mdb"])
async def test_a_store_file_symlinked_elsewhere_is_refused_and_its_target_untouched(
    store: Path, tmp_path: Path, name: str
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n" * 1000)
    (store / name).unlink()
    (store / name).symlink_to(victim)
    with pytest.raises(StorePathError, match="symbolic link"):
        LmdbEventLog(store)
    with pytest.raises(StorePathError, match="symbolic link"):
        LmdbEventLog(store, read_only=True)
    assert victim.read_text() == "precious\n" * 1000


async def test_a_store_folder_others_can_write_or_another_user_owns_is_refused(
    store: Path,
) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    os.chmod(store, 0o770)
    with pytest.raises(StorePathError, match=r"writable by group or others.*chmod go-w"):
        LmdbEventLog(store)
    reader = LmdbEventLog(store, read_only=True)  # reading is harmless
    assert [e.seq for e in await reader.read("r")] == [0]
    await reader.close()
    os.chmod(store, 0o700)
    if os.geteuid() == 0:
        os.chown(store, 4242, -1)
        with pytest.raises(StorePathError, match=r"belongs to another user \(uid 4242"):
            LmdbEventLog(store)
        os.chown(store, 0, -1)
    reopened = LmdbEventLog(store)
    await reopened.close()


OPEN_READ_ONLY_AS_NOBODY = """
import os, sys
from perdure.eventlog import LmdbEventLog, StorageError  # before: nobody cannot read the venv
os.setgid(65534)
os.setuid(65534)
try:
    LmdbEventLog(sys.argv[1], read_only=True)
except StorageError as exc:
    print(type(exc).__name__, exc)
"""


async def test_a_store_folder_the_user_cannot_enter_says_permission_denied(store: Path) -> None:
    log = LmdbEventLog(store)
    await log.append("r", 0, [started("r")])
    await log.close()
    if os.geteuid() == 0:  # root enters anything: ask as another user
        os.chmod(store.parent, 0o755)
        out = run_child(OPEN_READ_ONLY_AS_NOBODY, str(store))
        assert out.stdout.startswith("StorePathError permission denied"), out.stdout + out.stderr
        assert "holds no perdure store" not in out.stdout
        return
    os.chmod(store, 0)
    try:
        with pytest.raises(StorePathError, match="permission denied"):
            LmdbEventLog(store, read_only=True)
    finally:
        os.chmod(store, 0o700)


# -- a truncated data file -----------------------------------------------------------------

READ_ALL = """
import asyncio, sys
from perdure.eventlog import LmdbEventLog, StorageError
try:
    log = LmdbEventLog(sys.argv[1], read_only=sys.argv[2] == "ro")
    runs = asyncio.run(log.list_runs())
    print("read", len(runs))
except StorageError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("mode", ["ro", "rw"])
async def test_a_truncated_data_file_is_refused_with_a_clear_error_not_sigbus(
    store: Path, mode: str
) -> None:
    log = LmdbEventLog(store)
    for n in range(200):
        await log.append(f"r{n}", 0, [started(f"r{n}", input="v" * 2000)])
    await log.close()
    data = store / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    out = run_child(READ_ALL, str(store), mode)
    assert out.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert out.stdout.startswith("StorageError") and "truncated" in out.stdout, (
        out.stdout + out.stderr
    )


# -- a full disk ---------------------------------------------------------------------------


async def test_a_full_disk_says_so_and_that_nothing_acknowledged_is_lost(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lmdb

    log = LmdbEventLog(store, durability="process")
    await log.append("r", 0, [started("r")])
    writer = log._shared.writer
    assert writer is not None

    def failing(txn: Any) -> None:
        txn.abort()
        raise lmdb.Error("mdb_txn_commit: Input/output error")  # what LMDB says on ENOSPC

    full = os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 0, 0, 0, 255))
    monkeypatch.setattr(writer, "_commit_txn", failing)
    monkeypatch.setattr(os, "statvfs", lambda path: full)
    with pytest.raises(StorageError, match=r"disk .* is full.*nothing acknowledged .* lost"):
        await log.append("r", 1, steps("r", 1, 1))
    monkeypatch.undo()
    await log.append("r", 1, steps("r", 1, 1))
    await log.close()


# -- the runs index: checksummed rows; one damaged row does not hide the others ------------


async def test_a_damaged_runs_row_is_skipped_and_reported_and_the_others_listed(
    store: Path, logs: Any
) -> None:
    log = LmdbEventLog(store)
    for name in ("a", "b", "c"):
        await log.append(name, 0, [started(name)])
    await log.close()
    damage_row(store, "b", flip_a_digit)
    reopened = LmdbEventLog(store)
    assert [r.run_id for r in await reopened.list_runs()] == ["a", "c"]
    assert [r.run_id for r in await reopened.list_runs(status="running", limit=2)] == ["a", "c"]
    with pytest.raises(StorageError, match=r"runs index entry of run 'b' is corrupt: its checksum"):
        await reopened.get_run("b")
    await reopened.append("c", 1, steps("c", 1, 1))  # the healthy runs carry on
    await reopened.close()
    skipped = logs.find("skipped a run whose runs-index row cannot be read")
    assert skipped and {entry["run_id"] for entry in skipped} == {"b"}
    assert "checksum" in skipped[0]["reason"]


async def test_runs_rows_written_before_the_checksum_are_still_read(store: Path) -> None:
    import orjson

    log = LmdbEventLog(store)
    await log.append("old", 0, [started("old")])
    await log.close()
    damage_row(store, "old", lambda raw: raw[5:])  # the plain-JSON row an older perdure wrote
    reopened = LmdbEventLog(store)
    info = await reopened.get_run("old")
    assert info is not None and info.next_seq == 1
    await reopened.append("old", 1, steps("old", 1, 1))  # rewritten with its checksum
    await reopened.close()
    raw = damage_row(store, "old", lambda raw: raw)
    assert raw[:1] == b"\x01" and orjson.loads(raw[5:])["next_seq"] == 2
