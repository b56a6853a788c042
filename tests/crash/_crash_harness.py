"""Drive `crash_workload.py` in child processes, SIGKILL them at seeded random moments, check.

`drive()` restarts the child until the workload is done, answering pending
interrupts between processes from the store (as a person would, elsewhere).
`summarize()` reduces a finished store to what must not depend on crashes
(statuses, results, recorded steps, with per-execution tokens removed);
`check_invariants()` asserts everything a crash must never break and returns
figures for the report.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import attrs
import lmdb

from perdure import LmdbEventLog, RunInfo
from perdure.eventlog import (
    Event,
    Interrupted,
    Resumed,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunStarted,
    TaskAttemptFailed,
    TaskCompleted,
    encode,
)
from tests.support.kill_loop import KILL, SPARE, Child, Journal, KillLoop, wait_until

WORKLOAD = Path(__file__).with_name("crash_workload.py")
CHILD_TIMEOUT = 60.0
READY_TIMEOUT = 30.0


@attrs.define
class Drive:
    """What happened while driving one store to completion."""

    store: Path
    out: Path
    seed: int | None
    kills: int = 0
    children: int = 0
    killed_pids: set[int] = attrs.field(factory=set)
    seconds: float = 0.0

    def fail_context(self) -> str:
        tail = ""
        log = self.out / "child.log"
        if log.exists():
            tail = log.read_text(errors="replace")[-4000:]
        return (
            f"crash matrix seed {self.seed} (re-run: PERDURE_CRASH_SEED={self.seed}); "
            f"store {self.store}; {self.kills} kills, {self.children} children\n{tail}"
        )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file, skipping a line torn by a kill."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def raw_event_seqs(store: Path) -> dict[str, list[int]]:
    """Sequence numbers of every stored event per run, straight from LMDB (bypassing perdure).

    perdure's reader stops at the index's next_seq, so an orphan event past it
    would go unseen; this walks the ``events`` database's keys (run, NUL,
    8-byte big-endian seq; see eventlog/_lmdb_keys.py) instead.
    """
    env = lmdb.open(str(store), readonly=True, max_dbs=16, subdir=True)
    try:
        db = env.open_db(b"events", create=False)
        seqs: dict[str, list[int]] = collections.defaultdict(list)
        with env.begin(db=db) as txn:
            for key in txn.cursor().iternext(values=False):
                assert key[-9] == 0, f"malformed event key {key!r}"
                seqs[key[:-9].decode()].append(int.from_bytes(key[-8:], "big"))
        return dict(seqs)
    finally:
        env.close()


async def read_store(store: Path) -> tuple[list[RunInfo], dict[str, list[Event]]]:
    """Every run and its events, through perdure's own (checksummed) reader."""
    log = LmdbEventLog(store, read_only=True)
    try:
        runs = await log.list_runs()
        return runs, {info.run_id: await log.read(info.run_id) for info in runs}
    finally:
        await log.close()


def pending_interrupts(events: list[Event]) -> dict[str, Any]:
    """Unanswered interrupts of the run's current invocation: id -> question."""
    pending: dict[str, Any] = {}
    for event in events:
        if isinstance(event, RunStarted):
            pending = {}
        elif isinstance(event, Interrupted):
            pending[event.interrupt_id] = event.value
        elif isinstance(event, Resumed):
            pending.pop(event.interrupt_id, None)
    return pending


def answer(question: Any) -> dict[str, Any]:
    """The deterministic answer a "person" gives, so the oracle and crash runs agree."""
    return {"ok": True, "step": question.get("step") if isinstance(question, dict) else None}


def write_answers(drive: Drive) -> None:
    _, streams = asyncio.run(read_store(drive.store))
    answers = {}
    for run_id, events in streams.items():
        pending = pending_interrupts(events)
        if pending:
            answers[run_id] = {iid: answer(q) for iid, q in pending.items()}
    path = drive.out / "answers.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(answers))
    tmp.replace(path)


