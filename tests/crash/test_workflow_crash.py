"""SIGKILL test for workflows on a real LMDB store (the replay rules' durability promise).

A child process (`_workflow_child.py`) runs several workflows of sequential
tasks, a parallel fan-out, interrupts in the body and in parallel tasks, and
nested tasks. This process plays the person: it reads the questions from the
child's journal and writes answers the child sends with ``Command(resume=...)``.
It SIGKILLs the child at seeded random moments and starts it again until it
finishes. Then, against an uninterrupted oracle run of the same workload:

- every thread's final result is identical;
- every task position has exactly one ``TaskCompleted``, the same task (by its
  label) at the same position as in the oracle, with the same value;
- every recorded result was produced by a task body that ran (its nonce is in
  the journal), by its last run: a body never runs again once its result is
  recorded; bodies ran at least once per recorded result (re-runs of results
  lost with a kill are allowed: at-least-once) — they are counted and reported;
- workflow code never saw a result that is not the one in the log (each result
  carries a random nonce; a result seen before it was durable would have been
  recomputed with a different nonce after the kill).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from perdure import LmdbEventLog
from tests.support.kill_loop import KILL, POLL, SPARE, Child, Journal, KillLoop

CHILD = Path(__file__).with_name("_workflow_child.py")


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("perdure_crash_workflow_child", CHILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


@attrs.define
class Campaign:
    """What happened in one series of child processes on one store."""

    workdir: Path
    store: Path
    kills: int = 0
    starts: int = 0
    lines: list[list[str]] = attrs.field(factory=list)
    seconds: float = 0.0


def _answer(workdir: Path, iid: str, question: dict[str, Any]) -> None:
    target = workdir / "answers" / iid
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(child.answer_for(question)))
        os.replace(tmp, target)


def run_campaign(
    workdir: Path, threads: int, kills: int, seed: int, budget: float, bodies: int = 0
) -> Campaign:
    """Run the child until it finishes, SIGKILLing it `kills` times at seeded random moments.

    A kill comes once the child (after opening the store) has completed a
    random number of task bodies — 0 (a kill during recovery and replay) up to
    1.2 x `bodies` / `kills`, `bodies` being the oracle's count — plus up to
    3 ms: the kills spread over most of the work whatever the machine's speed,
    and the last start (never killed) finishes it.
    """
    loop = KillLoop(seed, name=f"workflow crash campaign in {workdir}")
    (workdir / "answers").mkdir(parents=True)
    campaign = Campaign(workdir=workdir, store=workdir / "store")
    journal = Journal(workdir / "journal")

    def read_journal() -> list[list[str]]:
        lines = [line.split(" ", 3) for line in journal.new_lines()]
        campaign.lines.extend(lines)
        return lines

    def spawn(n: int) -> Child:
        argv = [sys.executable, str(CHILD), str(campaign.store), str(workdir), str(threads)]
        return loop.start(argv, workdir / f"child-{n}.log")

    def moment(proc: Child) -> bool:
        armed = loop.kills < kills
        quota = loop.rng.randint(1, int(1.2 * bodies / max(kills, 1))) if armed else 0
        extra = loop.rng.uniform(0.0, 0.003)
        running = False
        kill_at: float | None = None
        while proc.alive():
            for line in read_journal():
                if line[0] == "ask":
                    _answer(workdir, line[2], json.loads(line[3]))
                elif line[0] == "started" and int(line[1]) == proc.pid:
                    running = True
                elif line[0] == "body" and running:
                    quota -= 1
            if armed and running and quota <= 0 and kill_at is None:
                kill_at = time.monotonic() + extra
            if kill_at is not None and time.monotonic() >= kill_at:
                return KILL
            time.sleep(POLL)
        return SPARE

    def finished(proc: Child, code: int) -> bool:
        assert code == 0, loop.report(f"child exited with {code}", proc)
        return True

    last = loop.run(spawn, moment, finished, budget=budget)
    read_journal()
    campaign.kills, campaign.starts = loop.kills, loop.starts
    assert campaign.lines[-1] == ["done", str(last.pid)], loop.report("no done line")
    campaign.seconds = loop.seconds
    return campaign


@attrs.frozen
class Recorded:
    """One thread's log, reduced to what the checks compare."""

    result: Any
    #: position -> (label, value, nonce), from TaskCompleted (+ its attempt's recorded input)
    tasks: dict[str, tuple[str, int, str]]
    completions_per_position: Counter[str]
    failed: int
    #: position -> attempts lost with a killed process
    lost: Counter[str]


