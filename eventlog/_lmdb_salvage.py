"""Reading a damaged LMDB store run by run: for `perdure store check` and `store salvage`.

Unlike `LmdbEventLog.read`, these do not go through the indexes a damage may
have hit: run ids come from the ``runs`` and ``events`` databases' keys, and a
run's events are read by key prefix from seq 0, each checked by its CRC.
What they cannot survive is damage to LMDB's own structure (its B-tree pages
carry no checksum): reading such a page can abort the process, which is why
the command line runs them in a child process.
"""

from __future__ import annotations

from collections.abc import Callable

import lmdb

from perdure.eventlog._codec import decode
from perdure.eventlog._errors import CorruptEventError
from perdure.eventlog._events import Event
from perdure.eventlog._lmdb import LmdbEventLog
from perdure.eventlog._lmdb_keys import SEP, event_key, event_seq, load_run
from perdure.eventlog._protocol import RunInfo


def row_run_ids(log: LmdbEventLog) -> list[str]:
    """The run ids of every runs-index row, in byte order."""
    shared = log._open_env()
    runs = shared.dbs.runs
    found = shared.read(lambda txn: list(txn.cursor(db=runs).iternext(values=False)))
    return [run.decode(errors="surrogateescape") for run in found]


def event_run_ids(log: LmdbEventLog, found: Callable[[str], None]) -> None:
    """Call `found` with the run id of every run that has events, in byte order.

    One key per run is read (the cursor jumps past the rest of each run), and
    each id is handed over at once: a damaged page part-way still leaves the
    ids found before it.
    """
    shared = log._open_env()
    events = shared.dbs.events

    def walk(txn: lmdb.Transaction[bytes]) -> None:
        cursor = txn.cursor(db=events)
        more = cursor.first()
        while more:
            run = cursor.key()[:-9]
            found(run.decode(errors="surrogateescape"))
            more = cursor.set_range(run + b"\x01")  # past every key of this run

    shared.read(walk)


def read_row(log: LmdbEventLog, run_id: str) -> RunInfo | None:
    """The run's runs-index row (checked); `StorageError` if it is damaged."""
    shared = log._open_env()
    run = run_id.encode(errors="surrogateescape")
    raw = shared.read(lambda txn: txn.get(run, db=shared.dbs.runs))
    return None if raw is None else load_run(run_id, raw)


def read_events(log: LmdbEventLog, run_id: str) -> list[Event]:
    """All of the run's events from seq 0; `CorruptEventError` at the first damaged or
    missing one."""
    shared = log._open_env()
    run = run_id.encode(errors="surrogateescape")
    prefix = run + SEP

    def collect(txn: lmdb.Transaction[bytes]) -> list[tuple[bytes, bytes]]:
        cursor = txn.cursor(db=shared.dbs.events)
        found: list[tuple[bytes, bytes]] = []
        if cursor.set_range(event_key(run, 0)):
            for key, value in cursor.iternext():
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    break
                found.append((key, value))
        return found

    events: list[Event] = []
    for expected, (key, record) in enumerate(shared.read(collect)):
        if event_seq(key) != expected:
            raise CorruptEventError(
                f"event {run_id}#{expected} is missing from the store", run_id=run_id, seq=expected
            )
        events.append(decode(run_id, expected, record))
    return events
