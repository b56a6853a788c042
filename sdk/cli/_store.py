"""``perdure store check`` and ``perdure store salvage``: a way out of a damaged store.

Both read the store in a child process (``python -m perdure.cli._store``),
run by run. perdure checks what it wrote (every event's CRC, every runs-index
row's CRC, that a run's events follow on from seq 0), but LMDB keeps no
checksum of its own pages: reading a damaged B-tree page can make LMDB abort
the process. When the child dies, the parent names the run it was reading,
counts it as unreadable and starts a new child for the remaining runs, so one
bad page costs the runs behind it, not the command.

``salvage`` writes the runs it can read completely into a new store, which
rebuilds every index (runs, order, idempotency keys, timers) from the events.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import click

from perdure.actors import fold
from perdure.cli._app import store_path
from perdure.cli._options import Args, common
from perdure.cli._output import Progress, fail, out, out_json
from perdure.eventlog import LmdbEventLog, PerdureError, from_dict, to_dict
from perdure.eventlog.lmdb_tools import event_run_ids, read_events, read_row, row_run_ids
from perdure.runtime import same_store

#: Events per append when a run is written into the new store.
_CHUNK = 1000


@click.group(
    epilog="""\b
Examples:
  perdure store check --store ./.perdure
  perdure store salvage --all --to ./rescued --store ./.perdure
"""
)
def store() -> None:
    """Check a store for damage, or salvage its runs."""


@store.command()
@common
def check(args: Args) -> int:
    """Read every run; report damage (exit 1 if any)."""
    path = _existing(store_path(args.store))
    progress = Progress("checking runs")
    try:
        results, notes = _survey("check", path, None, progress)
    finally:
        progress.done()
    damaged = [r for r in results if r.get("problem")]
    if args.json:
        out_json(
            {
                "store": path,
                "runs": len(results),
                "readable": len(results) - len(damaged),
                "damaged": [{"run_id": r["run"], "problem": r["problem"]} for r in damaged],
                "notes": notes,
            }
        )
    else:
        out(
            f"{path}: {len(results)} runs checked, {len(results) - len(damaged)} readable, "
            f"{len(damaged)} damaged"
        )
        for r in damaged:
            out(f"  damaged  {_safe(r['run'])}: {_safe(r['problem'])}")
        for note in notes:
            out(f"  note: {_safe(note)}")
        if damaged or notes:
            out(
                "copy the readable runs to a new store with `perdure store salvage --all "
                "--to NEWSTORE` (see the threat model page for what is and is not detected)"
            )
    return 1 if damaged or notes else 0


@store.command()
@click.argument("run_ids", metavar="RUN_ID", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every run that can be read.")
@click.option("--to", required=True, metavar="NEWSTORE", help="A new or empty directory.")
@common
def salvage(args: Args) -> int:
    """Copy the runs that can be read completely into a new store."""
    path = _existing(store_path(args.store))
    if bool(args.run_ids) == bool(args.all_):
        fail("name the runs to salvage (RUN_ID...) or pass --all", code=2)
    dest = os.path.abspath(args.to)
    if same_store(dest, path):
        fail("--to must be a new store, not the damaged one", code=2)
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        fail(f"--to {dest} must be a new or empty directory (salvage never writes into a store)")
    progress = Progress("reading runs")
    try:
        results, notes = _survey(
            "export", path, list(args.run_ids) if args.run_ids else None, progress
        )
    finally:
        progress.done()
    saved, events, lost = asyncio.run(_write(dest, results))
    if args.json:
        out_json(
            {
                "store": path,
                "to": dest,
                "salvaged": saved,
                "events": events,
                "lost": lost,
                "notes": notes,
            }
        )
    else:
        out(f"salvaged {len(saved)} runs ({events} events) from {path} to {dest}")
        for item in lost:
            out(f"  not salvaged  {_safe(item['run_id'])}: {_safe(item['problem'])}")
        for note in notes:
            out(f"  note: {_safe(note)}")
    return 1 if lost or notes else 0


async def _write(
    dest: str, results: list[dict[str, Any]]
) -> tuple[list[str], int, list[dict[str, str]]]:
    saved: list[str] = []
    lost: list[dict[str, str]] = []
    total = 0
    log = LmdbEventLog(dest)
    try:
        for r in results:
            if r.get("problem"):
                lost.append({"run_id": r["run"], "problem": r["problem"]})
                continue
            run_id: str = r["run"]
            try:
                found = [from_dict(data) for data in r["events"]]
                status = r.get("status") or fold(run_id, found).status
                for start in range(0, len(found), _CHUNK):
                    chunk = found[start : start + _CHUNK]
                    last = start + _CHUNK >= len(found)
                    await log.append(run_id, start, chunk, status=status if last else None)
            except (PerdureError, ValueError, TypeError) as exc:
                lost.append({"run_id": run_id, "problem": f"cannot be written: {exc}"})
                continue
            saved.append(run_id)
            total += len(found)
    finally:
        await log.close()
    return saved, total, lost


def _existing(path: str) -> str:
    try:
        os.stat(os.path.join(path, "data.mdb"))
    except PermissionError:
        fail(f"permission denied: cannot read the store at {path!r}")
    except OSError:
        fail(f"no perdure store at {path!r}; pass --store PATH or set PERDURE_PATH")
    return os.path.abspath(path)


def _safe(text: Any) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


# -- the child process and its supervision ---------------------------------------------------


def _survey(
    mode: str, path: str, runs: list[str] | None, progress: Progress | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the child over `runs` (None: every run), restarting it past a run that kills it.

    Returns a result per run and notes on what could not be looked at; `progress` is
    told ``(runs read, runs known)`` after each run.
    """
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    pending = runs
    while True:
        with (
            tempfile.TemporaryFile("w+") as errors,
            subprocess.Popen(
                [sys.executable, "-m", "perdure.cli._store", mode, path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            ) as child,
        ):
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps({"runs": pending}))
            child.stdin.close()
            current: str | None = None
            for line in child.stdout:
                message = json.loads(line)
                if "fatal" in message:
                    child.wait()
                    fail(f"cannot read the store at {path!r}: {message['fatal']}")
                elif "all" in message:
                    pending = message["all"]
                elif "more" in message:
                    assert pending is not None
                    pending.append(message["more"])
                elif "note" in message:
                    notes.append(f"the list of runs may be incomplete: {message['note']}")
                elif "reading" in message:
                    current = message["reading"]
                else:
                    results.append(message)
                    current = None
                    if progress is not None:
                        progress(len(results), max(len(results), len(pending or ())))
            code = child.wait()
            if code == 0:
                return results, notes
            errors.seek(0)
            how = _death(code, errors.read())
        if pending is None:
            fail(
                f"reading the store at {path!r} failed before any run could be read ({how}); "
                "LMDB's own structure is damaged: restore a backup"
            )
        if current is None:  # while walking the events for run ids
            notes.append(
                f"the list of runs may be incomplete: walking the events database stopped "
                f"the reader ({how})"
            )
        else:
            results.append(
                {
                    "run": current,
                    "problem": f"reading it stopped the reader ({how}): LMDB's pages are damaged",
                }
            )
        done = {r["run"] for r in results}
        pending = [run for run in pending if run not in done]
        if not pending:
            return results, notes