def read_store(store: Path, threads: list[str]) -> dict[str, Recorded]:
    async def go() -> dict[str, Recorded]:
        log = LmdbEventLog(store, read_only=True)
        try:
            out = {}
            for thread in threads:
                events = await log.read(thread)
                labels: dict[str, str] = {}
                tasks: dict[str, tuple[str, int, str]] = {}
                per_position: Counter[str] = Counter()
                lost: Counter[str] = Counter()
                result: Any = None
                failed = 0
                for event in events:
                    kind = type(event).WIRE_NAME
                    if kind == "task_attempt_started" and event.input is not None:
                        labels[event.position] = event.input[0][1]  # args: thread, label, x
                    elif kind == "task_completed":
                        per_position[event.position] += 1
                        label = labels[event.position]
                        tasks[event.position] = (label, event.result["v"], event.result["nonce"])
                    elif kind == "run_completed":
                        result = event.result
                    elif kind == "task_attempt_failed" and event.error_type == "AttemptLost":
                        lost[event.position] += 1
                    elif kind in ("run_failed", "task_failed"):
                        failed += 1
                out[thread] = Recorded(result, tasks, per_position, failed, lost)
            return out
        finally:
            await log.close()

    return asyncio.run(go())


def check(crashed: Campaign, oracle: Campaign, threads: int) -> dict[str, int]:
    names = [spec["thread"] for spec in child.thread_specs(threads)]
    got, want = read_store(crashed.store, names), read_store(oracle.store, names)
    bodies: Counter[tuple[str, str]] = Counter()
    body_nonces: dict[tuple[str, str], set[str]] = defaultdict(set)
    last_body: dict[tuple[str, str], str] = {}
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for line in crashed.lines:
        if line[0] == "body":
            key = (line[1], line[2])
            bodies[key] += 1
            body_nonces[key].add(line[3])
            last_body[key] = line[3]
        elif line[0] == "seen":
            seen[(line[1], line[2])].add(line[3])

    recorded_results = 0
    for thread in names:
        g, w = got[thread], want[thread]
        assert g.failed == 0 and w.failed == 0
        assert g.result is not None and g.result == w.result, thread
        # exactly one TaskCompleted per position; same task, same value as the oracle's
        assert set(g.completions_per_position.values()) == {1}, g.completions_per_position
        assert {p: t[:2] for p, t in g.tasks.items()} == {p: t[:2] for p, t in w.tasks.items()}
        for label, _, nonce in g.tasks.values():
            key = (thread, label)
            recorded_results += 1
            # the recorded result came from a body that really ran (and journaled first)
            assert nonce in body_nonces[key], key
            # ... and it was the last run: no body ran again once its result was recorded
            assert last_body[key] == nonce, key
            # workflow code only ever saw the recorded result
            assert seen[key] <= {nonce}, (key, seen[key], nonce)
        assert {label for label, _, _ in g.tasks.values()} == {
            label for (t, label) in bodies if t == thread
        }
    assert sum(len(v) for v in seen.values()) > 0
    # interrupt ids are stable: the same questions, under the same ids, as in the oracle run
    asked = {(line[1], line[2], line[3]) for line in crashed.lines if line[0] == "ask"}
    assert asked == {(line[1], line[2], line[3]) for line in oracle.lines if line[0] == "ask"}
    assert len({iid for _, iid, _ in asked}) >= threads
    return {
        "recorded_results": recorded_results,
        "body_runs": sum(bodies.values()),
        "bodies_rerun": sum(bodies.values()) - recorded_results,
        "attempts_lost": sum(sum(got[t].lost.values()) for t in names),
        "max_lost_per_step": max(max(got[t].lost.values(), default=0) for t in names),
    }


