"""An interrupt is matched by position and by the digest of its question (issue 12, item 2).

Version 1 of a workflow asks for a name, then an age; version 2 asks in the
other order. A run started under v1 and resumed under v2 must not hand "Ana"
to the age question: it is a `NonDeterminismError`, live and in the Replayer
(the deploy check), and logs written before interrupts recorded their digest
get one derived from the recorded question.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

from perdure import (
    Command,
    MemoryEventLog,
    NonDeterminismError,
    Replayer,
    Runtime,
    entrypoint,
    interrupt,
)
from perdure.cli import main
from perdure.eventlog import Interrupted, from_dict, to_dict
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.support import cfg, events_of, of_type

V1 = Registry()
V2 = Registry()


@entrypoint(registry=V1, name="profile")
def profile_v1(_: Any) -> dict[str, Any]:
    name = interrupt("name?")
    age = interrupt("age?")
    return {"name": name, "age": age}


@entrypoint(registry=V2, name="profile")
def profile_v2(_: Any) -> dict[str, Any]:
    age = interrupt("age?")
    name = interrupt("name?")
    return {"name": name, "age": age}


async def _v1_run_waiting_on_age(log: MemoryEventLog, thread: str) -> None:
    async with Runtime(log=log, registry=V1, clock=MockClock()):
        paused = await profile_v1.ainvoke(None, cfg(thread))
        assert paused["__interrupt__"][0].value == "name?"
        paused = await profile_v1.ainvoke(Command(resume="Ana"), cfg(thread))
        assert paused["__interrupt__"][0].value == "age?"


async def test_swapped_interrupts_are_a_non_determinism_error_not_answers_to_other_questions() -> (
    None
):
    log = MemoryEventLog()
    await _v1_run_waiting_on_age(log, "swap")
    async with Runtime(log=log, registry=V2, clock=MockClock()):
        with pytest.raises(NonDeterminismError) as info:
            await profile_v2.ainvoke(Command(resume=42), cfg("swap"))
        error = info.value
        assert error.position == "0"
        assert "'name?'" in error.recorded and "'age?'" in error.requested
        assert "asking a different question" in str(error)
        assert (await profile_v2.aget_state(cfg("swap"))).status == "failed"
    # The recorded question carries its digest, as a task carries its input digest.
    interrupted = of_type(await events_of(log, "swap"), Interrupted)
    assert [e.value for e in interrupted] == ["name?", "age?"]
    assert all(len(e.value_digest) == 16 for e in interrupted)
    assert interrupted[0].value_digest != interrupted[1].value_digest


async def test_the_replayer_and_the_deploy_check_report_swapped_interrupts() -> None:
    log = MemoryEventLog()
    await _v1_run_waiting_on_age(log, "swap-replay")
    assert (await Replayer(workflows=[profile_v1]).areplay("swap-replay", log=log)).ok
    result = await Replayer(workflows=[profile_v2]).areplay("swap-replay", log=log)
    assert not result.ok
    assert result.divergence is not None and result.divergence.position == "0"
    summary = await Replayer(workflows=[profile_v2]).areplay_all(log, status=("running", "waiting"))
    assert [r.ok for r in summary.results] == [False]


async def test_a_log_written_before_interrupt_digests_still_matches_by_its_question() -> None:
    log = MemoryEventLog()
    await _v1_run_waiting_on_age(log, "old-log")
    old = []
    for event in await log.read("old-log"):
        record = to_dict(event)
        if isinstance(event, Interrupted):
            del record["value_digest"]  # as perdure 0.1 wrote it
        old.append(from_dict(record))
    assert {e.value_digest for e in old if isinstance(e, Interrupted)} == {""}
    assert (await Replayer(workflows=[profile_v1]).areplay(old)).ok
    swapped = await Replayer(workflows=[profile_v2]).areplay(old)
    assert swapped.divergence is not None and swapped.divergence.position == "0"


def test_perdure_replay_all_in_flight_reports_swapped_interrupts(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def record() -> None:
        async with Runtime(store, registry=V1):
            await profile_v1.ainvoke(None, cfg("swap-cli"))
            await profile_v1.ainvoke(Command(resume="Ana"), cfg("swap-cli"))

    asyncio.run(record())
    app = tmp_path / "profile_v2_app.py"
    app.write_text(
        textwrap.dedent(
            """
            from perdure import entrypoint, interrupt
            from perdure.runtime import Registry

            APP = Registry()

            @entrypoint(registry=APP, name="profile")
            def profile(_):
                age = interrupt("age?")
                name = interrupt("name?")
                return {"name": name, "age": age}
            """
        )
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            ["replay", "--all", "--in-flight", "--app", f"{app}:APP", "--store", str(store)]
        )
    assert code == 1, out.getvalue()
    assert out.getvalue().startswith("DIVERGED  swap-cli  profile  position 0")