def _death(code: int, stderr: str) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    last = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
    return last[0][:200]


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _child(mode: str, path: str, runs: Sequence[str] | None) -> None:
    """Read `runs` (None: every run) of the store and report each on stdout, one JSON line."""
    try:
        log = LmdbEventLog(path, read_only=True)
        rows = row_run_ids(log) if runs is None else []
    except PerdureError as exc:
        _emit({"fatal": f"{type(exc).__name__}: {exc}"})
        return
    try:
        if runs is None:
            known = set(rows)
            _emit({"all": rows})

            def found(run_id: str) -> None:
                if run_id not in known:
                    known.add(run_id)
                    _emit({"more": run_id})

            try:
                event_run_ids(log, found)
            except PerdureError as exc:
                _emit({"note": f"walking the events database failed ({exc})"})
            runs = sorted(known)
        for run_id in runs:
            _emit({"reading": run_id})
            _emit(_read(log, mode, run_id))
    finally:
        asyncio.run(log.close())


def _read(log: LmdbEventLog, mode: str, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {"run": run_id}
    problems: list[str] = []
    row = None
    try:
        row = read_row(log, run_id)
    except PerdureError as exc:
        problems.append(str(exc))
    try:
        found = read_events(log, run_id)
    except PerdureError as exc:
        result["problem"] = "; ".join([*problems, str(exc)])
        return result
    if not found:
        problems.append("no such run in the store" if row is None else "its events are missing")
    elif row is None and not problems:
        problems.append("it has events but no runs-index row")
    elif row is not None and row.next_seq != len(found):
        problems.append(f"the runs index puts it at seq {row.next_seq}, its events at {len(found)}")
    result["status"] = row.status if row is not None else None
    result["events_count"] = len(found)
    if mode == "export":
        if found:  # a damaged row costs only the row: the new store rebuilds it from the events
            problems = [p for p in problems if p.startswith("no such run")]
        result["events"] = [to_dict(event) for event in found]
    if problems:
        result["problem"] = "; ".join(problems)
    return result


if __name__ == "__main__":
    _mode, _path = sys.argv[1], sys.argv[2]
    _child(_mode, _path, json.loads(sys.stdin.read())["runs"])