def drive(
    store: Path,
    out: Path,
    *,
    seed: int | None,
    window: tuple[float, float] = (0.12, 0.02),
    max_children: int = 400,
    mutant: str = "",
) -> Drive:
    """Run the workload to completion; with a seed, kill each child at a random moment.

    The kill comes uniform(0, base + step * k) seconds after the child is ready
    (k = kills so far on this store), so early kills land in recovery and the
    window widens until the workload can finish. `mutant` breaks the child on
    purpose (see crash_workload.MUTANT), to prove the checks can fail.
    """
    env = {**os.environ, "PERDURE_CRASH_MUTANT": mutant}
    out.mkdir(parents=True, exist_ok=True)
    result = Drive(store=store, out=out, seed=seed)
    loop = KillLoop(0 if seed is None else seed, name="crash matrix", child_timeout=CHILD_TIMEOUT)
    result.killed_pids = loop.killed_pids  # the same set: fail_context shows it as it grows
    ready = Journal(out / "ready")
    status = out / "status"

    def spawn(n: int) -> Child:
        status.unlink(missing_ok=True)
        ready.new_lines()  # the ready lines of earlier children
        child = loop.start(
            [sys.executable, str(WORKLOAD), str(store), str(out)], out / "child.log", env=env
        )
        result.children, result.kills = loop.starts, loop.kills
        return child

    def moment(child: Child) -> bool:
        if not wait_until(lambda: bool(ready.new_lines()), READY_TIMEOUT, child, interval=0.002):
            if child.alive():
                child.kill()
                raise AssertionError(
                    f"child not ready in {READY_TIMEOUT} s\n{result.fail_context()}"
                )
            raise AssertionError(
                f"child exited ({child.proc.returncode}) before ready\n{result.fail_context()}"
            )
        if seed is None:
            return SPARE
        delay = loop.rng.uniform(0, window[0] + window[1] * loop.kills)
        child.run_for(delay)
        return KILL

    def finished(child: Child, code: int) -> bool:
        assert code == 0, f"child failed with exit code {code}\n{result.fail_context()}"
        state = status.read_text() if status.exists() else ""
        if state == "DONE":
            return True
        assert state == "IDLE", f"child ended without a status\n{result.fail_context()}"
        write_answers(result)
        return False

    try:
        loop.run(spawn, moment, finished, budget=float("inf"), max_children=max_children)
    except AssertionError as exc:
        if "no finish in" in str(exc):
            raise AssertionError(f"workload did not finish\n{result.fail_context()}") from None
        raise
    finally:
        result.kills, result.killed_pids = loop.kills, loop.killed_pids
        result.children = loop.starts
    result.seconds = loop.seconds
    return result


# -- what a crash must not change ------------------------------------------------------------


