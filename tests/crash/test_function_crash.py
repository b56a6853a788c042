"""SIGKILL test for durable functions on a real LMDB store: retries and idempotency survive kills.

A child process (`_function_child.py`) runs functions with idempotency keys
that fail some attempts (retries with 20-80 ms backoffs), work for a while
inside an attempt, or block inside a chosen attempt until killed. This process
SIGKILLs it at seeded random moments (see `kill_moment`: mostly after a random
number of attempt begins/completions of the newest jobs plus up to 50 ms,
sometimes right in recovery), each time starting a new child that adds new jobs
and re-attaches to every earlier one by key. A last child, never killed,
finishes every run. Then, reading the store:

- every key has exactly one run, and it completed; no timer is left pending;
- attempt numbers continue across processes: in log order, every
  ``TaskAttemptStarted``/``TaskAttemptFailed`` has attempt number == the count
  of failures recorded before it (never reused, never skipped, never restarted
  from 0); an attempt that died with its process is recorded as failed with
  error_type ``AttemptLost``, and it began (journal) in a process we killed;
  every attempt whose body began (journal) has its start in the log, however
  soon after the start the kill came;
- the job that is killed during attempt 2 (deterministically, in the first
  child) shows failures 0, 1 (ConnectionError), 2 (AttemptLost) and its next
  attempt is 3, run by another process;
- idempotency, precisely: for each key, exactly one ``TaskCompleted`` is in the
  log, its result's nonce was journaled by exactly one body completion (the
  one of the committed attempt), and every caller in every process that got a
  result for the key got that same result. A body may also have completed in a
  process killed before the completion was committed ("orphan" completions:
  at-least-once per attempt, unavoidable without the external system's help);
  each orphan must come from a killed process, must never have been returned
  to anyone, and its attempt number must not exceed the committed attempt.
  Orphans are counted and printed, not forbidden.

Also printed: lost attempts, and retry backoffs that a kill interrupted (the
mid-retry coverage).

The seed is printed (pytest shows it on failure); rerun one with
``PERDURE_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest

from perdure import LmdbEventLog, RunInfo
from perdure.eventlog import (
    Event,
    RunCompleted,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TimerFired,
    TimerSet,
)
from tests.support.kill_loop import (
    KILL,
    SPARE,
    Child,
    Journal,
    KillLoop,
    campaign_seed,
    wait_until,
)

CHILD = Path(__file__).with_name("_function_child.py")
START_TIMEOUT = 60.0


@attrs.define
class Campaign:
    workdir: Path
    seed: int
    jobs: list[dict[str, Any]] = attrs.field(factory=list)
    killed_pids: set[int] = attrs.field(factory=set)
    kill_times: list[float] = attrs.field(factory=list)
    finish_pid: int = 0
    #: key -> every result a caller received, in any process
    results: dict[str, list[Any]] = attrs.field(factory=lambda: defaultdict(list))
    kills: int = 0
    reader: Journal = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.reader = Journal(self.journal)

    @property
    def store(self) -> Path:
        return self.workdir / "store"

    @property
    def journal(self) -> Path:
        return self.workdir / "journal.jsonl"

    def journal_entries(self) -> list[dict[str, Any]]:
        """The journal's complete lines so far (a line cut by a kill is never complete)."""
        return self.reader.entries()


def new_jobs(generation: int, rng: random.Random) -> list[dict[str, Any]]:
    g = f"g{generation}"
    jobs = [
        # mid-retry: fails 1-3 times with backoff in between
        {
            "key": f"{g}-flaky",
            "fail": rng.randint(1, 3),
            "hang_at": -1,
            "work_ms": rng.randint(5, 30),
        },
        # fails attempts 0 and 1, then blocks in attempt 2 until killed
        {"key": f"{g}-lost2", "fail": 2, "hang_at": 2, "work_ms": 5},
        # mid-attempt: a long attempt
        {"key": f"{g}-slow", "fail": 0, "hang_at": -1, "work_ms": rng.randint(60, 200)},
        # blocks in its first attempt until killed
        {"key": f"{g}-hang0", "fail": rng.randint(0, 1), "hang_at": 0, "work_ms": 5},
    ]
    return [{**job, "gen": generation} for job in jobs]


