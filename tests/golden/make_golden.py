"""Write golden logs: representative runs recorded by this version of perdure, as JSON lines.

    python tests/golden/make_golden.py            # writes logs that do not exist yet
    python tests/golden/make_golden.py --force    # rewrites them (only on purpose!)

Each ``<name>.jsonl`` holds one run's events (`perdure.eventlog.to_dict`, one
per line) and ``manifest.json`` says what replaying it must show. Committed
logs are never regenerated casually: they stand for runs an older perdure
left in users' stores, which newer versions must still read and replay. Add
new scenarios under new names instead. Runs use an in-memory log and a
`MockClock`, so timestamps and ids are reproducible; tracebacks have local
paths replaced by ``<repo>``/``<python>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import golden_app  # noqa: E402 - after the path tweak that makes it importable as a script

import perdure  # noqa: E402
from perdure import Command, MemoryEventLog, Replayer, Runtime  # noqa: E402
from perdure.eventlog import Event, to_dict  # noqa: E402
from perdure.testing import MockClock  # noqa: E402

REPO = HERE.parent.parent
CLOCK = MockClock()

Scenario = Callable[[Runtime], Awaitable[str]]


async def function_retries(rt: Runtime) -> str:
    await rt.run(
        golden_app.golden_flaky_fetch,
        {"url": "https://example.com/paper.pdf"},
        run_id="golden-function-retries",
        idempotency_key="golden-fetch-paper",
    )
    return "golden-function-retries"


async def function_failed(rt: Runtime) -> str:
    handle = await rt.start(
        golden_app.golden_always_fails, {"n": 7}, run_id="golden-function-failed"
    )
    await rt.wait(handle.run_id)
    return handle.run_id


async def workflow_completed(rt: Runtime) -> str:
    golden_app.failures_left["spellcheck"] = 1
    run_id = "golden-review-approved"
    await rt.start(golden_app.golden_review, "otters", run_id=run_id)
    await rt.wait(run_id)
    await rt.send(run_id, Command(resume="approve"))
    await rt.wait(run_id)
    return run_id


async def workflow_waiting(rt: Runtime) -> str:
    run_id = "golden-review-waiting"
    await rt.start(golden_app.golden_review, "badgers", run_id=run_id)
    await rt.wait(run_id)
    return run_id


async def workflow_cancelled(rt: Runtime) -> str:
    """Cancelled during its durable sleep: the sleep's timer is cancelled with the run."""
    run_id = "golden-review-cancelled"
    CLOCK.autojump = False  # hold virtual time so the run stays asleep
    try:
        await rt.start(golden_app.golden_review, "moles", run_id=run_id)
        while not (await rt.state(run_id)).timers:  # noqa: ASYNC110 - polls another task's state
            await asyncio.sleep(0.01)
        await rt.cancel(run_id, "no longer needed")
    finally:
        CLOCK.autojump = True
    return run_id


async def workflow_failed(rt: Runtime) -> str:
    golden_app.failures_left["charge"] = 2
    run_id = "golden-checkout-declined"
    await rt.start(golden_app.golden_checkout, {"cents": 1999}, run_id=run_id)
    await rt.wait(run_id)
    return run_id


async def workflow_continued(rt: Runtime) -> str:
    golden_app.failures_left["charge"] = 2
    run_id = "golden-checkout-continued"
    await rt.start(golden_app.golden_checkout, {"cents": 500}, run_id=run_id)
    await rt.wait(run_id)
    await rt.continue_run(run_id)  # the card works now: the failed task gets fresh attempts
    await rt.wait(run_id)
    return run_id


async def workflow_nested(rt: Runtime) -> str:
    run_id = "golden-nested-interrupt"
    await rt.start(golden_app.golden_nested, "Ship it?", run_id=run_id)
    await rt.wait(run_id)
    await rt.send(run_id, Command(resume="yes"))
    await rt.wait(run_id)
    return run_id


async def workflow_invocations(rt: Runtime) -> str:
    run_id = "golden-counter"
    for step in (2, 3):
        await rt.start(golden_app.golden_counter, step, run_id=run_id)
        await rt.wait(run_id)
    return run_id


async def workflow_race(rt: Runtime) -> str:
    """A task races a durable sleep and wins; the sleep fires while a person is asked."""
    run_id = "golden-race"
    await rt.start(golden_app.golden_race, "otters", run_id=run_id)
    await rt.wait(run_id)
    while not any(  # noqa: ASYNC110 - waits for the clock's autojump to fire the sleep
        type(e).__name__ == "TimerFired" for e in await rt.log.read(run_id)
    ):
        await asyncio.sleep(0.01)
    await rt.wait(run_id)
    await rt.send(run_id, Command(resume="Ana"))
    await rt.wait(run_id)
    await rt.send(run_id, Command(resume=42))
    await rt.wait(run_id)
    return run_id


