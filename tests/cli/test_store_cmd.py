"""`perdure store check` and `perdure store salvage`: a way out of a damaged store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import lmdb
import pytest

from perdure.eventlog import LmdbEventLog, RunStarted, TaskCompleted
from tests.support.cli import cli, cli_process

PAGE = 4096


def _fill(path: Path, runs: int = 8, steps: int = 19) -> None:
    async def fill() -> None:
        log = LmdbEventLog(path)
        for n in range(runs):
            run = f"run{n}"
            start = RunStarted(
                run_id=run, seq=0, ts=1.0, target="t", kind="function", input=None,
                input_digest="d", idempotency_key=None,
            )  # fmt: skip
            await log.append(run, 0, [start])
            await log.append(
                run,
                1,
                [
                    TaskCompleted(
                        run_id=run,
                        seq=i,
                        ts=2.0,
                        position=str(i),
                        name="s",
                        input_digest="d",
                        result="x" * 700,
                    )
                    for i in range(1, steps + 1)
                ],
            )
        await log.close()

    asyncio.run(fill())


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    path = tmp_path / "healthy"
    _fill(path)
    return path


def _damage(path: Path) -> None:
    """run1's runs-index row gets a flipped digit; an event of run2 a flipped bit."""
    env = lmdb.open(str(path), max_dbs=16)
    try:
        with env.begin(write=True) as txn:
            runs = env.open_db(b"runs", txn=txn)
            events = env.open_db(b"events", txn=txn)
            raw = txn.get(b"run1", db=runs)
            where = raw.index(b'"next_seq":') + len(b'"next_seq":')
            assert txn.put(
                b"run1", raw[:where] + bytes([raw[where] ^ 1]) + raw[where + 1 :], db=runs
            )
            key = b"run2\x00" + (3).to_bytes(8, "big")
            value = bytearray(txn.get(key, db=events))
            value[-5] ^= 0x04
            assert txn.put(key, bytes(value), db=events)
    finally:
        env.close()


def test_check_of_a_healthy_store(healthy: Path) -> None:
    ran = cli("store", "check", "--store", str(healthy))
    assert ran.code == 0, ran.err
    assert "8 runs checked, 8 readable, 0 damaged" in ran.out


def test_check_names_each_damaged_run_and_salvage_copies_the_readable_ones(
    healthy: Path, tmp_path: Path
) -> None:
    _damage(healthy)
    ran = cli("--json", "store", "check", "--store", str(healthy))
    assert ran.code == 1
    report = json.loads(ran.out)
    assert (report["runs"], report["readable"]) == (8, 6)
    problems = {d["run_id"]: d["problem"] for d in report["damaged"]}
    assert set(problems) == {"run1", "run2"}
    assert "checksum" in problems["run1"] and "run2#3" in problems["run2"]

    new = tmp_path / "new"
    ran = cli("store", "salvage", "--all", "--store", str(healthy), "--to", str(new))
    assert ran.code == 1  # run2 could not be salvaged
    assert "salvaged 7 runs" in ran.out and "not salvaged  run2: event run2#3" in ran.out

    async def listed() -> dict[str, int]:
        log = LmdbEventLog(new, read_only=True)
        try:
            return {info.run_id: len(await log.read(info.run_id)) for info in await log.list_runs()}
        finally:
            await log.close()

    found = asyncio.run(listed())
    assert found == {f"run{n}": 20 for n in range(8) if n != 2}  # run1's row is rebuilt


def test_salvage_of_named_runs_refuses_a_store_as_destination(
    healthy: Path, tmp_path: Path
) -> None:
    ran = cli("store", "salvage", "run0", "--store", str(healthy), "--to", str(healthy))
    assert ran.code == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    ran = cli("store", "salvage", "run0", "--store", str(healthy), "--to", str(other))
    assert ran.code == 1 and "new or empty directory" in ran.err
    new = tmp_path / "new"
    ran = cli("store", "salvage", "run0", "nope", "--store", str(healthy), "--to", str(new))
    assert ran.code == 1 and "salvaged 1 runs (20 events)" in ran.out
    assert "not salvaged  nope: no such run" in ran.out


def test_a_page_that_aborts_lmdb_costs_its_run_not_the_command(
    healthy: Path, tmp_path: Path
) -> None:
    """LMDB keeps no checksum of its pages: a leaf page claiming to be a branch trips an
    assertion that aborts the reading process. The command survives it (a child process
    reads) and reports the run it was reading; the other runs are still checked."""
    original = (healthy / "data.mdb").read_bytes()
    aborted = 0
    for page in range(2, len(original) // PAGE):
        flags = int.from_bytes(original[page * PAGE + 10 : page * PAGE + 12], "little")
        if not flags & 0x02:  # leaf pages only
            continue
        store = tmp_path / f"damaged-{page}"
        shutil.copytree(healthy, store)
        data = bytearray(original)
        data[page * PAGE + 10 : page * PAGE + 12] = (0x01).to_bytes(2, "little")
        (store / "data.mdb").write_bytes(bytes(data))
        ran = cli_process("--json", "store", "check", "--store", os.fspath(store))
        if ran.code == 0:
            continue  # a page no longer in use
        assert ran.code == 1
        if not ran.out:  # the store itself cannot be listed: a clear error, no traceback
            assert "perdure: error:" in ran.err and "Traceback" not in ran.err
            continue
        report = json.loads(ran.out)
        assert report["runs"] >= 1
        stopped = [
            d for d in report["damaged"] if "stopped the reader (killed by SIGABRT)" in d["problem"]
        ]
        if stopped:
            aborted += 1
            assert report["readable"] >= 1
        if aborted >= 2:
            break
    assert aborted >= 1, "no damaged page made LMDB abort: the test lost its point"


AS_NOBODY = """
import os, sys
from perdure.cli import main  # imported first: the other user may not read the venv
from perdure.cli import _main, _runs, _store  # noqa: F401  (commands load when used)
os.setgid(65534)
os.setuid(65534)
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
@pytest.mark.parametrize("where", ["inside", "itself"])
def test_a_store_the_user_cannot_enter_is_permission_denied_not_missing(
    healthy: Path, where: str
) -> None:
    """A store inside a directory the user cannot enter, or a store directory it cannot
    enter: the CLI says permission denied, never that there is no store."""
    import subprocess
    import sys

    if where == "itself":
        healthy.parent.chmod(0o755)
        healthy.chmod(0o700)
    else:
        healthy.parent.chmod(0o700)
    done = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, "runs", "list", "--store", os.fspath(healthy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "permission denied" in done.stderr, done.stderr
    assert "no perdure store" not in done.stderr and "holds no" not in done.stderr