def strip(value: Any) -> Any:
    """`value` without per-execution tokens ("tok" keys)."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k != "tok"}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def logical_name(info: RunInfo) -> str:
    return f"key:{info.idempotency_key}" if info.idempotency_key else info.run_id


def summarize(runs: list[RunInfo], streams: dict[str, list[Event]]) -> dict[str, Any]:
    """Per logical run: status, and per invocation its input, steps, answers and outcome."""
    summary: dict[str, Any] = {}
    for info in runs:
        invocations: list[dict[str, Any]] = []
        for event in streams[info.run_id]:
            if isinstance(event, RunStarted):
                invocations.append({"input": event.input, "steps": {}, "answers": []})
            elif isinstance(event, TaskCompleted):
                invocations[-1]["steps"][event.position] = [event.name, strip(event.result)]
            elif isinstance(event, Resumed):
                invocations[-1]["answers"].append(event.value)
            elif isinstance(event, RunCompleted):
                invocations[-1]["result"] = strip(event.result)
                invocations[-1]["saved"] = strip(event.saved)
            elif isinstance(event, RunFailed):
                invocations[-1]["error"] = event.error_type
            elif isinstance(event, RunContinued):
                invocations[-1].pop("error")
        summary[logical_name(info)] = {
            "target": info.target,
            "status": info.status,
            "invocations": invocations,
        }
    return summary


@attrs.define
class Figures:
    acked_events: int = 0
    observed_results: int = 0
    seen_results: int = 0
    body_completions: int = 0
    reexecuted_after_kill: int = 0
    attempts_lost: int = 0
    continued_after_lost_attempts: int = 0
    #: kills that landed before the child committed anything (start-up and recovery)
    kills_before_first_commit: int = 0
    events: int = 0


def check_invariants(drive: Drive, runs: list[RunInfo], streams: dict[str, list[Event]]) -> Figures:
    """Assert the crash invariants on a finished store; return figures for the report."""
    ctx = drive.fail_context()
    figures = Figures()
    by_id = {info.run_id: info for info in runs}
    completed_results: dict[str, list[Any]] = collections.defaultdict(list)
    task_results: dict[str, list[Any]] = collections.defaultdict(list)
    interrupts: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for info in runs:
        events = streams[info.run_id]
        figures.events += len(events)
        # Sequence numbers: contiguous from 0, and the index agrees.
        assert [e.seq for e in events] == list(range(len(events))), f"gap in {info.run_id}\n{ctx}"
        assert info.next_seq == len(events), f"index next_seq of {info.run_id}\n{ctx}"
        assert info.status in ("completed", "failed"), f"{info.run_id} is {info.status}\n{ctx}"
        # At most one recorded result per (invocation, position).
        invocation = -1
        recorded: collections.Counter[tuple[int, str]] = collections.Counter()
        for event in events:
            if isinstance(event, RunStarted):
                invocation = event.invocation
            elif isinstance(event, TaskCompleted):
                recorded[(invocation, event.position)] += 1
                task_results[info.run_id].append(event.result)
            elif isinstance(event, RunCompleted):
                completed_results[info.run_id].append(event.result)
            elif isinstance(event, Interrupted):
                interrupts[info.run_id][event.interrupt_id] = event.value
            elif isinstance(event, TaskAttemptFailed) and event.error_type == "AttemptLost":
                figures.attempts_lost += 1
            elif isinstance(event, RunContinued):
                figures.continued_after_lost_attempts += 1
                assert streams[info.run_id][event.seq - 1].error_type == "AttemptLost", ctx  # type: ignore[attr-defined]
        twice = {k: n for k, n in recorded.items() if n > 1}
        assert not twice, f"task results recorded twice in {info.run_id}: {twice}\n{ctx}"

    raw = raw_event_seqs(drive.store)
    assert set(raw) == set(by_id), f"events of unknown runs: {set(raw) - set(by_id)}\n{ctx}"
    for run_id, seqs in raw.items():
        assert seqs == list(range(by_id[run_id].next_seq)), f"raw keys of {run_id}: {seqs}\n{ctx}"

    observed = read_jsonl(drive.out / "observed.jsonl")
    committing = {r["pid"] for r in observed if r["kind"] == "ack"}
    figures.kills_before_first_commit = len(drive.killed_pids - committing)
    for record in observed:
        run = record["run"]
        if record["kind"] == "ack":
            figures.acked_events += 1
            events = streams.get(run, [])
            assert record["seq"] < len(events), f"acknowledged event lost: {record}\n{ctx}"
            event = events[record["seq"]]
            assert zlib.crc32(encode(event)) == record["crc"], (
                f"acked event changed: {record}\n{ctx}"
            )
        elif record["kind"] == "result":
            figures.observed_results += 1
            _check_observed_result(record, by_id, completed_results, interrupts, streams, ctx)
        elif record["kind"] == "seen":
            figures.seen_results += 1
            assert record["value"] in task_results[run], f"uncommitted result seen: {record}\n{ctx}"
    _check_idempotency(drive, runs, streams, observed, figures)
    return figures


def _check_observed_result(
    record: dict[str, Any],
    by_id: dict[str, RunInfo],
    completed: dict[str, list[Any]],
    interrupts: dict[str, dict[str, Any]],
    streams: dict[str, list[Event]],
    ctx: str,
) -> None:
    run, status, result = record["run"], record["status"], record["result"]
    assert run in by_id, f"a caller saw run {run} that the store does not hold\n{ctx}"
    if status == "completed":
        assert result in completed[run], f"a caller got an unrecorded result: {record}\n{ctx}"
    elif status == "failed":
        errors = [e.error_type for e in streams[run] if isinstance(e, RunFailed)]
        assert result["error"] in errors, f"a caller got an unrecorded failure: {record}\n{ctx}"
    else:
        assert status == "waiting", f"unexpected observed status: {record}\n{ctx}"
        for item in result["__interrupt__"]:
            assert interrupts[run].get(item["id"]) == item["value"], (
                f"unrecorded interrupt {record}\n{ctx}"
            )


def _check_idempotency(
    drive: Drive,
    runs: list[RunInfo],
    streams: dict[str, list[Event]],
    observed: list[dict[str, Any]],
    figures: Figures,
) -> None:
    """Each key: one run, one recorded result, produced by a journaled body completion.

    At-most-once is about *committed* completions: a SIGKILL after the body
    finished and before its result committed makes the next process run the
    body again. So: every completion but the committed one happened in a
    process that was killed without that result ever being acknowledged,
    delivered or recorded; and without kills, exactly one completion per key.
    """
    ctx = drive.fail_context()
    journal = [r for r in read_jsonl(drive.out / "journal.jsonl") if r["kind"] == "complete"]
    figures.body_completions = len(journal)
    keyed = [info for info in runs if info.idempotency_key]
    assert len({info.idempotency_key for info in keyed}) == len(keyed), f"key on 2 runs\n{ctx}"
    for info in keyed:
        key = info.idempotency_key
        done = [
            e for e in streams[info.run_id] if isinstance(e, TaskCompleted) and e.position == "0"
        ]
        assert len(done) == 1, f"key {key}: {len(done)} recorded results\n{ctx}"
        committed = done[0].result["tok"]
        mine = [r for r in journal if r["key"] == key]
        winners = [r for r in mine if r["tok"] == committed]
        assert len(winners) == 1, f"key {key}: committed token not journaled once\n{ctx}"
        per_process = collections.Counter(r["pid"] for r in mine)
        assert max(per_process.values()) == 1, (
            f"key {key}: body completed twice in one process\n{ctx}"
        )
        for extra in mine:
            if extra["tok"] == committed:
                continue
            figures.reexecuted_after_kill += 1
            assert extra["pid"] in drive.killed_pids, f"key {key}: extra completion {extra}\n{ctx}"
            leaked = [
                r
                for r in observed
                if r["pid"] == extra["pid"]
                and r["run"] == info.run_id
                and (r["kind"] == "ack" and r["type"] == "task_completed")
            ]
            assert not leaked, f"key {key}: uncommitted completion was acknowledged\n{ctx}"
            assert extra["tok"] not in json.dumps(observed), (
                f"key {key}: lost token surfaced\n{ctx}"
            )
        if drive.seed is None:
            assert len(mine) == 1, f"key {key}: {len(mine)} completions without any crash\n{ctx}"
        for record in observed:
            if record["kind"] == "result" and record["run"] == info.run_id:
                if record["status"] != "completed":
                    continue  # failed by lost attempts, then continued
                assert record["result"]["tok"] == committed, (
                    f"key {key}: caller got {record}\n{ctx}"
                )