def kill_moment(
    child: Child, campaign: Campaign, rng: random.Random, generation: int, early_ok: bool
) -> bool:
    """Wait for the seeded moment to kill this child; True if it was an "early" kill.

    Generation 0 dies during attempt 2 of ``g0-lost2`` (once that attempt's start
    is durable). Otherwise, with probability 0.1 (never twice in a row) the
    child dies right after READY, in the middle of recovering the earlier jobs;
    else it first lets every earlier job settle, then dies after a random number
    (0-10) of journal lines of this generation's ("hot") jobs plus 0-50 ms. So a
    job meets only a few kills mid-attempt: the runtime fails a step for good
    after too many lost attempts (a crash-loop guard,
    `RetryPolicy.max_lost_attempts`), which is not what this test is about.
    """
    pid = child.proc.pid
    if generation == 0:

        def in_attempt_2() -> bool:
            return any(
                e["ev"] == "begin" and e["key"] == "g0-lost2" and e["attempt"] == 2
                for e in campaign.journal_entries()
            )

        wait_until(in_attempt_2, 10.0, child, interval=0.002)
        time.sleep(0.1)
        return False
    if early_ok and rng.random() < 0.1:
        time.sleep(rng.uniform(0, 0.01))
        return True
    earlier = {job["key"] for job in campaign.jobs if job["gen"] < generation}

    def earlier_settled() -> bool:
        settled = {line.split(" ", 2)[1] for line in child.lines if line.startswith("RESULT ")}
        return earlier <= settled

    wait_until(earlier_settled, 20.0, child, interval=0.002)
    quota = rng.randint(0, 10)
    hot = f"g{generation}-"

    def quota_reached() -> bool:
        entries = campaign.journal_entries()
        return sum(1 for e in entries if e["pid"] == pid and e["key"].startswith(hot)) >= quota

    wait_until(
        quota_reached, 2.0, child, interval=0.002
    )  # hot jobs may all be blocked: kill anyway
    time.sleep(rng.uniform(0, 0.05))
    return False


def run_campaign(workdir: Path, kills: int, seed: int) -> Campaign:
    loop = KillLoop(seed, name="function crash campaign")
    campaign = Campaign(workdir=workdir, seed=seed)
    early = False

    def spawn(generation: int) -> Child:
        if generation < kills:
            campaign.jobs.extend(new_jobs(generation, loop.rng))
        jobs_file = workdir / f"jobs-{generation}.json"
        jobs_file.write_text(json.dumps(campaign.jobs), encoding="utf-8")
        argv = [
            sys.executable,
            os.fspath(CHILD),
            os.fspath(campaign.store),
            os.fspath(campaign.journal),
            os.fspath(jobs_file),
            "work" if generation < kills else "finish",
            str(generation),
        ]
        return loop.start(argv, workdir / f"child-{generation}.log", read_stdout=True)

    def moment(child: Child) -> bool:
        nonlocal early
        generation = loop.starts - 1
        if generation >= kills:
            return SPARE
        wait_until(lambda: "READY" in child.lines, START_TIMEOUT, child, interval=0.002)
        assert "READY" in child.lines, loop.report("child not ready (or exited before READY)")
        early = kill_moment(child, campaign, loop.rng, generation, early_ok=not early)
        return KILL

    def finished(child: Child, code: int) -> bool:
        if loop.starts - 1 < kills:
            return False  # a working child that ended before its kill: the next one goes on
        assert code == 0, loop.report(f"the finishing child exited with {code}", child)
        assert "DONE" in child.lines, loop.report("the finishing child did not say DONE", child)
        return True

    final = loop.run(spawn, moment, finished, budget=float("inf"))
    for child in loop.children:
        collect_results(child, campaign)
    campaign.killed_pids, campaign.kill_times, campaign.kills = (
        loop.killed_pids,
        loop.kill_times,
        loop.kills,
    )
    campaign.finish_pid = final.pid
    return campaign


def collect_results(child: Child, campaign: Campaign) -> None:
    for line in child.lines:
        if line.startswith("RESULT "):
            _, key, payload = line.split(" ", 2)
            campaign.results[key].append(json.loads(payload))


async def read_store(store: Path) -> tuple[list[RunInfo], dict[str, list[Event]], bool]:
    log = LmdbEventLog(store, read_only=True)
    try:
        runs = await log.list_runs()
        events = {info.run_id: await log.read(info.run_id) for info in runs}
        timers_left = await log.next_timer() is not None
    finally:
        await log.close()
    return runs, events, timers_left


def check_attempt_numbers(events: list[Event], where: str) -> list[TaskAttemptFailed]:
    """Attempt numbers follow the failures in the log; returns the failures."""
    failures: list[TaskAttemptFailed] = []
    for event in events:
        if isinstance(event, TaskAttemptStarted):
            assert event.attempt == len(failures), (
                f"{where}: attempt {event.attempt} started after {len(failures)} failures"
            )
        elif isinstance(event, TaskAttemptFailed):
            assert event.attempt == len(failures), (
                f"{where}: attempt {event.attempt} failed after {len(failures)} failures"
            )
            failures.append(event)
    return failures