def _campaign_pair(tmp_path: Path, threads: int, kills: int, seed: int, budget: float) -> None:
    oracle = run_campaign(tmp_path / "oracle", threads, kills=0, seed=seed, budget=budget)
    assert oracle.kills == 0 and oracle.starts == 1
    bodies = sum(1 for line in oracle.lines if line[0] == "body")
    crashed = run_campaign(tmp_path / "crashed", threads, kills, seed, budget, bodies=bodies)
    # The last armed starts may finish the remaining work before their kill lands (the
    # kill waits for a number of bodies, plus up to 3 ms): most kills must have happened.
    assert kills - 2 <= crashed.kills <= kills, crashed.kills
    figures = check(crashed, oracle, threads)
    # at-least-once: some bodies may run again after a kill; report how many
    print(
        f"\nworkflow crash test: {threads} threads, {crashed.kills} SIGKILLs, "
        f"{crashed.starts} starts, {crashed.seconds:.1f} s; {figures['recorded_results']} "
        f"recorded task results, {figures['body_runs']} body runs, "
        f"{figures['bodies_rerun']} re-run after kills; {figures['attempts_lost']} attempts lost "
        f"(at most {figures['max_lost_per_step']} for one step); oracle run: {oracle.seconds:.1f} s"
    )


@pytest.mark.slow
def test_workflows_survive_sigkill_ci_sized(tmp_path: Path) -> None:
    _campaign_pair(tmp_path, threads=4, kills=8, seed=4, budget=60)


@pytest.mark.slow
def test_workflows_survive_sigkill_many_times(tmp_path: Path) -> None:
    _campaign_pair(tmp_path, threads=6, kills=30, seed=20240, budget=100)


_DEFAULT_POLICY_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from perdure import Runtime, entrypoint, task

    @task  # the default policy: one attempt
    def crash_slow_default(x):
        print("OUT inside", flush=True)
        time.sleep(0.5)  # the attempt's start is committed after ~5 ms (attempt_linger)
        return x + 1

    @entrypoint()
    def crash_default_flow(x):
        return crash_slow_default(x).result()

    async def main():
        async with Runtime(sys.argv[1]) as rt:
            if await rt.get_run("t") is None:
                await rt.start(crash_default_flow, 1, run_id="t")
            print("OUT result", (await rt.wait("t")).unwrap(), flush=True)

    asyncio.run(main())
    """
)


def test_a_kill_during_a_default_policy_task_does_not_fail_the_run(tmp_path: Path) -> None:
    """A lost attempt is not the task's fault: even with one attempt allowed, it runs again."""
    store = str(tmp_path / "store")
    args = [sys.executable, "-c", _DEFAULT_POLICY_CHILD, store]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) not in (b"OUT inside\n", b""):
            pass
        assert line == b"OUT inside\n"
        time.sleep(0.1)  # the attempt's start is durable now; its body is still running
        proc.kill()
    again = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    lines = [line for line in again.stdout.splitlines() if line.startswith("OUT ")]
    assert lines == ["OUT inside", "OUT result 2"], again.stdout[-2000:] + again.stderr[-2000:]

    async def lost_attempts() -> list[str]:
        log = LmdbEventLog(store, read_only=True)
        try:
            events = await log.read("t")
        finally:
            await log.close()
        return [e.error_type for e in events if type(e).WIRE_NAME == "task_attempt_failed"]

    assert asyncio.run(lost_attempts()) == ["AttemptLost"]