async def workflow_messages(rt: Runtime) -> str:
    """A message sent before the body asks, one it waits for, and a receive that times out."""
    run_id = "golden-inbox"
    await rt.start(golden_app.golden_inbox, 2, run_id=run_id)
    await rt.send(run_id, {"text": "hello"}, idempotency_key="m1")
    while not (await rt.state(run_id)).receiving:  # noqa: ASYNC110 - polls another task's state
        await asyncio.sleep(0.01)
    await rt.send(run_id, "now", topic="urgent")
    await rt.wait(run_id)
    return run_id


async def workflow_timeouts(rt: Runtime) -> str:
    """An interrupt nobody answers in time; a durable sleep beats a receive (cancelled)."""
    run_id = "golden-waits"
    await rt.start(golden_app.golden_waits, "refund", run_id=run_id)
    while (await rt.state(run_id)).terminal is None:  # noqa: ASYNC110 - the clock autojumps
        await asyncio.sleep(0.01)
    return run_id


async def workflow_deadline(rt: Runtime) -> str:
    """A run still waiting at its entrypoint's deadline is cancelled by it."""
    run_id = "golden-deadline"
    await rt.start(golden_app.golden_deadline, "a reply", run_id=run_id)
    while (await rt.state(run_id)).terminal is None:  # noqa: ASYNC110 - the clock autojumps
        await asyncio.sleep(0.01)
    return run_id


async def workflow_child(rt: Runtime) -> str:
    """A parent runs two child workflows (ids derived from its own): recorded steps."""
    run_id = "golden-parent"
    await rt.start(golden_app.golden_parent, 3, run_id=run_id)
    await rt.wait(run_id)
    return run_id


async def workflow_interrupt_race(rt: Runtime) -> str:
    """ainterrupt() in races: the answer beats a receive (receive_cancelled), then a durable
    sleep beats a second question (interrupt_cancelled, its timeout's timer cancelled); a
    receive that times out follows."""
    run_id = "golden-approval-race"
    await rt.start(golden_app.golden_approval_race, "refund", run_id=run_id)
    outcome = await rt.wait(run_id)  # paused on the first question, its body still running
    assert outcome.status == "waiting", outcome
    await rt.send(run_id, Command(resume="yes"))
    while (await rt.state(run_id)).terminal is None:  # noqa: ASYNC110 - the clock autojumps
        await asyncio.sleep(0.01)
    return run_id


SCENARIOS: dict[str, Scenario] = {
    "function_retries": function_retries,
    "function_failed": function_failed,
    "workflow_completed": workflow_completed,
    "workflow_waiting": workflow_waiting,
    "workflow_cancelled": workflow_cancelled,
    "workflow_failed": workflow_failed,
    "workflow_continued": workflow_continued,
    "workflow_nested": workflow_nested,
    "workflow_invocations": workflow_invocations,
    "workflow_race": workflow_race,
    "workflow_messages": workflow_messages,
    "workflow_timeouts": workflow_timeouts,
    "workflow_deadline": workflow_deadline,
    "workflow_child": workflow_child,
    "workflow_interrupt_race": workflow_interrupt_race,
}


def scrub(data: dict[str, Any]) -> dict[str, Any]:
    text = data.get("traceback")
    if isinstance(text, str):
        for path, name in (
            (str(REPO), "<repo>"),
            (sys.prefix, "<python>"),
            (sys.base_prefix, "<python>"),
        ):
            text = text.replace(path, name)
        data["traceback"] = text
    return data


def dump(events: list[Event]) -> str:
    return "".join(
        json.dumps(scrub(to_dict(e)), sort_keys=True, ensure_ascii=False) + "\n" for e in events
    )


async def record(names: list[str]) -> dict[str, tuple[list[Event], dict[str, Any]]]:
    log = MemoryEventLog()
    replayer = Replayer.from_registry(golden_app.GOLDEN)
    out: dict[str, tuple[list[Event], dict[str, Any]]] = {}
    async with Runtime(log=log, clock=CLOCK, registry=golden_app.GOLDEN, idle_timeout=3600) as rt:
        for name in names:
            run_id = await SCENARIOS[name](rt)
            events = await log.read(run_id)
            result = await replayer.areplay(events, raise_on_failure=True)
            out[name] = (
                events,
                {
                    "run_id": run_id,
                    "target": result.target,
                    "kind": result.kind,
                    "recorded_end": result.recorded_end,
                    "matched": result.matched,
                    "replayed": result.replayed,
                    "invocation": result.invocation,
                    "events": len(events),
                },
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rewrite logs that already exist")
    args = parser.parse_args(argv)
    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"logs": {}}
    wanted = [n for n in SCENARIOS if args.force or not (HERE / f"{n}.jsonl").exists()]
    if not wanted:
        print("every golden log exists; nothing to do (--force rewrites them)")
        return 0
    for name, (events, expected) in asyncio.run(record(wanted)).items():
        (HERE / f"{name}.jsonl").write_text(dump(events), encoding="utf-8")
        manifest["logs"][f"{name}.jsonl"] = {
            "written_by": f"perdure {perdure.__version__}",
            **expected,
        }
        print(f"wrote {name}.jsonl ({len(events)} events, {expected['recorded_end']})")
    manifest["logs"] = dict(sorted(manifest["logs"].items()))
    manifest_path.write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