def check_campaign(campaign: Campaign) -> dict[str, int]:
    seed = campaign.seed
    runs, events_by_run, timers_left = asyncio.run(read_store(campaign.store))
    keys = [job["key"] for job in campaign.jobs]
    by_key = {info.idempotency_key: info for info in runs}
    assert len(runs) == len(keys) and set(by_key) == set(keys), f"seed {seed}: runs != keys"
    assert not timers_left, f"seed {seed}: a timer is still pending"
    journal = campaign.journal_entries()
    begins = {(e["key"], e["attempt"], e["pid"]) for e in journal if e["ev"] == "begin"}
    done_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in journal:
        if entry["ev"] == "done":
            done_by_key[entry["key"]].append(entry)

    stats: Counter[str] = Counter()
    for key in keys:
        info = by_key[key]
        where = f"seed {seed}, key {key}, run {info.run_id}"
        assert info.status == "completed", f"{where}: status {info.status}"
        events = events_by_run[info.run_id]
        failures = check_attempt_numbers(events, where)
        (completed,) = [e for e in events if isinstance(e, TaskCompleted)]
        (run_completed,) = [e for e in events if isinstance(e, RunCompleted)]
        result = completed.result
        assert run_completed.result == result, where
        assert result["attempt"] == len(failures), f"{where}: completed on the wrong attempt"

        # Every attempt whose body began is in the log (its start is durable before the
        # body runs), so no attempt number is ever run twice, whenever the kill came.
        recorded = {e.attempt for e in events if isinstance(e, TaskAttemptStarted)}
        began = {a for k, a, _ in begins if k == key}
        assert began <= recorded, f"{where}: attempts {sorted(began - recorded)} ran unrecorded"
        assert len(recorded) == len(failures) + 1, f"{where}: an attempt number was reused"

        # A lost attempt's body, if it began at all, began only in killed processes.
        # (It may not have begun: the attempt's start is recorded before its body runs.)
        for failure in failures:
            if failure.error_type == "AttemptLost":
                stats["lost attempts"] += 1
                pids = {pid for k, a, pid in begins if k == key and a == failure.attempt}
                assert pids <= campaign.killed_pids, f"{where}: lost attempt {failure.attempt}"
            else:
                assert failure.error_type == "ConnectionError", f"{where}: {failure}"

        # Every caller that got a result got the committed one.
        seen = campaign.results.get(key, [])
        assert seen, f"{where}: the finishing child reported no result"
        assert all(value == result for value in seen), f"{where}: callers saw {seen} != {result}"

        # The committed result came from exactly one journaled body completion.
        done = done_by_key[key]
        committed = [d for d in done if d["nonce"] == result["nonce"]]
        assert len(committed) == 1, f"{where}: committed nonce journaled {len(committed)} times"
        assert (committed[0]["attempt"], committed[0]["run_id"]) == (result["attempt"], info.run_id)
        for orphan in done:
            if orphan is committed[0]:
                continue
            stats["orphan body completions"] += 1
            assert orphan["pid"] in campaign.killed_pids, f"{where}: orphan {orphan} not killed"
            assert orphan["attempt"] <= result["attempt"], f"{where}: orphan {orphan}"
        stats["body completions"] += len(done)

        # Retry backoffs that a kill interrupted (a measure of mid-retry coverage).
        set_at = {e.timer_id: e.ts for e in events if isinstance(e, TimerSet)}
        for fired in (e for e in events if isinstance(e, TimerFired)):
            start = set_at[fired.timer_id]
            if any(start < t < fired.ts for t in campaign.kill_times):
                stats["backoffs spanning a kill"] += 1

    # "Dies during attempt 2, resumes at attempt 3" (made certain in the first child).
    events = events_by_run[by_key["g0-lost2"].run_id]
    failures = [e for e in events if isinstance(e, TaskAttemptFailed)]
    assert [(f.attempt, f.error_type) for f in failures[:3]] == [
        (0, "ConnectionError"),
        (1, "ConnectionError"),
        (2, "AttemptLost"),
    ], f"seed {seed}: g0-lost2 failures {failures}"
    lost_at = events.index(failures[2])
    next_start = next(e for e in events[lost_at:] if isinstance(e, TaskAttemptStarted))
    assert next_start.attempt == 3, f"seed {seed}: resumed at attempt {next_start.attempt}"
    pids_of_3 = {pid for k, a, pid in begins if k == "g0-lost2" and a == 3}
    pids_of_2 = {pid for k, a, pid in begins if k == "g0-lost2" and a == 2}
    assert pids_of_3 and not (pids_of_3 & pids_of_2), "attempt 3 ran in the process that died"

    stats["kills"] = campaign.kills
    stats["keys"] = len(keys)
    return dict(stats)


def run_and_check(tmp_path: Path, kills: int) -> dict[str, int]:
    seed = campaign_seed()
    print(f"function crash campaign: seed={seed} kills={kills} (PERDURE_CRASH_SEED={seed})")
    start = time.monotonic()
    campaign = run_campaign(tmp_path, kills, seed)
    stats = check_campaign(campaign)
    print(f"  {stats}  in {time.monotonic() - start:.1f} s")
    assert stats["kills"] >= kills - 1, "the children finished before they could be killed"
    assert stats["lost attempts"] >= 1
    return stats


@pytest.mark.slow
def test_functions_survive_sigkill_with_attempts_and_keys_intact(tmp_path: Path) -> None:
    run_and_check(tmp_path, kills=20)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 80 kills: about 100 s on a quiet machine
def test_functions_survive_many_sigkills(tmp_path: Path) -> None:
    run_and_check(tmp_path, kills=80)
